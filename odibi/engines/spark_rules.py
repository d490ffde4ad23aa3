"""Rules, rendered for Spark SQL: the neutral measurements of `odibi.expr.measures` (and the
row language of `odibi.expr.rows`) as one Spark SQL statement per `Query`, and the row it
gives back as the plain Python values DuckDB gives (`odibi.engines.duckdb_rules` and
`DuckDBSession.measure`), so that `odibi.expr.verdict` writes the same failure messages on
both engines. Pure text and Python values: nothing runs here, and pyspark is not imported.

A `Query` is one statement, as on DuckDB:
- AGGREGATE: `SELECT <aggregate> AS m0, ... FROM <dataset> AS t`, one scan; counts of rows
  are `count_if(...)`;
- QUERY: `WITH t AS (...), p AS (...) SELECT (<query>) AS m0, ...`, a scalar query each,
  the relations read first under names of their own (a table called `t` or `p` is not
  read as one of the aliases).
Its first columns are the measures, in the order of `query.measures`; after them come
the helper columns of SUM measures, in the same order (see `_wide_sum`).

What differs from DuckDB, and how the rendering makes up for it:
- Spark 4 runs in ANSI mode by default: a division by zero, an integer overflow, a cast
  that fails raise. `/` is `try_divide` of DOUBLEs and `%` is `try_mod` (a zero divisor
  gives NULL, as in the rule language); SUM and AVG never overflow where DuckDB's HUGEINT
  and DECIMAL(38, s) sums would not (`try_sum`, with an exact DECIMAL(38, s) sum beside it;
  AVG divides that exact sum, as DuckDB divides its exact one). Text compared with a
  number is cast, and text that is not one raises, as on DuckDB (where it is a conversion
  or binder error).
- Spark sorts NULL first, DuckDB last: every sort key says `NULLS LAST`, and a key of
  several columns is sorted column by column (Spark sorts a NULL field of a struct first).
- `collect_list` gives `[]` where DuckDB's `list` gives NULL, and no order: the examples
  (at most `EXAMPLES`, chosen by the statement's `ORDER BY ... LIMIT`) are sorted again in
  Python (`order`: ascending, NaN after numbers, NULL last, rows and tuples item by item,
  as DuckDB sorts), and an empty list is None.
- A struct comes back as a pyspark Row: a row of data (`NullRows`, `RowsWhere`, a struct
  column) becomes a dict, a key of several columns a tuple (DuckDB's `row(...)`).
- Spark string literals read backslash escapes: a literal's backslashes are doubled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, assert_never

from odibi.expr import measurements as ms
from odibi.expr import rows
from odibi.expr.measures import EXAMPLES, Form, Query

__all__ = ["aggregate", "order", "predicate", "scalar_query", "statement", "values"]

_INTEGRAL = frozenset({"tinyint", "smallint", "int", "bigint"})
# x + 0 as DECIMAL(28, 0) widens an integer to DECIMAL(29, 0) and a DECIMAL(p, s) (s <= 9) to
# DECIMAL(s + 29, s) without rounding: their sums are DECIMAL(38, s), as DuckDB's; a DOUBLE
# stays a DOUBLE.
_WIDEN = "CAST(0 AS DECIMAL(28, 0))"


def statement(query: Query, relation: Callable[[str], str]) -> str:
    """The one statement that takes every measure of `query`, its values first, in the
    order of `query.measures` (then helper columns that `values` reads); `relation(dataset)`
    is the Spark SQL that names a dataset's data (a view, or e.g. parquet.`/path`)."""
    match query.form:
        case Form.AGGREGATE:
            select = [f"{aggregate(m.what)} AS {q(m.key)}" for m in query.measures]
            select += [f"{_wide_sum(m.what.column)} AS `_odibi_wide{i}`"
                       for i, m in enumerate(_sums(query))]
            return f"SELECT {', '.join(select)} FROM {relation(query.dataset)} AS t"
        case Form.QUERY:
            names = {"t": relation(query.dataset)}
            if query.parent is not None:
                names["p"] = relation(query.parent)
            ctes = ", ".join([f"`odibi__{i}` AS (SELECT * FROM {table})"
                              for i, table in enumerate(names.values())]
                             + [f"{q(name)} AS (SELECT * FROM `odibi__{i}`)"
                                for i, name in enumerate(names)])
            select = ", ".join(f"({scalar_query(m.what)}) AS {q(m.key)}"
                               for m in query.measures)
            return f"WITH {ctes} SELECT {select}"
        case _:
            assert_never(query.form)


