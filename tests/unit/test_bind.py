"""The binder on real DuckDB (engines/duckdb_bind.py) and the schema text of traces
(bind.parse_schema): schemas come out as the node's output table will have them, and a
statement that does not bind is located in its own text."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from odibi.bind import parse_schema
from odibi.config.model import ReadSpec
from odibi.engines.duckdb_bind import DuckDBBinder, read_schemas
from odibi.engines.tools import BindFailure, BindProblem
from odibi.engines.duckdb_engine import DuckDBSession
from odibi.ids import NodeId, OutputRef
from odibi.errors import Span
from odibi.ids import Format

TRICKY = (("order_id", "BIGINT"), ("amount", "DECIMAL(18,3)"), ("my col", "VARCHAR"),
          ('qu"ote', "INTEGER"), ("s", 'STRUCT("a b" INTEGER, c VARCHAR[])'),
          ("e", "ENUM('x', 'y')"), ("m", "MAP(VARCHAR, INTEGER)"),
          ("ts", "TIMESTAMP WITH TIME ZONE"), ("l", "INTEGER[][2]"),
          ("u", "UNION(num INTEGER, str VARCHAR)"), ("j", "JSON"), ("ü", "DATE"))
if int(duckdb.__version__.split(".")[0]) >= 2:  # a column of NULLs has a type of its own
    TRICKY += (("n", '"NULL"'),)


@pytest.fixture
def binder():
    b = DuckDBBinder()
    yield b
    b.close()


def table_schema(select: str) -> tuple[tuple[str, str], ...]:
    """What DuckDB makes of `CREATE TABLE AS select` (the output table a build makes)."""
    con = duckdb.connect()
    try:
        con.execute("CREATE SCHEMA odibi_store")
        session = DuckDBSession(con.cursor())
        out = OutputRef(NodeId("t"), "v")
        session.run_sql(out, select)  # as a build makes it
        info = session.describe(out, 0)
        return parse_schema(info.schema)  # type: ignore[return-value]
    finally:
        con.close()


# -- schemas -----------------------------------------------------------------------------------
def test_every_kind_of_type_goes_through_a_stand_in_unchanged(binder: DuckDBBinder) -> None:
    assert binder.bind("SELECT * FROM t", {"t": TRICKY}) == TRICKY


def test_a_trace_schema_reads_back_with_spaces_in_names_and_types() -> None:
    text = tuple(f"{c} {t}" for c, t in TRICKY) + ("a TIMESTAMP TIMESTAMP WITH TIME ZONE",
                                                   "x INTEGER INTEGER")
    assert parse_schema(text) == (*TRICKY, ("a TIMESTAMP", "TIMESTAMP WITH TIME ZONE"),
                                  ("x INTEGER", "INTEGER"))


@pytest.mark.parametrize("text", [
    ("amount NUMBER", "s dict"),  # what DuckDB < 1.5's cursor descriptions said
    ("nospace",), ("a (INT",), ("a STRUCT(x INTEGER) INTEGER)",),
    (),  # no column: no table has that
])
def test_a_trace_schema_that_is_no_schema_is_refused(text: tuple[str, ...]) -> None:
    assert parse_schema(text) is None


@pytest.mark.parametrize("select", [
    "SELECT 1 AS a, 2 AS a, 3 AS a_1",
    'SELECT 1 AS a, 2 AS "A", 3 AS a',
    "SELECT NULL AS n, [] AS l, {'k': 1.5} AS s, 1::DECIMAL(9,2) AS d",
    "SELECT * FROM (VALUES (1, 'x')) AS v(id, name)",
])
def test_a_bound_schema_is_the_schema_of_the_table_a_build_makes(binder: DuckDBBinder,
                                                                 select: str) -> None:
    assert binder.bind(select, {}) == table_schema(select)


def test_a_trailing_semicolon_and_comment_do_not_stop_the_binding(binder: DuckDBBinder) -> None:
    assert binder.bind("SELECT id FROM t; -- the end", {"t": (("id", "BIGINT"),)}) == \
        (("id", "BIGINT"),)
    assert binder.bind("SELECT id FROM t -- the end", {"t": (("id", "BIGINT"),)}) == \
        (("id", "BIGINT"),)


def test_an_input_named_with_its_schema_binds_on_tables(binder: DuckDBBinder) -> None:
    inputs = {"t": (("id", "BIGINT"),), "u": (("v", "VARCHAR"),)}
    assert binder.bind("SELECT t.id, u.v FROM main.t, u", inputs) == \
        (("id", "BIGINT"), ("v", "VARCHAR"))
    failure = binder.bind("SELECT t.idd FROM main.t", inputs)
    assert isinstance(failure, BindFailure) and failure.offset == 9 and failure.name == "idd"
    # the tables were rolled back: the next statement sees only its own inputs
    assert isinstance(binder.bind("SELECT * FROM u", {}), BindFailure)


def test_a_statement_sees_only_its_inputs(binder: DuckDBBinder) -> None:
    binder.bind("SELECT * FROM t", {"t": (("id", "BIGINT"),)})
    failure = binder.bind("SELECT * FROM query_table('t')", {"u": (("id", "BIGINT"),)})
    assert isinstance(failure, BindFailure) and failure.problem is BindProblem.TABLE  # (not one of its inputs)


# -- failures, located ---------------------------------------------------------------------------
ORDERS = {"orders": (("order_id", "BIGINT"), ("amount", "DOUBLE"))}


@pytest.mark.parametrize("sql,problem,name,at", [
    ("SELECT amout FROM orders", BindProblem.COLUMN, "amout", "amout"),
    ("SELECT o.amout FROM orders AS o", BindProblem.COLUMN, "amout", "amout"),
    ("SELECT 'é€', amout FROM orders", BindProblem.COLUMN, "amout", "amout"),
    ("SELECT order_id\nFROM orders\nWHERE amout > 0", BindProblem.COLUMN, "amout", "amout"),
    ("SELECT * FROM orders JOIN query('SELECT amout FROM orders') USING (order_id)",
     BindProblem.COLUMN, "amout", "amout"),
    ("SELECT foo(amount) FROM orders", BindProblem.MISSING, "foo", "foo"),
    ("SELECT * FROM query_table('other')", BindProblem.TABLE, "other", "other"),
    ("SELECT * FROM st_read('x.shp')", BindProblem.EXTENSION, "st_read", "st_read"),
    ("SELECT * FROM read_csv('/etc/hostname')", BindProblem.FILE, "/etc/hostname",
     "/etc/hostname"),
    ("SELECT * FROM orders, query('SELECT * FROM read_text(''/etc/hostname'')')",
     BindProblem.FILE, "/etc/hostname", "/etc/hostname"),
    ("SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x.csv''')", BindProblem.NESTED, None,
     "query"),
    ("SELECT order_id, count(*) FROM orders", BindProblem.OTHER, None, "order_id"),
])
def test_a_failure_is_located_in_the_nodes_text(binder: DuckDBBinder, sql: str, problem: BindProblem,
                                                name: str | None, at: str) -> None:
    failure = binder.bind(sql, ORDERS)
    assert isinstance(failure, BindFailure), failure
    assert failure.problem is problem and failure.name == name
    start = sql.rindex(at) if problem is BindProblem.COLUMN else sql.index(at)
    assert failure.offset == start
    if problem is not BindProblem.OTHER:  # (the width of any other error: DuckDB 2.x says it)
        assert sql[failure.offset:failure.offset + failure.width] == (name or at)


def test_a_column_failure_names_the_columns_in_scope(binder: DuckDBBinder) -> None:
    failure = binder.bind("SELECT amout FROM orders", ORDERS)
    assert isinstance(failure, BindFailure)
    assert "amount" in failure.candidates


def test_stand_ins_odibi_cannot_use_are_not_the_statements_fault(binder: DuckDBBinder) -> None:
    failure = binder.bind("SELECT amount FROM t", {"t": (("amount", "NUMBER"),)})
    assert isinstance(failure, BindFailure) and failure.problem is BindProblem.INPUTS


def test_the_binder_reaches_no_file(binder: DuckDBBinder, tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n")
    failure = binder.bind(f"SELECT * FROM query('FROM ''{tmp_path / 'x.csv'}''')", {})
    assert isinstance(failure, BindFailure) and failure.problem is BindProblem.FILE


# -- reads -------------------------------------------------------------------------------------
def spec(fmt: Format, **options: object) -> ReadSpec:
    return ReadSpec("raw", "x", "x", fmt, options, options, Span("f", 1, 1))


def test_read_schemas_come_from_the_files_with_the_nodes_options(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id;amount\n1;2.5\n")
    (tmp_path / "b.csv").write_text("id,amount\n1,2.5\n")
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 1::INTEGER AS id, 'x' AS name) TO '{tmp_path / 'c.parquet'}'")
    con.close()
    found = read_schemas([([tmp_path / "a.csv"], spec(Format.CSV, delim=";")),
                          ([tmp_path / "b.csv"], spec(Format.CSV, delim=";")),
                          ([tmp_path / "c.parquet"], spec(Format.PARQUET)),
                          ([tmp_path / "b.csv"], spec(Format.CSV, no_such_option=1))])
    assert found[0] == (("id", "BIGINT"), ("amount", "DOUBLE"))
    assert found[1] == (("id,amount", "VARCHAR"),)
    assert found[2] == (("id", "INTEGER"), ("name", "VARCHAR"))
    assert isinstance(found[3], str) and "no_such_option" in found[3]
