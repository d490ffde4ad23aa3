"""Reading values out of parsed YAML: types, keys (with did-you-mean), durations, formats,
paths. Every failure is a ConfigError at the value's position."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from odibi.config.model import Connection, Retry, RuleText
from odibi.config.ytree import YMap, YSeq
from odibi.errors import ConfigError, Span, TextOrigin, did_you_mean
from odibi.ids import FORMAT_BY_SUFFIX, Format

RETRY_KEYS = {"attempts", "backoff"}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class File:
    """Where values come from: one YAML file, for spans."""

    __slots__ = ("path", "rel", "data", "_lines")

    def __init__(self, path: Path, rel: str, data: bytes) -> None:
        self.path = str(path)
        self.rel = rel
        self.data = data
        self._lines: list[str] | None = None

    def at(self, mark: tuple[int, int], width: int = 1) -> Span:
        return Span(self.path, mark[0], mark[1], width=width)

    def key(self, m: YMap, key: str) -> Span:
        return self.at(m.key_marks.get(key, m.mark), len(str(key)))

    def value(self, m: YMap, key: str) -> Span:
        return self.at(m.value_marks.get(key, m.mark))

    def origin(self, m: YMap | YSeq, key: Any) -> TextOrigin:
        """Where the string value `m[key]` (or item `m[key]` of a sequence) starts."""
        if isinstance(m, YSeq):
            mark, style = m.item_marks[key], m.item_styles[key]
        else:
            mark, style = m.value_marks.get(key, m.mark), m.value_styles.get(key, "")
        indent = self._block_indent(mark[0]) if style in ("|", ">") else 0
        folds = self._folded_lines(mark[0], indent) if style == ">" else ()
        return TextOrigin(self.path, mark[0], mark[1], style, indent, folds)

    def _folded_lines(self, indicator_line: int, indent: int) -> tuple[int, ...]:
        """The lengths of a folded block's lines (folding joins them with spaces, so a
        position in the value is found again by walking them)."""
        assert self._lines is not None  # read by _block_indent
        out = []
        for line in self._lines[indicator_line:]:
            if line.strip() and len(line) - len(line.lstrip(" ")) < indent - 1:
                break
            out.append(max(0, len(line.rstrip()) - (indent - 1)))
        return tuple(out)

    def _block_indent(self, indicator_line: int) -> int:
        if self._lines is None:
            self._lines = self.data.decode("utf-8").splitlines()
        for line in self._lines[indicator_line:]:
            if line.strip():
                return len(line) - len(line.lstrip(" ")) + 1
        return 1


_TYPE_NAMES = ((bool, "true or false"), (str, "a string"), (int, "an integer"),
               (float, "a number"), (list, "a list"), (dict, "a mapping"), (type(None), "empty"))


def type_name(value: Any) -> str:
    for t, name in _TYPE_NAMES:
        if isinstance(value, t):
            return name
    return type(value).__name__



def expect_map(value: Any, f: File, mark: tuple[int, int] | None, what: str) -> YMap:
    if isinstance(value, YMap):
        return value
    span = f.at(mark) if mark else Span(f.path, 1, 1)
    raise ConfigError(f"{what} must be a mapping (key: value), got {type_name(value)}", span=span)


_TESTS_HINT = ("did you mean validate:? (odibi's rules: unique(id), not_null(id), "
               "references(...), see README)")
# Keys of a dbt model that a node does not have, and what odibi does instead: the hint of
# an unknown key, ahead of any did-you-mean.
DBT_NODE_KEYS = {
    "tests": _TESTS_HINT,
    "data_tests": _TESTS_HINT,
    "columns": "column tests go in validate: (e.g. validate: [not_null(id), unique(id)]); "
               "descriptions in description:",
    "materialized": "odibi stores every node as a table, versioned by its fingerprint and "
                    "restored on revert: there is nothing to choose",
    "config": "a node's settings go on the node itself (tags:, description:, retry:, "
              "timeout:); every node is stored as a table, so there is no materialized: "
              "to choose",
}


def check_keys(m: YMap, allowed: set[str], f: File, what: str,
               hints: dict[str, str] | None = None) -> None:
    """Every key of `m` is `allowed`; an unknown one is an error at the key, with its
    hint from `hints`, else a did-you-mean, else the allowed keys."""
    for key in m:
        if key not in allowed:
            raise ConfigError(f"unknown key '{key}' in {what}", span=f.key(m, str(key)),
                              hint=(hints or {}).get(str(key))
                              or did_you_mean(str(key), sorted(allowed))
                              or f"allowed: {', '.join(sorted(allowed))}")


def req_str(m: YMap, key: str, f: File, what: str) -> str:
    if key not in m:
        raise ConfigError(f"{what}: missing '{key}'", span=f.at(m.mark))
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        raise ConfigError(f"{what}: '{key}' must be a non-empty string, got {type_name(value)}",
                          span=f.value(m, key))
    return str(value)


def opt_str(m: YMap, key: str, f: File, what: str) -> str | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{what}: '{key}' must be a string, got {type_name(value)}",
                          span=f.value(m, key))
    return value


def opt_bool(m: YMap, key: str, f: File, what: str) -> bool:
    value = m.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: '{key}' must be true or false, got {value!r}",
                          span=f.value(m, key))
    return value


def str_list(value: Any, f: File, m: tuple[int, int] | None, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        span = f.at(m) if m else None
        raise ConfigError(f"{what} must be a list of strings, got {type_name(value)}", span=span)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            marks = value.item_marks if isinstance(value, YSeq) else [m or (1, 1)] * len(value)
            raise ConfigError(f"{what}: each entry must be a string, got {type_name(item)}",
                              span=f.at(marks[i]))
    return list(value)


def tags_of(m: YMap, f: File, what: str) -> frozenset[str]:
    if "tags" not in m:
        return frozenset()
    tags = str_list(m["tags"], f, m.value_marks.get("tags"), f"{what}: 'tags'")
    for t in tags:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", t):
            raise ConfigError(f"{what}: invalid tag '{t}'", span=f.value(m, "tags"),
                              hint="tags are letters, digits, '_', '-' and '.'")
    return frozenset(tags)


def rules_of(m: YMap, key: str, f: File, what: str) -> tuple[RuleText, ...]:
    if key not in m:
        return ()
    raw = m[key]
    if isinstance(raw, str):
        items, origins = [raw], [f.origin(m, key)]
    elif isinstance(raw, YSeq):
        items, origins = list(raw), [f.origin(raw, i) for i in range(len(raw))]
    else:
        raise ConfigError(f"{what}: '{key}' must be a list of rules, got {type_name(raw)}",
                          span=f.value(m, key))
    rules = []
    for item, origin in zip(items, origins):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{what}: each entry of '{key}' must be a rule written as text, "
                              f"got {type_name(item)}", span=origin.span,
                              hint="quote rules that contain ': ' or start with a bracket")
        rules.append(RuleText(item, origin.span, origin))
    return tuple(rules)


def retry_of(m: YMap, f: File, what: str) -> Retry:
    raw = m.get("retry")
    if raw is None:
        return Retry()
    span = f.value(m, "retry")
    if isinstance(raw, int) and not isinstance(raw, bool):
        attempts, backoff = raw, 0.0
    else:
        body = expect_map(raw, f, m.value_marks.get("retry"), f"{what}: retry")
        check_keys(body, RETRY_KEYS, f, f"{what}: retry")
        attempts = body.get("attempts", 2)
        if "attempts" in body:
            span = f.value(body, "attempts")
        backoff = seconds(body.get("backoff", 0), f.value(body, "backoff"), what, "retry.backoff",
                           allow_zero=True)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(f"{what}: retry attempts must be a whole number >= 1, got {attempts!r}",
                          span=span)
    return Retry(attempts, backoff)


def timeout_of(m: YMap, f: File, what: str) -> float | None:
    if m.get("timeout") is None:
        return None
    return seconds(m["timeout"], f.value(m, "timeout"), what, "timeout", allow_zero=False)


def seconds(raw: Any, span: Span, what: str, key: str, *, allow_zero: bool) -> float:
    value: float | None = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and (dm := _DURATION_RE.match(raw)):
        value = float(dm.group(1)) * _DURATION_UNITS[dm.group(2)]
    if value is None or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{what}: '{key}' must be a positive number of seconds or a duration "
                          f"like '30s', '5m', got {raw!r}", span=span)
    return value


def version_of(m: YMap, f: File, what: str) -> str | None:
    raw = m.get("version")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ConfigError(f"{what}: 'version' must be a string or number", span=f.value(m, "version"))
    return str(raw)


def file_format(body: YMap, rendered: str, f: File, what: str) -> Format:
    raw = body.get("format")
    if raw is None:
        suffix = Path(rendered.rstrip("*")).suffix.lower()
        fmt = FORMAT_BY_SUFFIX.get(suffix)
        if fmt is None:
            raise ConfigError(f"{what}: cannot tell the format of '{rendered}'",
                              span=f.value(body, "path"),
                              hint="add format: csv, parquet or json")
        return fmt
    try:
        return Format(str(raw).lower())
    except ValueError:
        names = [x.value for x in Format]
        raise ConfigError(f"{what}: unknown format '{raw}'", span=f.value(body, "format"),
                          hint=did_you_mean(str(raw).lower(), names)
                          or f"supported: {', '.join(names)}") from None


def plain_structure(value: Any, span: Span, what: str) -> None:
    if value is None:
        raise ConfigError(f"{what} has no value", span=span)
    if isinstance(value, (dict, list)):
        for v in value.values() if isinstance(value, dict) else value:
            plain_structure(v, span, what)


def plain_value(value: Any) -> Any:
    """Strip position bookkeeping: YMap/YSeq -> dict/list."""
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_value(v) for v in value]
    return value


def check_inside(conn: Connection, rendered: str, span: Span, what: str) -> None:
    """A path must stay inside its connection's base_path, symlinks included."""
    where = f"connection '{conn.name}' (base_path: {conn.base_path})"
    if os.path.isabs(rendered) or rendered.startswith("~"):
        raise ConfigError(f"{what}: path '{rendered}' must be relative to {where}", span=span,
                          hint="add a connection for that directory instead")
    # the part before the first glob character is a real path; resolve its symlinks
    prefix = re.split(r"[*?\[]", rendered, maxsplit=1)[0]
    target = (conn.root / prefix).resolve()
    if target != conn.root and conn.root not in target.parents:
        raise ConfigError(f"{what}: path '{rendered}' leaves {where}", span=span,
                          hint="add a connection for that directory instead")


def strip_sql(text: str) -> str:
    text = text.rstrip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text