def values(query: Query, row: Any) -> dict[str, Any]:
    """The measures of `query` from the row its `statement` gave (a pyspark Row, or None
    for no row): {key: value}, each value as `DuckDBSession.measure` gives it."""
    if row is None:
        return {}
    fields = list(row)
    n = len(query.measures)
    wide = dict(zip((m.key for m in _sums(query)), fields[n:]))
    return {m.key: _value(m.what, fields[i], wide.get(m.key)) for i, m in enumerate(query.measures)}


def aggregate(what: ms.Measurement) -> str:  # noqa: C901 - one case per measurement
    """An AGGREGATE measurement as an aggregate expression over `t`."""
    match what:
        case ms.RowCount():
            return "count(*)"
        case ms.CountWhere(where=where):
            return f"count_if({predicate(where)})"
        case ms.Aggregate(fn=ms.Agg.SUM, column=c):
            return f"try_sum({q(c)})"  # NULL on overflow: then `_wide_sum` has the value
        case ms.Aggregate(fn=ms.Agg.AVG, column=c):
            return (f"try_divide(CAST(try_sum({q(c)} + {_WIDEN}) AS DOUBLE), "
                    f"count({q(c)}))")
        case ms.Aggregate(fn=fn, column=c):
            return f"{fn.value}({q(c)})"
        case ms.NullCount(columns=cols):
            return f"count_if({_any_null(cols)})"
        case ms.DistinctCount(column=c):
            return f"count(DISTINCT {q(c)})"
        case ms.Duplicates(columns=(c,)):  # NULL is no key: count(c) leaves it out
            return f"count({q(c)}) - count(DISTINCT {q(c)})"
        case ms.Duplicates(columns=cols):  # a struct is not NULL: a row of NULLs is a key
            return f"count(*) - count(DISTINCT struct({', '.join(q(c) for c in cols)}))"
        case ms.Outside(column=c, values=vals):
            return f"count_if({_outside(c, vals)})"
        case (ms.Orphans() | ms.OutsideValues() | ms.RepeatedKeys() | ms.NullCounts()
              | ms.NullRows() | ms.RowsWhere() | ms.OrphanKeys()):
            raise AssertionError(f"not an aggregate: {what}")
        case _:
            assert_never(what)


def scalar_query(what: ms.Measurement) -> str:  # noqa: C901 - one case per measurement
    """A QUERY measurement as a scalar query over `t` (and `p`)."""
    match what:
        case ms.Orphans(columns=child, parent_columns=parent):
            return f"SELECT count(*) FROM t AS _odibi_child WHERE {_orphan(child, parent)}"
        case ms.OutsideValues(column=c, values=vals):
            return _first(f"SELECT DISTINCT {q(c)} AS _odibi_k0 FROM t WHERE {_outside(c, vals)}",
                          "_odibi_k0", ["_odibi_k0"])
        case ms.RepeatedKeys(columns=cols):
            return _repeated_keys(cols)
        case ms.NullCounts(columns=cols):
            return f"SELECT array({', '.join(f'count_if({q(c)} IS NULL)' for c in cols)}) FROM t"
        case ms.NullRows(columns=cols):
            return (f"SELECT collect_list(struct(*)) FROM (SELECT * FROM t WHERE "
                    f"{_any_null(cols)} ORDER BY ALL ASC NULLS LAST LIMIT {EXAMPLES})")
        case ms.RowsWhere(columns=cols, where=where):
            keys = _names(cols)
            fields = ", ".join(f"{lit(c)}, {k}" for c, k in zip(cols, keys))
            picked = ", ".join(f"{q(c)} AS {k}" for c, k in zip(cols, keys))
            return _first(f"SELECT DISTINCT {picked} FROM t WHERE {predicate(where)}",
                          f"named_struct({fields})", keys)
        case ms.OrphanKeys(columns=child, parent_columns=parent):
            keys = _names(child)
            picked = ", ".join(f"_odibi_child.{q(c)} AS {k}" for c, k in zip(child, keys))
            return _first(f"SELECT DISTINCT {picked} FROM t AS _odibi_child WHERE "
                          f"{_orphan(child, parent)}", _key(keys), keys)
        case (ms.RowCount() | ms.CountWhere() | ms.Aggregate() | ms.NullCount()
              | ms.DistinctCount() | ms.Duplicates() | ms.Outside()):
            raise AssertionError(f"not a query: {what}")
        case _:
            assert_never(what)


