"""The scratch engine `odibi test` runs cases in (odibi.engines.open_scratch, on real DuckDB),
through its engine-neutral interface (odibi/engines/tools.py): fixtures of every kind load
as a node's current output, a node runs on them as a build runs it, rows come back in a
stable order, a case leaves nothing behind, and its SQL reaches only the fixture files."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from odibi.engines import open_scratch
from odibi.engines.base import Access, EngineError
from odibi.engines.tools import Fixture, FixtureError, FixtureProblem, MissingColumn, Scratch
from odibi.ids import NodeId, OutputRef

ORDERS = NodeId("orders")
OUT = OutputRef(NodeId("clean"), "v1")


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    (tmp_path / "orders.csv").write_text("id,amount\n2,3.5\n1,2.5\n")
    (tmp_path / "other.csv").write_text("id\n1\n")
    s = open_scratch(Access(reads=(tmp_path / "orders.csv",)))
    yield s
    s.close()


def test_fixtures_of_every_kind_load_as_a_nodes_current_output(scratch: Scratch,
                                                               tmp_path: Path) -> None:
    session = scratch.session()
    rows = ({"id": 2, "day": datetime.date(2024, 1, 31), "tags": ["a"], "kv": {"k": 1},
             "amount": 3.5, "note": None},
            {"id": 1, "day": datetime.date(2024, 1, 1), "tags": [], "kv": {"k": 2},
             "amount": 2.0, "note": "x"})
    session.load(ORDERS, Fixture(rows=rows))
    found = session.rows(ORDERS, order=True)
    assert list(found.columns) == ["id", "day", "tags", "kv", "amount", "note"]
    assert list(found.types)[:2] == ["INTEGER", "DATE"] and found.types[4] == "DOUBLE"
    assert list(found.rows) == [(1, datetime.date(2024, 1, 1), [], {"k": 2}, 2.0, "x"),
                                (2, datetime.date(2024, 1, 31), ["a"], {"k": 1}, 3.5, None)]
    session.load(ORDERS, Fixture(csv="id,amount\n7,1.5\n"))  # (loading again replaces it)
    assert list(session.rows(ORDERS).rows) == [(7, 1.5)]
    session.load(ORDERS, Fixture(file=tmp_path / "orders.csv"))
    assert list(session.rows(ORDERS, order=True).rows) == [(1, 2.5), (2, 3.5)]
    session.clear()
    session.close()


def test_a_schema_types_the_columns_it_names(scratch: Scratch) -> None:
    session = scratch.session()
    session.load(ORDERS, Fixture(rows=({"id": "007", "amount": 2},),
                                 schema={"id": "BIGINT", "amount": "DECIMAL(10,2)"}))
    found = session.rows(ORDERS)
    assert (list(found.types), list(found.rows)) == (["BIGINT", "DECIMAL(10,2)"],
                                                     [(7, Decimal("2.00"))])
    session.load(ORDERS, Fixture(rows=(), schema={"id": "BIGINT"}))  # no rows, typed columns
    assert (list(session.rows(ORDERS).types), list(session.rows(ORDERS).rows)) == (["BIGINT"], [])
    # a column the schema does not name is read as the engine reads it
    session.load(ORDERS, Fixture(csv="id,amount\n007,1\n", schema={"amount": "DOUBLE"}))
    found = session.rows(ORDERS)
    assert (list(found.types), list(found.rows)) == (["VARCHAR", "DOUBLE"], [("007", 1.0)])
    session.clear()
    session.close()


def test_a_fixture_the_engine_cannot_load_says_what_is_wrong(scratch: Scratch,
                                                             tmp_path: Path) -> None:
    session = scratch.session()
    with pytest.raises(FixtureError) as bad_type:
        session.load(ORDERS, Fixture(rows=({"id": 1},), schema={"id": "BIGINTEGER"}))
    assert (bad_type.value.problem, bad_type.value.column) == (FixtureProblem.TYPE, "id")
    assert "BIGINTEGER" in bad_type.value.detail and "\n" not in bad_type.value.detail
    with pytest.raises(FixtureError) as no_column:
        session.load(ORDERS, Fixture(csv="id,amount\n1,2\n", schema={"amout": "DOUBLE"}))
    assert (no_column.value.problem, no_column.value.column, no_column.value.columns) == (
        FixtureProblem.NO_COLUMN, "amout", ("id", "amount"))
    with pytest.raises(FixtureError) as cast:
        session.load(ORDERS, Fixture(rows=({"id": "abc"},), schema={"id": "BIGINT"}))
    assert cast.value.problem is FixtureProblem.UNLOADABLE and "abc" in cast.value.detail
    session.close()
    not_parquet = tmp_path / "bad.parquet"
    not_parquet.write_text("id\n1\n")
    other = open_scratch(Access(reads=(not_parquet,)))
    try:
        session = other.session()
        with pytest.raises(FixtureError) as unreadable:
            session.load(ORDERS, Fixture(file=not_parquet, schema={"id": "BIGINT"}))
        assert unreadable.value.problem is FixtureProblem.UNREADABLE
        with pytest.raises(FixtureError) as unloadable:
            session.load(ORDERS, Fixture(file=not_parquet))
        assert unloadable.value.problem is FixtureProblem.UNLOADABLE
        session.close()
    finally:
        other.close()


def test_a_node_runs_on_fixtures_as_a_build_runs_it(scratch: Scratch) -> None:
    session = scratch.session()
    session.load(ORDERS, Fixture(rows=({"id": 1, "amount": 2.5}, {"id": 2, "amount": -1.0})))
    session.begin()
    assert session.run_sql(OUT, "SELECT id, amount FROM orders WHERE amount > 0") == 1
    session.make_current(NodeId("clean"), OUT)
    session.commit()
    assert list(session.rows(OUT).rows) == [(1, 2.5)]
    assert list(session.rows(NodeId("clean")).rows) == [(1, 2.5)]  # read by the node's name
    assert session.columns(ORDERS) == {"id": "INTEGER", "amount": "DOUBLE"}
    session.clear()
    session.close()


def test_clear_forgets_everything_the_session_made(scratch: Scratch) -> None:
    first = scratch.session()
    first.load(ORDERS, Fixture(rows=({"id": 1},)))
    first.run_sql(OUT, "SELECT * FROM orders")
    first.make_current(NodeId("clean"), OUT)
    first.clear()
    first.close()
    second = scratch.session()
    for relation in (ORDERS, OUT, NodeId("clean")):
        with pytest.raises(EngineError):
            second.rows(relation)
    second.load(ORDERS, Fixture(rows=({"id": 2},)))  # the next case starts from nothing
    second.run_sql(OUT, "SELECT * FROM orders")
    assert list(second.rows(OUT).rows) == [(2,)]
    second.clear()
    second.close()


def test_its_sql_reaches_only_the_fixture_files(scratch: Scratch, tmp_path: Path) -> None:
    session = scratch.session()
    allowed = f"SELECT count(*) AS n FROM read_csv('{tmp_path / 'orders.csv'}')"
    session.run_sql(OUT, allowed)
    assert list(session.rows(OUT).rows) == [(2,)]
    with pytest.raises(EngineError, match="sandbox"):
        session.run_sql(OutputRef(NodeId("x"), "v"),
                        f"SELECT * FROM read_csv('{tmp_path / 'other.csv'}')")
    with pytest.raises(FixtureError):
        session.load(ORDERS, Fixture(file=tmp_path / "other.csv"))
    session.clear()
    session.close()


def test_closing_it_removes_its_scratch_files(tmp_path: Path) -> None:
    before = set(Path(tmp_path.parent).glob("*"))
    scratch = open_scratch(Access())
    session = scratch.session()
    session.load(ORDERS, Fixture(csv="id\n1\n"))  # written to a scratch file, then read
    session.close()
    where = scratch.tmp  # type: ignore[attr-defined]
    assert any(where.iterdir())
    scratch.close()
    assert not where.exists()
    assert set(Path(tmp_path.parent).glob("*")) == before


def test_a_missing_column_is_read_from_the_failures_message(scratch: Scratch) -> None:
    session = scratch.session()
    session.load(ORDERS, Fixture(rows=({"id": 1},)))
    failures = {}
    for sql in ("SELECT amount FROM orders", "SELECT orders.amount FROM orders",
                "SELECT id / 'x' FROM orders"):
        with pytest.raises(EngineError) as e:
            session.run_sql(OUT, sql)
        failures[sql] = session.missing_column(str(e.value))
    assert failures == {"SELECT amount FROM orders": MissingColumn("amount"),
                        "SELECT orders.amount FROM orders": MissingColumn("amount", "orders"),
                        "SELECT id / 'x' FROM orders": None}
    # a Python node's DataFrame (pandas) lacks it
    assert session.missing_column("KeyError: 'amount'") == MissingColumn("amount")
    session.clear()
    session.close()
