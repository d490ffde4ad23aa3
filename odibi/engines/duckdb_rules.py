"""Rules, rendered for DuckDB: the neutral measurements of `odibi.expr.measures` (and the
row language of `odibi.expr.rows`) as DuckDB SQL. Pure text: nothing runs here.

A `Query` is one statement:
- AGGREGATE: `SELECT <aggregate> AS "m0", <aggregate> AS "m1", ... FROM <dataset> AS t`,
  one scan; counts of rows are `count(*) FILTER (WHERE ...)`, which DuckDB computes in
  the same pass as the other aggregates;
- QUERY: `WITH t AS (...), p AS (...) SELECT (<query>) AS "m0", ...`: a scalar query each
  (the anti-join of `references`, examples of what broke a rule). The relations are read
  first under names of their own, so that a table called `t` or `p` is not read as one
  of the aliases.

Examples come back as DuckDB's Python values: `list(...)` as a list, a struct as a dict,
`row(...)` as a tuple; each is a top-`EXAMPLES` in a deterministic order (sorted, as the
measurement's docstring says, by DuckDB's order: NULL last).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, assert_never

from odibi.expr import measurements as ms
from odibi.expr import rows
from odibi.expr.measures import EXAMPLES, Form, Query

__all__ = ["aggregate", "predicate", "scalar_query", "statement"]


def statement(query: Query, relation: Callable[[str], str]) -> str:
    """The one statement that takes every measure of `query`, its values in the order of
    `query.measures`; `relation(dataset)` is the SQL that names a dataset's data."""
    match query.form:
        case Form.AGGREGATE:
            select = ", ".join(f"{aggregate(m.what)} AS {q(m.key)}" for m in query.measures)
            return f"SELECT {select} FROM {relation(query.dataset)} AS t"
        case Form.QUERY:
            names = {"t": relation(query.dataset)}
            if query.parent is not None:
                names["p"] = relation(query.parent)
            ctes = ", ".join([f'"odibi__{i}" AS (SELECT * FROM {table})'
                              for i, table in enumerate(names.values())]
                             + [f'{q(name)} AS (SELECT * FROM "odibi__{i}")'
                                for i, name in enumerate(names)])
            select = ", ".join(f"({scalar_query(m.what)}) AS {q(m.key)}"
                               for m in query.measures)
            return f"WITH {ctes} SELECT {select}"
        case _:
            assert_never(query.form)


def aggregate(what: ms.Measurement) -> str:  # noqa: C901 - one case per measurement
    """An AGGREGATE measurement as an aggregate expression over `t`."""
    match what:
        case ms.RowCount():
            return "count(*)"
        case ms.CountWhere(where=where):
            return f"count(*) FILTER (WHERE {predicate(where)})"
        case ms.Aggregate(fn=fn, column=c):
            return f"{fn.value}({q(c)})"
        case ms.NullCount(columns=cols):
            return f"count(*) FILTER (WHERE {_any_null(cols)})"
        case ms.DistinctCount(column=c):
            return f"count(DISTINCT {q(c)})"
        case ms.Duplicates(columns=(c,)):  # NULL is no key: count(c) leaves it out
            return f"count({q(c)}) - count(DISTINCT {q(c)})"
        case ms.Duplicates(columns=cols):  # a row of NULLs is a key (a struct is not NULL)
            return f"count(*) - count(DISTINCT ({', '.join(q(c) for c in cols)}))"
        case ms.Outside(column=c, values=values):
            return f"count(*) FILTER (WHERE {_outside(c, values)})"
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
        case ms.OutsideValues(column=c, values=values):
            return (f"SELECT list(v ORDER BY v) FROM (SELECT DISTINCT {q(c)} AS v FROM t "
                    f"WHERE {_outside(c, values)} ORDER BY 1 LIMIT {EXAMPLES})")
        case ms.RepeatedKeys(columns=cols):
            return _repeated_keys(cols)
        case ms.NullCounts(columns=cols):
            counts = ", ".join(f"count(*) FILTER (WHERE {q(c)} IS NULL)" for c in cols)
            return f"SELECT [{counts}] FROM t"
        case ms.NullRows(columns=cols):
            # no DISTINCT: over whole rows it would hash every offending row, where a top-5
            # streams (2.5M offending rows: 0.6 s -> 0.2 s)
            return (f"SELECT list(_odibi_row ORDER BY _odibi_row) FROM (SELECT * FROM t "
                    f"WHERE {_any_null(cols)} ORDER BY ALL LIMIT {EXAMPLES}) AS _odibi_row")
        case ms.RowsWhere(columns=cols, where=where):
            fields = ", ".join(f"{lit(c)}: {q(c)}" for c in cols)
            return (f"SELECT list(r ORDER BY r) FROM (SELECT DISTINCT {{{fields}}} AS r FROM t "
                    f"WHERE {predicate(where)} ORDER BY 1 LIMIT {EXAMPLES})")
        case ms.OrphanKeys(columns=child, parent_columns=parent):
            return (f"SELECT list(k ORDER BY k) FROM (SELECT DISTINCT "
                    f"{_key(child, '_odibi_child.')} AS k FROM t AS _odibi_child WHERE "
                    f"{_orphan(child, parent)} ORDER BY 1 LIMIT {EXAMPLES})")
        case (ms.RowCount() | ms.CountWhere() | ms.Aggregate() | ms.NullCount()
              | ms.DistinctCount() | ms.Duplicates() | ms.Outside()):
            raise AssertionError(f"not a query: {what}")
        case _:
            assert_never(what)