def predicate(x: rows.Row) -> str:  # noqa: C901 - one case per construct
    """A row expression as a Spark SQL expression over the columns of `t`."""
    match x:
        case rows.Col(name=name):
            return q(name)
        case rows.Const(value=v):
            return lit(v)
        case rows.Not(expr=y):
            return f"NOT ({predicate(y)})"
        case rows.Neg(expr=y):
            return f"-({predicate(y)})"
        case rows.Abs(expr=y):
            return f"abs({predicate(y)})"
        case rows.And(items=items):
            return " AND ".join(f"({predicate(i)})" for i in items)
        case rows.Or(items=items):
            return " OR ".join(f"({predicate(i)})" for i in items)
        case rows.Binary(op=rows.Op.DIV, left=a, right=b):  # as floats; x / 0 is NULL
            return (f"try_divide(CAST(({predicate(a)}) AS DOUBLE), "
                    f"CAST(({predicate(b)}) AS DOUBLE))")
        case rows.Binary(op=rows.Op.MOD, left=a, right=b):  # x % 0 is NULL
            return f"try_mod(({predicate(a)}), ({predicate(b)}))"
        case rows.Binary(op=op, left=a, right=b):
            return f"({predicate(a)}) {'=' if op is rows.Op.EQ else op.value} ({predicate(b)})"
        case rows.Between(value=v, low=lo, high=hi):
            return f"({predicate(v)}) BETWEEN ({predicate(lo)}) AND ({predicate(hi)})"
        case rows.IsNull(value=v, negated=neg):
            return f"({predicate(v)}) IS {'NOT ' if neg else ''}NULL"
        case rows.In(value=v, values=vals, negated=neg):
            listed = ", ".join(lit(i) for i in vals)
            return f"({predicate(v)}) {'NOT ' if neg else ''}IN ({listed})"
        case _:
            assert_never(x)


# -- pieces of SQL ----------------------------------------------------------------------------
def q(name: str) -> str:
    """A name, quoted for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def lit(value: Any) -> str:
    """A rule's literal value as Spark SQL (whose string literals read backslash escapes)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _any_null(cols: Sequence[str]) -> str:
    return " OR ".join(f"{q(c)} IS NULL" for c in cols)


def _outside(col: str, vals: Sequence[Any]) -> str:
    c = q(col)
    return f"{c} IS NOT NULL AND {c} NOT IN ({', '.join(lit(v) for v in vals)})" \
        if vals else f"{c} IS NOT NULL"


def _names(cols: Sequence[str]) -> list[str]:
    """Names of our own for the columns a query picks (the rule's may repeat, or be
    called like an alias)."""
    return [f"_odibi_k{i}" for i in range(len(cols))]


def _key(names: Sequence[str]) -> str:
    """One column, or a struct of several (a tuple in Python, as DuckDB's row)."""
    return names[0] if len(names) == 1 else f"struct({', '.join(names)})"


def _first(select: str, item: str, keys: Sequence[str], first: str = "") -> str:
    """The first `EXAMPLES` rows of `select` sorted by `keys` (NULL last, key by key),
    collected as a list of `item`."""
    by = ", ".join([first] * bool(first) + [f"{k} ASC NULLS LAST" for k in keys])
    return f"SELECT collect_list({item}) FROM ({select} ORDER BY {by} LIMIT {EXAMPLES})"


def _repeated_keys(cols: Sequence[str]) -> str:
    """NULL keys of one column are not duplicates, as in the count; several columns group
    NULLs together, as DISTINCT does."""
    keys = _names(cols)
    where = f" WHERE {q(cols[0])} IS NOT NULL" if len(cols) == 1 else ""
    picked = ", ".join(f"{q(c)} AS {k}" for c, k in zip(cols, keys))
    grouped = ", ".join(q(c) for c in cols)
    return _first(f"SELECT {picked}, count(*) AS _odibi_n FROM t{where} GROUP BY {grouped} "
                  "HAVING count(*) > 1", f"named_struct('k', {_key(keys)}, 'n', _odibi_n)",
                  keys, first="_odibi_n DESC")


