"""The DuckDB scratch engine (`odibi.engines.tools.Scratch`): what `odibi test` runs
cases in.

One in-memory database per run, in odibi's sandbox as a build's warehouse is (a node's
SQL reaches no file), reaching only the fixture files it is opened with and a scratch
directory of its own (where csv text is written to be read). A new database costs
~25 ms, a case ~5 ms: every case runs on a cursor of the one database (`FixtureSession`,
a build's `DuckDBSession` that also loads fixtures), which drops what it made when the
case is done.

A fixture is a table in `main` named after the node it stands for (SQL reads it by that
name): rows through VALUES (YAML floats as DOUBLE, as csv data would be read; dates and
timestamps typed; lists and mappings as LIST and STRUCT), csv text or a file through
DuckDB's readers; `schema` casts the columns it names to its types.
"""

from __future__ import annotations

import datetime
import math
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from odibi.config.model import ReadSpec
from odibi.engines.base import Access, Location, OutputRef, Relation
from odibi.engines.duckdb_engine import CAPABILITIES, STORE, DuckDBSession, relation_sql
from odibi.engines.duckdb_sandbox import connect, quote_ident
from odibi.engines.tools import Fixture, FixtureError, FixtureProblem, MissingColumn, Rows
from odibi.ids import NodeId

_MISSING_SQL_COLUMN = re.compile(
    r'(?:Referenced column "(?P<a>[^"]+)" not found'
    r'|Table "(?P<t>[^"]+)" does not have a column named "(?P<b>[^"]+)")')
TYPE_EXAMPLES = "BIGINT, DOUBLE, VARCHAR, BOOLEAN, DATE, TIMESTAMP, DECIMAL(10,2)"
_KEY_ERROR = re.compile(r"KeyError: '(?:Column not found: )?(?P<c>[^']+)'")  # pandas


class DuckDBScratch:
    """An in-memory DuckDB for test cases; `close` forgets it and its scratch files."""

    capabilities = CAPABILITIES

    def __init__(self, access: Access) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="odibi-test-")
        self.tmp = Path(self._tmp.name)
        try:
            self.con = connect(":memory:", Access(access.reads, access.writes,
                                                  (*access.directories, self.tmp)))
            self.con.execute(f"CREATE SCHEMA {STORE}")  # where nodes' outputs are stored
        except BaseException:
            self._tmp.cleanup()
            raise

    def session(self) -> FixtureSession:
        return FixtureSession(self.con.cursor(), self.tmp)

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            self._tmp.cleanup()