def predicate(x: rows.Row) -> str:  # noqa: C901 - one case per construct
    """A row expression as a SQL expression over the columns of `t`."""
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
        case rows.Binary(op=rows.Op.DIV | rows.Op.MOD as op, left=a, right=b):
            # x / 0 and x % 0 are NULL, as DuckDB 1.x made them; DuckDB 2 makes x / 0 an
            # infinity and an integer x % 0 an error
            return f"({predicate(a)}) {op.value} NULLIF(({predicate(b)}), 0)"
        case rows.Binary(op=op, left=a, right=b):
            return f"({predicate(a)}) {'=' if op is rows.Op.EQ else op.value} ({predicate(b)})"
        case rows.Between(value=v, low=lo, high=hi):
            return f"({predicate(v)}) BETWEEN ({predicate(lo)}) AND ({predicate(hi)})"
        case rows.IsNull(value=v, negated=neg):
            return f"({predicate(v)}) IS {'NOT ' if neg else ''}NULL"
        case rows.In(value=v, values=values, negated=neg):
            listed = ", ".join(lit(i) for i in values)
            return f"({predicate(v)}) {'NOT ' if neg else ''}IN ({listed})"
        case _:
            assert_never(x)


# -- pieces --------------------------------------------------------------------------------
def q(name: str) -> str:
    """A column name, quoted."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    """A rule's literal value as SQL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _any_null(cols: Sequence[str]) -> str:
    return " OR ".join(f"{q(c)} IS NULL" for c in cols)


def _outside(col: str, values: Sequence[Any]) -> str:
    c = q(col)
    return f"{c} IS NOT NULL AND {c} NOT IN ({', '.join(lit(v) for v in values)})" \
        if values else f"{c} IS NOT NULL"


def _key(cols: Sequence[str], alias: str = "") -> str:
    """One column, or a row of several (DuckDB gives a tuple back)."""
    quoted = [alias + q(c) for c in cols]
    return quoted[0] if len(quoted) == 1 else f"row({', '.join(quoted)})"


def _repeated_keys(cols: Sequence[str]) -> str:
    """NULL keys of one column are not duplicates, as in the count; several columns group
    NULLs together, as DISTINCT does."""
    where = f" WHERE {q(cols[0])} IS NOT NULL" if len(cols) == 1 else ""
    return (f"SELECT list(r ORDER BY r.n DESC, r.k) FROM (SELECT {_key(cols)} AS k, count(*) "
            f"AS n FROM t{where} GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC, k "
            f"LIMIT {EXAMPLES}) AS r")


def _orphan(child: Sequence[str], parent: Sequence[str]) -> str:
    """That a row of `t` is an orphan: its key has no NULL and no row of `p` has it (dbt's
    `relationships`: a NULL key is not checked)."""
    known = " AND ".join(f"_odibi_child.{q(c)} IS NOT NULL" for c in child)
    match = " AND ".join(f"_odibi_parent.{q(pc)} = _odibi_child.{q(c)}"
                         for c, pc in zip(child, parent))
    return f"{known} AND NOT EXISTS (SELECT 1 FROM p AS _odibi_parent WHERE {match})"
