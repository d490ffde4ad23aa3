"""The error tree. Imports nothing from odibi but `pickling`.

Every mistake a user can make is a `UserError` subclass carrying where it happened
(`Span`), what to do next (`hint`) and which node it concerns. The CLI renders them
(`cli/render.py`) as ``path:line:col: error: message`` plus the source line and a caret,
and exits 2. Anything that is not an `OdibiError` is a bug in odibi and is shown with a
traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from odibi.pickling import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True)
class Span:
    """A place in a text: `file` (absolute path, or a pseudo-name such as ``<selector>``),
    1-based `line` and `col`. `text` is the line itself when the file is not on disk
    (command-line text); `width` is how many characters the caret underlines."""

    file: str
    line: int
    col: int
    text: str | None = None
    width: int = 1

    def shifted(self, lines: int, col: int) -> Span:
        """A position inside a multi-line value that starts at this span."""
        return Span(self.file, self.line + lines, col, self.text, self.width)


@compact_pickle
@dataclass(frozen=True, slots=True)
class TextOrigin:
    """Where a YAML string value starts, so a position inside the string (a SQL error, a
    substitution) can be turned into a file position. `style` is the YAML scalar style:
    '' plain, '"' or "'" quoted, '|' or '>' block (whose lines start at column `indent`,
    on the line after the indicator)."""

    file: str
    line: int
    col: int
    style: str = ""
    indent: int = 0
    folds: tuple[int, ...] = ()  # a folded ('>') block: the length of each of its lines

    def span_at(self, text: str, offset: int | None, width: int = 1) -> Span:
        if offset is None or offset < 0:
            return Span(self.file, self.line, self.col, width=width)
        offset = min(offset, len(text))
        if self.style == ">" and self.folds:
            line = 0  # folding joined the block's lines with one character each
            while line < len(self.folds) - 1 and offset > self.folds[line]:
                offset -= self.folds[line] + 1
                line += 1
            return Span(self.file, self.line + 1 + line, (self.indent or self.col + 2) + offset,
                        width=width)
        line = text.count("\n", 0, offset)
        col = offset - (text.rfind("\n", 0, offset) + 1)
        if self.style in ("|", ">"):
            return Span(self.file, self.line + 1 + line, (self.indent or self.col + 2) + col,
                        width=width)
        if line:
            return Span(self.file, self.line + line, col + 1, width=width)
        quoted = 1 if self.style in ("'", '"') else 0
        return Span(self.file, self.line, self.col + quoted + col, width=width)

    @property
    def span(self) -> Span:
        return Span(self.file, self.line, self.col)


class OdibiError(Exception):
    """Root of every error odibi raises on purpose."""


class UserError(OdibiError):
    """A mistake in the project, the command line or the data: exit code 2, no traceback."""

    def __init__(
        self,
        message: str,
        *,
        span: Span | None = None,
        hint: str | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.node = node
        self.also: tuple[UserError, ...] = ()  # more mistakes of the same kind, reported too

    def __str__(self) -> str:
        where = f"{self.span.file}:{self.span.line}:{self.span.col}: " if self.span else ""
        return f"{where}{self.message}"


class ConfigError(UserError):
    """The YAML of a project is wrong (syntax, keys, types, references)."""


class SqlError(ConfigError):
    """A node's SQL does not parse, is not one SELECT, or references unknown tables."""


class CycleError(ConfigError):
    """The dependency graph has a cycle; `cycle` is the path, first node repeated last."""

    def __init__(self, cycle: tuple[str, ...], *, span: Span | None = None) -> None:
        super().__init__(
            "dependency cycle: " + " → ".join(cycle),
            span=span,
            hint="remove one of these dependencies",
            node=cycle[0],
        )
        self.cycle = cycle


class SelectorError(UserError):
    """A selector does not parse or names an unknown node."""


class UnknownNodeError(SelectorError):
    """A selector or command names a node that does not exist."""


class ExprSyntaxError(ConfigError):
    """A rule does not parse. `col` is the 1-based column in the rule's own text; the
    loader turns it into a place in the YAML file."""

    def __init__(self, message: str, *, col: int, span: Span | None = None,
                 hint: str | None = None, node: str | None = None) -> None:
        super().__init__(message, span=span, hint=hint, node=node)
        self.col = col


class UsageError(UserError):
    """A command-line mistake that argparse cannot see (bad --var, conflicting flags)."""


class LockedError(UserError):
    """Another process holds the project's build lock and --no-wait was given."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest choice, or None when nothing is close."""
    import difflib  # only on the way to an error message

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
