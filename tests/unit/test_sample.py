"""Sampling built outputs for `odibi test --generate` (odibi.engines.sample) on a real DuckDB
warehouse: it follows the plan step by step, exact rows for each kind of step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from odibi.engines import open_engine, sample
from odibi.engines.base import Engine, EngineOptions
from odibi.engines.tools import JoinKey, SampleStep
from odibi.ids import NodeId, OutputRef

TABLES = {
    # customer 1 has four orders, customers 2 and 3 one each
    "orders": "SELECT * FROM (VALUES (1, 1, 10), (2, 1, 11), (3, 1, 12), (4, 1, 13), "
              "(5, 2, 20), (6, 3, 30)) AS v(order_id, customer_id, amount)",
    "customers": "SELECT * FROM (VALUES (3, 'Cy'), (1, 'Ann'), (2, 'Bo'), (9, 'Zed')) "
                 "AS v(id, name)",
    "lonely": "SELECT * FROM (VALUES (100, 'x'), (101, 'y')) AS v(id, label)",
    "dated": "SELECT DATE '2024-01-01' AS id, 1 AS n",
}
BY_CUSTOMER = JoinKey("customers", "orders", ("id",), ("customer_id",))


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Engine]:
    (tmp_path / ".odibi").mkdir()
    engine = open_engine(tmp_path, EngineOptions())
    session = engine.session()
    session.begin()
    for name, sql in TABLES.items():
        out = OutputRef(NodeId(name), "v1")
        session.run_sql(out, sql)
        session.make_current(NodeId(name), out)
    session.commit()
    session.close()
    yield engine
    engine.close()


def relations(*names: str) -> dict[str, NodeId | OutputRef]:
    return {n: NodeId(n) for n in names}


def test_a_first_step_takes_the_first_rows_by_all_columns(warehouse: Engine) -> None:
    found = sample(warehouse, relations("customers"), [SampleStep("customers", ())], 2)
    assert list(found) == ["customers"]
    assert list(found["customers"].columns) == ["id", "name"]
    assert list(found["customers"].types) == ["INTEGER", "VARCHAR"]
    assert list(found["customers"].rows) == [(1, "Ann"), (2, "Bo")]
    # a stored version reads the same as the node's current output
    stored = sample(warehouse, {"customers": OutputRef(NodeId("customers"), "v1")},
                    [SampleStep("customers", ())], 2)
    assert stored == found


def test_a_matched_step_takes_rows_that_join_each_sampled_key_once_first(
        warehouse: Engine) -> None:
    plan = [SampleStep("customers", ()), SampleStep("orders", (BY_CUSTOMER,))]
    found = sample(warehouse, relations("customers", "orders"), plan, 3)
    assert list(found["customers"].rows) == [(1, "Ann"), (2, "Bo"), (3, "Cy")]
    # one order of each sampled customer before a second of any (the first three orders
    # by all columns would be customer 1's)
    assert list(found["orders"].rows) == [(1, 1, 10), (5, 2, 20), (6, 3, 30)]
    more = sample(warehouse, relations("customers", "orders"), plan, 5)
    assert [r[1] for r in more["orders"].rows] == [1, 2, 3, 1, 1]


def test_a_chain_matches_each_input_to_the_sample_before_it(warehouse: Engine) -> None:
    plan = [SampleStep("orders", ()), SampleStep("customers", (BY_CUSTOMER,))]
    found = sample(warehouse, relations("orders", "customers"), plan, 2)
    assert list(found["orders"].rows) == [(1, 1, 10), (2, 1, 11)]  # both customer 1's
    assert list(found["customers"].rows) == [(1, "Ann")]  # only the customer that joins


def test_nothing_to_match_or_keys_that_cannot_be_compared_give_first_rows(
        warehouse: Engine) -> None:
    no_match = [SampleStep("customers", ()),
                SampleStep("lonely", (JoinKey("customers", "lonely", ("id",), ("id",)),))]
    found = sample(warehouse, relations("customers", "lonely"), no_match, 1)
    assert list(found["lonely"].rows) == [(100, "x")]
    incomparable = [SampleStep("customers", ()),
                    SampleStep("dated", (JoinKey("customers", "dated", ("id",), ("id",)),))]
    found = sample(warehouse, relations("customers", "dated"), incomparable, 1)
    assert [r[1] for r in found["dated"].rows] == [1]
