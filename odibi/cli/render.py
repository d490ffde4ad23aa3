"""Everything odibi shows on a terminal. The only importer of rich.

One `Out` per command invocation wraps two rich Consoles (stdout, stderr). Colour follows
the terminal: off when piped, with NO_COLOR set, or with --no-color.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from odibi.errors import Span, UserError


class Out:
    def __init__(self, *, color: bool = True, quiet: bool = False, verbose: int = 0,
                 json_mode: bool = False, stdout: IO[str] | None = None,
                 stderr: IO[str] | None = None) -> None:
        no_color = not color or bool(os.environ.get("NO_COLOR"))  # no-color.org: set, non-empty
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        system = None if no_color else "auto"  # None: no colour *and* no bold/dim codes
        self.console = Console(file=self.stdout, color_system=system, highlight=False,
                               soft_wrap=True, emoji=False)
        if not self.console.is_terminal:
            self.console.width = 160  # piped: wide enough that tables do not wrap
        self.err_console = Console(file=self.stderr, color_system=system, highlight=False,
                                   soft_wrap=True, emoji=False)
        self.quiet = quiet
        self.verbose = verbose
        self.json_mode = json_mode

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and not self.json_mode

    # -- plain output ------------------------------------------------------------------
    def line(self, text: str = "", style: str | None = None) -> None:
        """A line of normal output (suppressed by -q and --json)."""
        if self.quiet or self.json_mode:
            return
        self.console.print(escape(text), style=style)

    def markup(self, text: str) -> None:
        if self.quiet or self.json_mode:
            return
        self.console.print(text)

    def raw(self, text: str) -> None:
        """Machine output (graph formats, ls): always printed, never styled."""
        self.stdout.write(text if text.endswith("\n") else text + "\n")

    def json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")

    def table(self, columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
        if self.quiet or self.json_mode:
            return
        t = Table(title=title, show_edge=False, box=None, pad_edge=False, header_style="bold")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*(escape(x) for x in r))
        self.console.print(t)

    # -- diagnostics ------------------------------------------------------------------
    def warning(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        if self.json_mode:
            return
        self._diagnostic("warning", "yellow", message, span, hint)

    def error(self, err: UserError) -> None:
        if self.json_mode:
            payload: dict[str, Any] = {"error": err.message}
            if err.span is not None:
                payload.update(file=_display_path(err.span.file), line=err.span.line,
                               col=err.span.col)
            if err.node:
                payload["node"] = err.node
            if err.hint:
                payload["hint"] = err.hint
            self.stdout.write(json.dumps(payload) + "\n")
            return
        self._diagnostic("error", "bold red", err.message, err.span, err.hint)

    def _diagnostic(self, level: str, style: str, message: str, span: Span | None,
                    hint: str | None) -> None:
        c = self.err_console
        where = ""
        if span is not None and not span.file.startswith("<"):
            where = f"{_display_path(span.file)}:{span.line}:{span.col}: "
        c.print(f"{escape(where)}[{style}]{level}:[/] {escape(message)}")
        if span is not None:
            for line in _excerpt(span):
                c.print(escape(line), style="dim" if "|" in line[:8] and "^" not in line else None)
        if hint:
            c.print(f"[cyan]hint:[/] {escape(hint)}")

    def internal_error(self, exc: BaseException) -> None:
        import traceback

        self.stderr.write("".join(traceback.format_exception(exc)))
        self.stderr.write("odibi: internal error (this is a bug in odibi: please report it "
                          "with the traceback above)\n")


def _display_path(file: str) -> str:
    if file.startswith("<"):
        return file
    try:
        rel = os.path.relpath(file)
    except ValueError:
        return file
    return file if rel.startswith("..") else rel


def _excerpt(span: Span) -> list[str]:
    text = span.text
    if text is None:
        try:
            with open(span.file, encoding="utf-8", errors="replace") as f:
                for i, line in enumerate(f, 1):
                    if i == span.line:
                        text = line.rstrip("\n")
                        break
        except OSError:
            return []
    if text is None:
        return []
    gutter = f"{span.line:>5} | " if not span.file.startswith("<") else "    "
    pad = " " * (len(gutter) - 2) + "| " if not span.file.startswith("<") else "    "
    col = max(1, min(span.col, len(text) + 1))
    return [gutter + text, pad + " " * (col - 1) + "^" * max(1, span.width)]


def path_for_display(path: Path) -> str:
    return _display_path(str(path))
