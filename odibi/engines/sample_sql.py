"""Samples of built outputs that join, in SQL (`odibi test --generate`; the plan of what
to sample comes from `odibi.testing.joins`), for any engine that can run a query and
quote a name (`SampleSql`: DuckDB's and Spark's are below).

Each step of the plan is one query on the warehouse: an input with no key to match gets
its first rows (sorted by all columns, so the sample is the same every time); an input
with keys gets the rows that join, on every key, the samples already taken (each earlier
sample is a CTE of the very query it came from): first each key value's first row, then
each one's second row, and so on, so that every sampled key finds a partner before any
finds two. When nothing matches, or the keys cannot be compared (types the engine will
not equate), the input gets its first rows after all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from odibi.engines.base import Relation
from odibi.engines.tools import Rows, SampleStep


@dataclass(frozen=True, slots=True)
class SampleSql:
    """What sampling asks of an engine."""

    fetch: Callable[[str], Rows]  # run a query: its columns, types and rows
    table: Callable[[Relation], str]  # how its SQL names a relation
    quote: Callable[[str], str]  # a quoted identifier
    failures: tuple[type[BaseException], ...]  # what a query that cannot run raises


def sample_sql(sql: SampleSql, relations: Mapping[str, Relation], plan: Sequence[SampleStep],
               rows: int) -> dict[str, Rows]:
    """Up to `rows` rows of each input the plan names (`relations`: where each is read
    from), step by step."""
    tables = {i: sql.table(r) for i, r in relations.items()}
    bodies: dict[str, str] = {}  # input -> the SELECT its sample came from
    out: dict[str, Rows] = {}
    for step in plan:
        table = tables[step.input]
        found = None
        if step.match:
            columns = list(sql.fetch(f"SELECT * FROM {table} LIMIT 0").columns)
            found = _matching(sql, table, step, columns, bodies, rows)
        if found is None:
            bodies[step.input] = f"SELECT * FROM {table} ORDER BY ALL LIMIT {int(rows)}"
            found = sql.fetch(bodies[step.input])
        out[step.input] = found
    return out


def _matching(sql: SampleSql, table: str, step: SampleStep, columns: Sequence[str],
              bodies: dict[str, str], rows: int) -> Rows | None:
    """Up to `rows` rows of `table` that join, on every key of `step`, the samples taken
    before it (module docstring). None when nothing matches, or the keys cannot be
    compared."""
    q = sql.quote
    names = {n: f"__odibi_sample_{k}" for k, n in enumerate(bodies)}
    exists, keys = [], []
    for key in step.match:
        other = key.other(step.input)
        on = " AND ".join(f"__odibi_y.{q(b)} = __odibi_x.{q(a)}" for a, b in
                          zip(key.columns_of(step.input), key.columns_of(other)))
        exists.append(f"EXISTS (SELECT 1 FROM {names[other]} AS __odibi_y WHERE {on})")
        keys += [c for c in key.columns_of(step.input) if c not in keys]
    cols = ", ".join(q(c) for c in columns)
    ctes = ", ".join(f"{names[n]} AS ({body})" for n, body in bodies.items())
    body = (f"SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY "
            f"{', '.join(q(c) for c in keys)} ORDER BY {cols}) AS __odibi_round "
            f"FROM {table} AS __odibi_x WHERE {' AND '.join(exists)}) "
            f"ORDER BY __odibi_round, {cols} LIMIT {int(rows)}")
    try:
        found = sql.fetch(f"WITH {ctes} {body}")
    except sql.failures:
        return None
    if not found.rows:
        return None
    bodies[step.input] = body
    return found


def duckdb_sample(engine: Any) -> SampleSql:
    import duckdb

    from odibi.engines.duckdb_engine import relation_sql
    from odibi.engines.duckdb_sandbox import quote_ident

    def fetch(text: str) -> Rows:
        found = engine.con.execute(text)
        return Rows([d[0] for d in found.description], [str(d[1]) for d in found.description],
                    found.fetchall())
    return SampleSql(fetch, relation_sql, quote_ident, (duckdb.Error,))


def spark_sample(engine: Any) -> SampleSql:
    from odibi.engines.spark_engine import quote

    spark = engine.spark

    def fetch(text: str) -> Rows:
        df = spark.sql(text)
        return Rows(list(df.columns), [f.dataType.simpleString() for f in df.schema.fields],
                    [tuple(r) for r in df.collect()])
    return SampleSql(fetch, lambda rel: engine.relation_sql(spark, rel), quote, (Exception,))
