"""The fake engine's rules (`odibi.engines.memory`): the neutral form of
`odibi.expr.measures` and `odibi.expr.rows`, evaluated over Python rows.

Each measurement gives the plain Python value its docstring promises, as DuckDB gives it
for the SQL `odibi.engines.duckdb_rules` renders: counts are ints, AVG a float, examples at
most `EXAMPLES` items, sorted (ascending, NULL last, tuples and rows item by item). Rows are
judged with SQL's three-valued logic: None is NULL, and a row holds a predicate only when it
is true. Text compared with a number is read as a number, as DuckDB casts it; text that is
not one is an EngineError, as DuckDB's conversion error is.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, assert_never

from odibi.engines.base import EngineError
from odibi.engines.memory_rows import Table
from odibi.expr.ast import Op
from odibi.expr.measurements import (Agg, Aggregate, CountWhere, DistinctCount, Duplicates,
                                     Measurement, NullCount, NullCounts, NullRows, Orphans,
                                     OrphanKeys, Outside, OutsideValues, RepeatedKeys,
                                     RowCount, RowsWhere)
from odibi.expr.measures import EXAMPLES
from odibi.expr.rows import Abs, And, Between, Binary, Col, Const, In, IsNull, Neg, Not, Or, Row

Record = Mapping[str, Any]  # one row, by lower-cased column name

_COMPARE: dict[Op, Callable[[Any, Any], Any]] = {
    Op.EQ: operator.eq, Op.NE: operator.ne, Op.LT: operator.lt, Op.LE: operator.le,
    Op.GT: operator.gt, Op.GE: operator.ge}
_ARITHMETIC: dict[Op, Callable[[Any, Any], Any]] = {
    Op.ADD: operator.add, Op.SUB: operator.sub, Op.MUL: operator.mul,
    Op.DIV: lambda a, b: None if b == 0 else a / b,  # (DuckDB: x / 0 is NULL)
    Op.MOD: lambda a, b: None if b == 0 else a % b}


class Data:
    """A dataset as measurements read it: its rows by lower-cased column name (rule
    names ignore case), and its columns in order."""

    def __init__(self, table: Table) -> None:
        self.columns = table.names
        self.lower = [c.lower() for c in table.names]
        self.records = [dict(zip(self.lower, row)) for row in table.rows]

    def values(self, column: str) -> list[Any]:
        key = column.lower()
        if key not in self.lower:
            raise EngineError(f'Binder Error: no column "{column}"')
        return [r[key] for r in self.records]

    def keys(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        return list(zip(*(self.values(c) for c in columns))) if self.records else []

    def whole(self, record: Record) -> dict[str, Any]:
        """A row with its columns as the data names them, in order."""
        return {c: record[low] for c, low in zip(self.columns, self.lower)}


def measure(what: Measurement, t: Data, p: Data | None) -> Any:
    """What `what` measures of `t` (and `p`, the parent of a references)."""
    match what:
        case RowCount():
            return len(t.records)
        case CountWhere(where):
            return sum(1 for r in t.records if holds(where, r))
        case Aggregate(fn, column):
            return _aggregate(fn, [v for v in t.values(column) if v is not None])
        case NullCount(columns):
            return sum(1 for key in t.keys(columns) if None in key)
        case DistinctCount(column):
            return len({v for v in t.values(column) if v is not None})
        case Duplicates(columns):
            keys = _keys(t, columns)
            return len(keys) - len(set(keys))
        case Outside(column, values):
            return len(_outside(t, column, values))
        case OutsideValues(column, values):
            return _first(set(_outside(t, column, values)))
        case RepeatedKeys(columns):
            counted = Counter(_keys(t, columns))
            repeated = [{"k": k, "n": n} for k, n in counted.items() if n > 1]
            return sorted(repeated, key=lambda r: (-r["n"], order(r["k"])))[:EXAMPLES]
        case NullCounts(columns):
            return [sum(1 for v in t.values(c) if v is None) for c in columns]
        case NullRows(columns):
            found = [t.whole(r) for r, key in zip(t.records, t.keys(columns)) if None in key]
            return sorted(found, key=order)[:EXAMPLES]
        case RowsWhere(columns, where):
            chosen = {tuple(r[c.lower()] for c in columns) for r in t.records if holds(where, r)}
            return [dict(zip(columns, row)) for row in _first(chosen)]
        case Orphans(columns, parent_columns):
            return len(_orphans(t, _parent(p), columns, parent_columns))
        case OrphanKeys(columns, parent_columns):
            keys = _orphans(t, _parent(p), columns, parent_columns)
            return _first({k[0] if len(columns) == 1 else k for k in keys})
        case _:
            assert_never(what)


def _parent(p: Data | None) -> Data:
    if p is None:
        raise EngineError("a references measure needs its parent dataset")
    return p


def _aggregate(fn: Agg, values: list[Any]) -> Any:
    if not values:
        return None
    match fn:
        case Agg.MIN:
            return min(values)
        case Agg.MAX:
            return max(values)
        case Agg.SUM:
            return sum(values)
        case Agg.AVG:
            return sum(values) / len(values)
        case _:
            assert_never(fn)


def _keys(t: Data, columns: Sequence[str]) -> list[Any]:
    """Keys as `Duplicates` and `RepeatedKeys` count them: one column's non-NULL values,
    or tuples of several (NULLs equal)."""
    if len(columns) == 1:
        return [v for v in t.values(columns[0]) if v is not None]
    return t.keys(columns)


def _outside(t: Data, column: str, values: tuple[Any, ...]) -> list[Any]:
    if any(v is None for v in values):
        return []  # SQL's NOT IN with a NULL in the list holds for no row
    return [v for v in t.values(column) if v is not None and not _among(v, values)]


def _among(value: Any, values: Iterable[Any]) -> bool:
    return any(_compare(Op.EQ, value, v) for v in values)


def _orphans(t: Data, p: Data, columns: Sequence[str], parent_columns: Sequence[str]
             ) -> list[tuple[Any, ...]]:
    known = {k for k in p.keys(parent_columns) if None not in k}
    return [k for k in t.keys(columns) if None not in k and k not in known]


def _first(items: Iterable[Any]) -> list[Any]:
    return sorted(items, key=order)[:EXAMPLES]


def order(value: Any) -> tuple[Any, ...]:
    """How examples are sorted: ascending, NULL last; tuples and rows item by item."""
    if value is None:
        return (1,)
    if isinstance(value, Mapping):
        return (0, tuple(order(v) for v in value.values()))
    if isinstance(value, tuple):
        return (0, tuple(order(v) for v in value))
    return (0, value)


# -- the row language -------------------------------------------------------------------------
def holds(where: Row, record: Record) -> bool:
    """Whether the row holds the predicate: it is true (not false, not NULL)."""
    return value(where, record) is True


def value(e: Row, record: Record) -> Any:  # noqa: C901 - one case per construct
    """The expression's value on one row; None is NULL."""
    match e:
        case Col(name):
            if name.lower() not in record:
                raise EngineError(f'Binder Error: no column "{name}"')
            return record[name.lower()]
        case Const(v):
            return v
        case Not(inner):
            v = value(inner, record)
            return None if v is None else not v
        case Neg(inner):
            v = _number(value(inner, record))
            return None if v is None else -v
        case Abs(inner):
            v = _number(value(inner, record))
            return None if v is None else abs(v)
        case And(items):
            return _and([value(i, record) for i in items])
        case Or(items):
            return _or([value(i, record) for i in items])
        case Binary(op, left, right):
            return _compare(op, value(left, record), value(right, record))
        case Between(v, low, high):
            x = value(v, record)
            return _and([_compare(Op.LE, value(low, record), x),
                         _compare(Op.LE, x, value(high, record))])
        case IsNull(v, negated):
            return (value(v, record) is None) != negated
        case In(v, values, negated):
            found = _in(value(v, record), values)
            return None if found is None else found != negated
        case _:
            assert_never(e)


def _and(items: list[Any]) -> Any:
    if any(v is False for v in items):
        return False
    return None if any(v is None for v in items) else True


def _or(items: list[Any]) -> Any:
    if any(v is True for v in items):
        return True
    return None if any(v is None for v in items) else False


def _in(x: Any, values: tuple[Any, ...]) -> bool | None:
    if x is None:
        return None
    if _among(x, (v for v in values if v is not None)):
        return True
    return None if any(v is None for v in values) else False


def _compare(op: Op, a: Any, b: Any) -> Any:
    """`a op b` with NULLs unknown; text against a number is read as a number."""
    if a is None or b is None:
        return None
    if isinstance(a, str) != isinstance(b, str):
        a, b = _number(a), _number(b)
    fn = _COMPARE.get(op) or _ARITHMETIC[op]
    if op is Op.DIV:
        return fn(float(a), b)
    return fn(a, b)


def _number(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        raise EngineError(f"Conversion Error: Could not convert string '{v}' to a number"
                          ) from None
