"""Everything odibi shows on a terminal. The only importer of rich.

One `Out` per command invocation. Styled output (colour, bold) goes through rich, created
only when it is needed: on a terminal without NO_COLOR/--no-color. Otherwise (piped, in
tests, in CI) lines are written as plain text and rich is not even imported, which keeps
start-up fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, assert_never

from odibi.errors import Span, UserError
from odibi.events import Event, NodeBlocked, NodeFinished, NodeStarted, Notice, Warning_

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from odibi.testing.compare import RowDiff

_TAG = re.compile(r"(?<!\\)\[(?:/|[a-z][a-z #0-9_.-]*)?\]")


def escape(text: str) -> str:
    """Text safe to embed in rich markup."""
    return text.replace("[", "\\[")


def plain(markup: str) -> str:
    """Markup without its style tags (what a plain terminal shows)."""
    return _TAG.sub("", markup).replace("\\[", "[")


def _terminal(stream: IO[str]) -> bool:
    if os.environ.get("FORCE_COLOR"):  # as rich does: pretend to be a terminal
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Out:
    def __init__(self, *, color: bool = True, quiet: bool = False, verbose: int = 0,
                 json_mode: bool = False, stdout: IO[str] | None = None,
                 stderr: IO[str] | None = None) -> None:
        self.no_color = not color or bool(os.environ.get("NO_COLOR"))  # no-color.org: non-empty
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.terminal = _terminal(self.stdout)
        self.styled = self.terminal and not self.no_color
        self.err_styled = _terminal(self.stderr) and not self.no_color
        self._console: Console | None = None
        self._err_console: Console | None = None
        self.quiet = quiet
        self.verbose = verbose
        self.json_mode = json_mode

    def _make(self, stream: IO[str]) -> Console:
        from rich.console import Console

        system = "auto" if (self.styled if stream is self.stdout else self.err_styled) else None
        console = Console(file=stream, color_system=system, highlight=False, soft_wrap=True,
                          emoji=False)
        if not _terminal(stream):
            console.width = 160  # piped: wide enough that tables do not wrap
        return console

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = self._make(self.stdout)
        return self._console

    @property
    def err_console(self) -> Console:
        if self._err_console is None:
            self._err_console = self._make(self.stderr)
        return self._err_console

    @property
    def interactive(self) -> bool:
        return self.terminal and not self.json_mode

    # -- plain output ------------------------------------------------------------------
    def line(self, text: str = "", style: str | None = None) -> None:
        """A line of normal output (suppressed by -q and --json)."""
        if self.quiet or self.json_mode:
            return
        if self.styled:
            self.console.print(escape(text), style=style)
        else:
            self.stdout.write(text + "\n")

    def markup(self, text: str) -> None:
        if self.quiet or self.json_mode:
            return
        if self.styled:
            self.console.print(text)
        else:
            self.stdout.write(plain(text) + "\n")

    def err(self, text: str) -> None:
        """A line of markup on stderr (never suppressed: failures, interruptions)."""
        if self.err_styled:
            self.err_console.print(text)
        else:
            self.stderr.write(plain(text) + "\n")

    def raw(self, text: str) -> None:
        """Machine output (graph formats, ls): always printed, never styled."""
        self.stdout.write(text if text.endswith("\n") else text + "\n")

    def json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")

    def table(self, columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
        if self.quiet or self.json_mode:
            return
        from rich.table import Table

        t = Table(title=title, show_edge=False, box=None, pad_edge=False, header_style="bold")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*(escape(x) for x in r))
        self.console.print(t)

    def result_failed(self, headline: str, message: str, diff: RowDiff | None) -> None:
        """A failed test case: its headline, why, and the row difference (a table with
        the changed cells highlighted on a terminal; aligned plain text otherwise)."""
        if self.json_mode:
            return
        if not self.styled:
            self.stdout.write(f"{headline}\n")
            self.stdout.write((diff.text() if diff is not None else f"  {message}") + "\n")
            return
        self.console.print(f"[bold red]FAIL[/] {escape(headline.removeprefix('FAIL '))}")
        self.console.print(f"  {escape(message)}")
        if diff is None or diff.column_problem:
            return
        from rich.table import Table
        from rich.text import Text

        t = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
        t.add_column("")
        for c in diff.columns:
            t.add_column(escape(c))
        styles = {"-": "red", "+": "green", "~": "yellow"}
        for marker, cells, changed in diff.grid():
            row = [Text(marker, style=f"bold {styles[marker]}")]
            for cell, flag in zip(cells, changed):
                if flag:
                    old, _, new = cell.partition(" -> ")
                    row.append(Text.assemble((old, "red strike"), " → ", (new, "bold green")))
                else:
                    row.append(Text(cell, style=styles[marker] if marker != "~" else ""))
            t.add_row(*row)
        self.console.print(t)
        self.console.print("  [red]-[/] missing (expected, not produced)   [green]+[/] unexpected "
                           "(produced, not expected)   [yellow]~[/] changed (expected → actual)",
                           style="dim")

    # -- diagnostics ------------------------------------------------------------------
    def warning(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        """On stderr, also with --json (stdout stays machine-readable)."""
        self._diagnostic("warning", "yellow", message, span, hint)

    def error(self, err: UserError) -> None:
        """The error, then each of `err.also` (all the mistakes of one kind at once)."""
        for one in (err, *err.also):
            self._error(one)

    def _error(self, err: UserError) -> None:
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
        where = ""
        if span is not None and not span.file.startswith("<"):
            where = f"{_display_path(span.file)}:{span.line}:{span.col}: "
        self.err(f"{escape(where)}[{style}]{level}:[/] {escape(message)}")
        if span is not None:
            for line in _excerpt(span):
                self.err(escape(line))
        if hint:
            self.err(f"[cyan]hint:[/] {escape(hint)}")

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
    # tabs shown as spaces, and the caret placed under the character it means
    shown = text.expandtabs(8)
    lead = len(text[:col - 1].expandtabs(8))
    return [gutter + shown, pad + " " * lead + "^" * max(1, span.width)]


def path_for_display(path: Path) -> str:
    return _display_path(str(path))


class LiveBoard:
    """The live part of a build on a terminal: done / running (with elapsed times) /
    queued, and an ETA from the durations of earlier builds. Lines printed meanwhile go
    above it; it disappears when the build ends."""

    def __init__(self, out: Out, planned: list[str], durations: dict[str, float],
                 jobs: int) -> None:
        from rich.live import Live

        self.out = out
        self.planned = planned
        self.jobs = max(1, jobs)
        known = sorted(durations.values())
        self.default = known[len(known) // 2] if known else 1.0
        self.durations = durations
        self.running: dict[str, tuple[float, str]] = {}
        self.finished: set[str] = set()
        self.live = Live(self, console=out.console, refresh_per_second=8, transient=True)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def update(self, event: Event) -> None:
        import time

        match event:
            case NodeStarted(node=name, reason=reason):
                self.running[name] = (time.time(), reason)
            case NodeFinished(node=name) | NodeBlocked(node=name):
                self.running.pop(name, None)
                self.finished.add(name)
            case Warning_() | Notice():
                pass  # not about a node: printed above the board
            case _:
                assert_never(event)

    def _eta(self) -> str:
        import time

        now = time.time()
        left = 0.0
        for n in self.planned:
            if n in self.finished:
                continue
            d = self.durations.get(n, self.default)
            left += max(0.0, d - (now - self.running[n][0])) if n in self.running else d
        seconds = int(left / self.jobs)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def __rich__(self) -> Table:
        import time

        from rich.table import Table

        now = time.time()
        queued = len(self.planned) - len(self.finished) - len(self.running)
        t = Table(show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold")
        t.add_column(justify="right", style="cyan")
        t.add_column(style="dim")
        t.add_row(f"{len(self.finished)}/{len(self.planned)} done",
                  f"{len(self.running)} running", f"{max(0, queued)} queued, ETA {self._eta()}")
        longest = sorted(self.running.items(), key=lambda kv: kv[1][0])[:8]
        for name, (since, reason) in longest:
            t.add_row(f"  {name}", f"{now - since:.1f}s", escape(reason))
        if len(self.running) > len(longest):
            t.add_row(f"  ... {len(self.running) - len(longest)} more", "", "")
        return t
