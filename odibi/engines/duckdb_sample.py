"""Samples of built outputs that join, in DuckDB (`odibi test --generate`; the plan of
what to sample comes from `odibi.testing.joins`).

Each step of the plan is one query on the warehouse: an input with no key to match gets
its first rows (sorted by all columns, so the sample is the same every time); an input
with keys gets the rows that join, on every key, the samples already taken (each earlier
sample is a CTE of the very query it came from): first each key value's first row, then
each one's second row, and so on, so that every sampled key finds a partner before any
finds two. When nothing matches, or the keys cannot be compared (types DuckDB will not
equate), the input gets its first rows after all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from odibi.engines.base import Relation
from odibi.engines.duckdb_engine import DuckDBEngine, relation_sql
from odibi.engines.duckdb_sandbox import quote_ident as q
from odibi.engines.tools import Rows, SampleStep


def sample(engine: DuckDBEngine, relations: Mapping[str, Relation], plan: Sequence[SampleStep],
           rows: int) -> dict[str, Rows]:
    """Up to `rows` rows of each input the plan names (`relations`: where each is read
    from), step by step."""
    con = engine.con
    tables = {i: relation_sql(r) for i, r in relations.items()}
    bodies: dict[str, str] = {}  # input -> the SELECT its sample came from
    out: dict[str, Rows] = {}
    for step in plan:
        table = tables[step.input]
        found = None
        if step.match:
            columns = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
            found = _matching(con, table, step, columns, bodies, rows)
        if found is None:
            bodies[step.input] = f"SELECT * FROM {table} ORDER BY ALL LIMIT {int(rows)}"
            found = _fetch(con, bodies[step.input])
        out[step.input] = found
    return out


def _matching(con: Any, table: str, step: SampleStep, columns: Sequence[str],
              bodies: dict[str, str], rows: int) -> Rows | None:
    """Up to `rows` rows of `table` that join, on every key of `step`, the samples taken
    before it (module docstring). None when nothing matches, or the keys cannot be
    compared."""
    import duckdb

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
        found = _fetch(con, f"WITH {ctes} {body}")
    except duckdb.Error:
        return None
    if not found.rows:
        return None
    bodies[step.input] = body
    return found


def _fetch(con: Any, sql: str) -> Rows:
    found = con.execute(sql)
    return Rows([d[0] for d in found.description], [str(d[1]) for d in found.description],
                found.fetchall())