def _orphan(child: Sequence[str], parent: Sequence[str]) -> str:
    """That a row of `t` is an orphan: its key has no NULL and no row of `p` has it."""
    known = " AND ".join(f"_odibi_child.{q(c)} IS NOT NULL" for c in child)
    match = " AND ".join(f"_odibi_parent.{q(pc)} = _odibi_child.{q(c)}"
                         for c, pc in zip(child, parent))
    return f"{known} AND NOT EXISTS (SELECT 1 FROM p AS _odibi_parent WHERE {match})"


def _sums(query: Query) -> list[Any]:
    """The SUM measures of an aggregate query: each has a helper column."""
    return [m for m in query.measures
            if isinstance(m.what, ms.Aggregate) and m.what.fn is ms.Agg.SUM]


def _wide_sum(column: str) -> str:
    """The column's type and its exact sum as DECIMAL(38, s): what a SUM is when `try_sum`
    overflowed (a BIGINT sum past 2**63, a DECIMAL(p, s) one past p + 10 digits), where
    DuckDB's HUGEINT or DECIMAL(38, s) sum does not."""
    c = q(column)
    return f"named_struct('type', typeof(min({c})), 'sum', try_sum({c} + {_WIDEN}))"


# -- values -----------------------------------------------------------------------------------
def _value(what: ms.Measurement, got: Any, wide: Any) -> Any:  # noqa: C901 - one per kind
    """A measure's value as DuckDB gives it, from what Spark gave."""
    match what:
        case (ms.RowCount() | ms.CountWhere() | ms.NullCount() | ms.DistinctCount()
              | ms.Duplicates() | ms.Outside() | ms.Orphans()):
            return got
        case ms.Aggregate(fn=ms.Agg.SUM):
            return got if got is not None else _widened(wide)
        case ms.Aggregate():
            return plain(got)
        case ms.NullCounts():
            return list(got)
        case ms.OutsideValues() | ms.NullRows() | ms.RowsWhere():
            return _sorted([plain(v) for v in got])
        case ms.OrphanKeys(columns=cols):
            return _sorted([_as_key(k, len(cols)) for k in got])
        case ms.RepeatedKeys(columns=cols):
            items = [{"k": _as_key(r[0], len(cols)), "n": r[1]} for r in got]
            return sorted(items, key=lambda r: (-r["n"], order(r["k"]))) or None
        case _:
            assert_never(what)


def _widened(wide: Any) -> Any:
    """A SUM that overflowed `try_sum`: its exact sum, an int for an integer column."""
    if wide is None or wide[1] is None:
        return None
    kind, total = wide[0], wide[1]
    if kind in _INTEGRAL:
        return int(total)
    return total if kind.startswith("decimal") else None


def _as_key(k: Any, columns: int) -> Any:
    """A key of one column is its value; of several, a tuple (DuckDB's row)."""
    return plain(k) if columns == 1 else tuple(plain(v) for v in k)


def _sorted(items: list[Any]) -> list[Any] | None:
    return sorted(items, key=order) or None


def plain(v: Any) -> Any:
    """A value from a pyspark Row as DuckDB gives it: a struct (a Row) as a dict, in its
    fields' order; arrays as lists; maps as dicts."""
    if isinstance(v, tuple) and hasattr(v, "__fields__"):
        return {name: plain(x) for name, x in zip(v.__fields__, v)}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def order(v: Any) -> tuple[Any, ...]:
    """How DuckDB sorts examples: ascending, NaN after every number, NULL last; rows
    (dicts), tuples and lists item by item."""
    if v is None:
        return (2,)
    if isinstance(v, float) and math.isnan(v):
        return (1,)
    if isinstance(v, Mapping):
        return (0, tuple(order(x) for x in v.values()))
    if isinstance(v, (tuple, list)):
        return (0, tuple(order(x) for x in v))
    if isinstance(v, Decimal) and v.is_nan():
        return (1,)
    return (0, v)
