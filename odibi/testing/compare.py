"""Expected rows against actual rows: a readable difference.

Rows are compared as multisets unless `ordered`; numbers within `tolerance` (relative or
absolute, as `math.isclose`) are equal; with `subset` only the expected columns are
compared, otherwise the output must have exactly the expected columns (in any order;
names compare case-insensitively, as DuckDB's do). A failure lists the rows missing, the
rows not expected, and the rows changed: a missing and an unexpected row that agree on
the first expected column are paired as one row changed, with the columns that differ.

`RowDiff.grid()` is the difference as a table (a marker, then cells, with the changed
cells flagged), which `text()` lays out as plain text and the CLI renders with colour.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Changed:
    key: tuple[str, Any]
    expected: Row
    actual: Row
    columns: tuple[str, ...]  # those that differ


@dataclass(frozen=True, slots=True)
class RowDiff:
    columns: tuple[str, ...]
    missing: tuple[Row, ...] = ()
    unexpected: tuple[Row, ...] = ()
    changed: tuple[Changed, ...] = ()
    column_problem: str | None = None
    counts: tuple[int, int] = (0, 0)  # expected, actual rows
    ordered: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.changed or self.column_problem)

    def summary(self) -> str:
        if self.column_problem:
            return self.column_problem
        parts = [f"{len(x)} {w}" for x, w in ((self.missing, "missing"),
                                               (self.unexpected, "unexpected"),
                                               (self.changed, "changed")) if x]
        rows = f"expected {self.counts[0]} rows, got {self.counts[1]}"
        return f"{', '.join(parts)} ({rows}{', in order' if self.ordered else ''})"

    def grid(self) -> list[tuple[str, list[str], list[bool]]]:
        """One line per row of the difference: (marker, cells, which cells changed).
        Markers: '-' missing (expected, not produced), '+' unexpected (produced, not
        expected), '~' changed (a changed cell reads 'expected -> actual')."""
        out: list[tuple[str, list[str], list[bool]]] = []
        for c in self.changed:
            cells, flags = [], []
            for col, e, a in zip(self.columns, c.expected, c.actual):
                changed = col in c.columns
                cells.append(f"{show(e)} -> {show(a)}" if changed else show(e))
                flags.append(changed)
            out.append(("~", cells, flags))
        out += [("-", [show(v) for v in r], [False] * len(r)) for r in self.missing]
        out += [("+", [show(v) for v in r], [False] * len(r)) for r in self.unexpected]
        return out

    def text(self, indent: str = "  ") -> str:
        """The difference as plain text: a summary line, then an aligned table."""
        lines = [indent + self.summary()]
        if self.column_problem:
            return "\n".join(lines)
        grid = self.grid()
        header = ["", *self.columns]
        body = [[m, *cells] for m, cells, _ in grid]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        for r in [header, *body]:
            lines.append(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        lines.append(indent + "(- missing: expected, not produced; + unexpected: produced, "
                     "not expected; ~ changed: expected -> actual)")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        def row(r: Row) -> dict[str, Any]:
            return {c: _jsonable(v) for c, v in zip(self.columns, r)}
        return {"summary": self.summary(), "columns": list(self.columns),
                "column_problem": self.column_problem,
                "expected_rows": self.counts[0], "actual_rows": self.counts[1],
                "missing": [row(r) for r in self.missing],
                "unexpected": [row(r) for r in self.unexpected],
                "changed": [{"expected": row(c.expected), "actual": row(c.actual),
                             "columns": list(c.columns)} for c in self.changed]}


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)


def show(v: Any) -> str:
    if isinstance(v, float):
        text = f"{v:.10g}"
        return text if any(c in text for c in ".enai") else text + ".0"
    if isinstance(v, str):
        return repr(v)
    return "null" if v is None else str(v)


def _norm(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    return v


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # true is not 1
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return a == b


def _same_row(a: Row, b: Row, tolerance: float) -> bool:
    return all(_same(x, y, tolerance) for x, y in zip(a, b))


def compare(expected: tuple[list[str], list[Row]], actual: tuple[list[str], list[Row]], *,
            ordered: bool = False, subset: bool = False, tolerance: float = 1e-9) -> RowDiff:
    e_cols, e_rows = expected
    a_cols, a_rows = actual
    if not e_cols:  # `rows: []` with no schema: no rows expected, whatever the columns
        return RowDiff(tuple(a_cols), unexpected=tuple(tuple(_norm(v) for v in r)
                                                      for r in a_rows),
                       counts=(0, len(a_rows)), ordered=ordered)
    lower = {c.lower(): i for i, c in enumerate(a_cols)}
    missing_cols = [c for c in e_cols if c.lower() not in lower]
    extra_cols = [c for c in a_cols if c.lower() not in {x.lower() for x in e_cols}]
    if missing_cols or (extra_cols and not subset):
        parts = []
        if missing_cols:
            parts.append(f"the output has no column {', '.join(missing_cols)}")
        if extra_cols and not subset:
            parts.append(f"the output also has {', '.join(extra_cols)} (list them, or "
                         "compare a subset: columns: subset)")
        return RowDiff(tuple(e_cols), column_problem="; ".join(parts) +
                       f" (output columns: {', '.join(a_cols)})")
    pick = [lower[c.lower()] for c in e_cols]
    want = [tuple(_norm(v) for v in r) for r in e_rows]
    got = [tuple(_norm(r[i]) for i in pick) for r in a_rows]
    counts = (len(want), len(got))
    match_rows = _in_order if ordered else _as_multisets
    missing, unexpected = match_rows(want, got, tolerance)
    changed, missing, unexpected = _pair(tuple(e_cols), missing, unexpected, tolerance)
    return RowDiff(tuple(e_cols), tuple(missing), tuple(unexpected), tuple(changed),
                   counts=counts, ordered=ordered)


def _in_order(want: list[Row], got: list[Row], tolerance: float
              ) -> tuple[list[Row], list[Row]]:
    """(missing, unexpected): the rows that differ position by position."""
    missing, unexpected = [], []
    for i in range(max(len(want), len(got))):
        w = want[i] if i < len(want) else None
        g = got[i] if i < len(got) else None
        if w is None or g is None or not _same_row(w, g, tolerance):
            if w is not None:
                missing.append(w)
            if g is not None:
                unexpected.append(g)
    return missing, unexpected


def _as_multisets(want: list[Row], got: list[Row], tolerance: float
                  ) -> tuple[list[Row], list[Row]]:
    """(missing, unexpected): each expected row takes the first equal row produced."""
    unexpected = list(got)
    missing = []
    for w in want:
        for j, g in enumerate(unexpected):
            if _same_row(w, g, tolerance):
                del unexpected[j]
                break
        else:
            missing.append(w)
    return missing, unexpected


def _pair(columns: tuple[str, ...], missing: list[Row], unexpected: list[Row],
          tolerance: float) -> tuple[list[Changed], list[Row], list[Row]]:
    """Rows that agree on the first column are one row changed, not one missing and one
    unexpected."""
    changed = []
    left = []
    for m in missing:
        for j, u in enumerate(unexpected):
            if _same(m[0], u[0], tolerance):
                cols = tuple(c for c, x, y in zip(columns, m, u) if not _same(x, y, tolerance))
                changed.append(Changed((columns[0], m[0]), m, u, cols))
                del unexpected[j]
                break
        else:
            left.append(m)
    return changed, left, unexpected
