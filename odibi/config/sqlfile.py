"""A SQL node's statement as written: inline (`sql: SELECT ...`) or in a file of its own
(`sql: {file: models/stg_orders.sql}`).

A file's path is relative to the YAML file that names it, is taken literally (no
substitution), and must stay inside the project directory, through `..` or a symlink
alike. Its text (UTF-8; a byte-order mark is dropped) is then treated exactly as inline
SQL: substituted, fingerprinted by its parse tree, run; positions in it are the file's
own lines and columns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from odibi.config.fields import File, type_name
from odibi.config.ytree import YMap
from odibi.errors import ConfigError, Span, TextOrigin, did_you_mean
from odibi.paths import shown

SQL_KEYS = {"file"}
_FILE_NAME_RE = re.compile(r"[^\s;()'\"]+\.sql", re.I)  # one token ending in .sql


@dataclass(frozen=True, slots=True)
class SqlSource:
    """A statement as written and where it starts."""

    text: str
    origin: TextOrigin
    file: str | None = None  # the .sql file, project-relative; None when inline


def sql_source(item: YMap, f: File, what: str, root: Path,
               read: Callable[[Path], bytes]) -> SqlSource:
    """The `sql:` value of node `item`: its text, or the text of the file it names.
    `root` is the project directory (resolved); `read` reads a file's bytes."""
    raw = item["sql"]
    if isinstance(raw, YMap):
        return _from_file(raw, f, what, root, read)
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{what}: sql must be a non-empty SELECT statement",
                          span=f.value(item, "sql"),
                          hint=None if raw is None or isinstance(raw, str) else
                          "write the SELECT itself, or sql: {file: path/to/x.sql}")
    if _FILE_NAME_RE.fullmatch(raw.strip()):
        path = raw.strip()
        raise ConfigError(f"{what}: sql: '{path}' is a file name, not SQL",
                          span=f.origin(item, "sql").span_at(raw, len(raw) - len(raw.lstrip()),
                                                             len(path)),
                          hint=f"to run the SQL in that file, write sql: {{file: {path}}} "
                               f"(relative to {f.rel})")
    return SqlSource(raw, f.origin(item, "sql"))


def _from_file(body: YMap, f: File, what: str, root: Path,
               read: Callable[[Path], bytes]) -> SqlSource:
    for key in body:
        if key not in SQL_KEYS:
            raise ConfigError(f"unknown key '{key}' in {what}: sql", span=f.key(body, str(key)),
                              hint=did_you_mean(str(key), SQL_KEYS) or "sql is the SELECT "
                              "itself, or {file: path/to/x.sql} for SQL kept in a file")
    if "file" not in body:
        raise ConfigError(f"{what}: sql: missing 'file'", span=f.at(body.mark),
                          hint="write sql: {file: path/to/x.sql} (relative to this YAML "
                               "file), or the SELECT itself")
    rel = body["file"]
    span = f.value(body, "file")
    if f.origin(body, "file").style in ("'", '"'):
        span = Span(span.file, span.line, span.col + 1)
    if not isinstance(rel, str) or not rel.strip():
        raise ConfigError(f"{what}: sql: 'file' must be a path, got {type_name(rel)}",
                          span=span, hint="e.g. sql: {file: models/stg_orders.sql}")
    span = Span(span.file, span.line, span.col, width=len(rel))
    written = Path(f.path).parent / rel  # read as written: a symlink retargeted is seen
    _check_inside(written, rel, f, what, root, span)
    shown_path = Path(os.path.normpath(written))
    data = _read(written, shown_path, rel, f, what, root, span, read)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        col = len(data[start:e.start].decode("utf-8", "replace")) + 1
        raise ConfigError(f"{what}: sql file is not valid UTF-8",
                          span=Span(str(shown_path), line, col)) from None
    if not text.strip():
        raise ConfigError(f"{what}: sql file {shown(shown_path, root)} is empty", span=span,
                          hint="write one SELECT statement in it")
    return SqlSource(text, TextOrigin(str(shown_path), 1, 1), shown(shown_path, root))


def _check_inside(written: Path, rel: str, f: File, what: str, root: Path, span: Span) -> None:
    """The file must be in the project, symlinks resolved."""
    if os.path.isabs(rel) or rel.startswith("~"):
        raise ConfigError(f"{what}: sql file '{rel}' must be a path relative to {f.rel}",
                          span=span, hint="keep SQL files inside the project directory")
    real = written.resolve()
    if real != root and root not in real.parents:
        raise ConfigError(f"{what}: sql file '{rel}' leaves the project directory", span=span,
                          hint="keep SQL files inside the project directory (where "
                               "odibi.yaml is)")


def _read(written: Path, shown_path: Path, rel: str, f: File, what: str, root: Path,
          span: Span, read: Callable[[Path], bytes]) -> bytes:
    if written.is_dir():
        raise ConfigError(f"{what}: sql file '{rel}' is a directory", span=span)
    if not written.exists():
        raise ConfigError(f"{what}: sql file not found: {shown(shown_path, root)}", span=span,
                          hint=_missing_hint(shown_path, rel, f, root))
    try:
        return read(written)
    except ConfigError as e:
        raise ConfigError(f"{what}: sql file {shown(shown_path, root)}: {e.message}",
                          span=span) from None


def _missing_hint(path: Path, rel: str, f: File, root: Path) -> str | None:
    """A misspelt name (a sibling .sql file), or a path written from the project directory
    rather than from the YAML file."""
    import difflib  # only on the way to an error message

    base = Path(f.path).parent
    from_root = (root / rel).resolve()
    if base.resolve() != root and from_root.is_file() and root in from_root.parents:
        fixed = Path(os.path.relpath(from_root, base.resolve())).as_posix()
        return f"paths are relative to {f.rel}: did you mean '{fixed}'?"
    if not path.parent.is_dir():
        return f"paths are relative to the YAML file that names them ({f.rel})"
    siblings = sorted(p.name for p in path.parent.glob("*.sql"))
    close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
    if close:
        head = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
        return f"did you mean '{head}{close[0]}'?"
    return None