class FixtureSession(DuckDBSession):
    """A cursor of the scratch database: a build's session that remembers what it made
    (`clear` drops exactly that: ~1 ms a case cheaper than reading the catalog)."""

    def __init__(self, cursor: Any, tmp: Path) -> None:
        super().__init__(cursor)
        self.tmp = tmp
        self._tables: list[NodeId] = []  # fixtures, in main
        self._views: list[NodeId] = []  # nodes made current
        self._stored: list[OutputRef] = []

    # -- what a build's session makes, remembered -------------------------------------
    def read(self, out: OutputRef, sources: Sequence[Location], spec: ReadSpec) -> int:
        self._stored.append(out)
        return super().read(out, sources, spec)

    def run_sql(self, out: OutputRef, sql: str, inputs: Sequence[NodeId] = ()) -> int:
        self._stored.append(out)
        return super().run_sql(out, sql, inputs)

    def create_from_frame(self, out: OutputRef, frame: Any) -> int:
        self._stored.append(out)
        return super().create_from_frame(out, frame)

    def make_current(self, node: NodeId, out: OutputRef) -> None:
        self._views.append(node)
        super().make_current(node, out)

    def clear(self) -> None:
        statements = [*(f"DROP VIEW IF EXISTS {relation_sql(v)}" for v in self._views),
                      *(f"DROP TABLE IF EXISTS {relation_sql(t)}" for t in self._tables),
                      *(f"DROP TABLE IF EXISTS {relation_sql(o)}" for o in self._stored)]
        self._views, self._tables, self._stored = [], [], []
        if statements:
            self._run("; ".join(statements))

    # -- fixtures ---------------------------------------------------------------------
    def load(self, node: NodeId, fixture: Fixture) -> None:
        import duckdb

        if fixture.schema:
            self._check_types(fixture.schema)
        if fixture.rows is not None:
            select = _values(fixture.rows, fixture.schema)
        else:
            select = self._file_select(fixture)
        self._tables.append(node)
        try:
            self.cur.execute(f"CREATE OR REPLACE TABLE {relation_sql(node)} AS {select}")
        except duckdb.Error as e:
            raise FixtureError(FixtureProblem.UNLOADABLE, _first_line(e)) from None

    def _file_select(self, fixture: Fixture) -> str:
        path = fixture.file
        if fixture.csv is not None:
            path = self.tmp / f"fixture_{time.perf_counter_ns()}.csv"
            path.write_text(fixture.csv)
        assert path is not None
        reader = "read_parquet" if path.suffix.lower() in (".parquet", ".pq") else "read_csv"
        select = f"SELECT * FROM {reader}({_string(str(path))})"
        if fixture.schema:
            select = _cast(select, fixture.schema, self._file_columns(select, fixture.schema))
        return select

    def _check_types(self, schema: Mapping[str, str]) -> None:
        import duckdb

        for column, t in schema.items():
            try:
                self.cur.execute(f"SELECT CAST(NULL AS {t})")
            except duckdb.Error as e:
                raise FixtureError(FixtureProblem.TYPE, _first_line(e), column,
                                   engine="DuckDB", examples=TYPE_EXAMPLES) from None

    def _file_columns(self, select: str, schema: Mapping[str, str]) -> list[str]:
        """The columns a csv or parquet fixture has; every column `schema` types must be one."""
        import duckdb

        try:
            columns = [d[0] for d in self.cur.execute(f"{select} LIMIT 0").description]
        except duckdb.Error as e:
            raise FixtureError(FixtureProblem.UNREADABLE, _first_line(e)) from None
        for c in schema:
            if c not in columns:
                raise FixtureError(FixtureProblem.NO_COLUMN, f"no column {c}", c, columns)
        return columns

    # -- reading back -----------------------------------------------------------------
    def rows(self, relation: Relation, *, order: bool = False) -> Rows:
        sql = f"SELECT * FROM {relation_sql(relation)}" + (" ORDER BY ALL" if order else "")
        found = self._run(sql)
        return Rows([d[0] for d in found.description], [str(d[1]) for d in found.description],
                    self._mapped(found.fetchall))

    def missing_column(self, error: str) -> MissingColumn | None:
        found = _MISSING_SQL_COLUMN.search(error) or _KEY_ERROR.search(error)
        if found is None:
            return None
        named = found.groupdict()
        return MissingColumn(str(named.get("a") or named.get("b") or named.get("c")),
                             named.get("t"))


def _values(rows: tuple[Mapping[str, Any], ...], schema: Mapping[str, str]) -> str:
    if not rows:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(c)}" for c, t in schema.items())
        return f"SELECT {cols} WHERE false"
    columns = list(rows[0])
    body = ", ".join("(" + ", ".join(_literal(r[c]) for c in columns) + ")" for r in rows)
    select = (f"SELECT * FROM (VALUES {body}) AS "
              f"v({', '.join(quote_ident(c) for c in columns)})")
    return _cast(select, schema, columns) if schema else select


def _cast(select: str, schema: Mapping[str, str], columns: list[str]) -> str:
    """The columns in their order, those in `schema` cast to their types."""
    cols = ", ".join(f"CAST({quote_ident(c)} AS {schema[c]}) AS {quote_ident(c)}"
                     if c in schema else quote_ident(c) for c in columns)
    return f"SELECT {cols} FROM ({select})"


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _literal(value: Any) -> str:
    """A YAML value as a DuckDB literal: floats as DOUBLE (as csv data would be read),
    dates and timestamps typed, lists and mappings as LIST and STRUCT."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value!r}::DOUBLE" if math.isfinite(value) else f"'{value}'::DOUBLE"
    if isinstance(value, datetime.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    return _string(str(value))
