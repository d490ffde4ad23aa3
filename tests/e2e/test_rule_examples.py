"""Rules that say what broke (issue #15): `references` between datasets, and failure
messages that name the offending values, through the real CLI on real DuckDB.

The project: customers and orders (read nodes), a SQL node joining them whose contract is
that every order's customer exists, a check saying the same as a circuit breaker, and
payments whose validations name what broke them. `queries` counts the queries the rules
cost, by wrapping the real DuckDB session's measuring method.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from odibi.engines.duckdb_engine import DuckDBSession, relation_sql
from odibi.expr.measures import Form, Query
from tests.conftest import run_cli, write_files
from tests.e2e.test_rules import edit, outcomes, write

PROJECT = {
    "odibi.yaml": """
        project: refs
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        nodes:
          - name: customers
            read: {connection: raw, path: customers.csv}
          - name: orders
            read: {connection: raw, path: orders.csv}
          - name: order_facts
            sql: |
              SELECT o.order_id, o.customer_id, c.name
              FROM orders o LEFT JOIN customers c USING (customer_id)
            contracts:
              - references(orders.customer_id, customers.customer_id)
            write: {connection: out, path: order_facts.csv}
          - name: payments
            read: {connection: raw, path: payments.csv}
            validate:
              - unique(payment_id)
              - not_null(payment_id, order_id, amount)
              - all(amount > 0 and amount < 1000)
              - accepted_values(method, ['card', 'cash'])
        checks:
          - name: orders_have_customers
            assert: references(orders.customer_id, customers.customer_id)
            on_fail: halt
        """,
    "data/customers.csv": "customer_id,region,name\n1,n,Ann\n2,s,Bob\n",
    # an order without a customer (NULL key) is no orphan, as in dbt's relationships test
    "data/orders.csv": "order_id,customer_id,region\n10,1,n\n11,2,s\n12,,n\n",
    "data/payments.csv": "payment_id,order_id,amount,method\n1,10,5.0,card\n2,11,7.5,cash\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_files(tmp_path / "refs", PROJECT)


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple[str, ...]]]]:
    """The queries rules run during a build: ("aggregates", (table,)) for a dataset's
    aggregates, ("queries", (tables...)) for scalar queries (references, examples)."""
    seen: list[tuple[str, tuple[str, ...]]] = []
    measure = DuckDBSession.measure

    def counted_measure(self: DuckDBSession, query: Query, relations: Any) -> Any:
        if query.form is Form.AGGREGATE:
            seen.append(("aggregates", (relation_sql(relations[query.dataset]),)))
        else:
            read = (query.dataset,) + ((query.parent,) if query.parent is not None else ())
            seen.append(("queries", tuple(relation_sql(relations[d]) for d in read)))
        return measure(self, query, relations)

    monkeypatch.setattr(DuckDBSession, "measure", counted_measure)
    yield seen


def build(root: Path, *argv: str, code: int = 0) -> dict[str, Any]:
    r = run_cli("-C", str(root), "build", "--json", "-j", "2", *argv)
    assert r.code == code, r.text
    return json.loads(r.out)


def node_of(table: str) -> str:
    """`odibi_store."orders__3f2a..."` or `main."orders"` -> orders."""
    return table.split(".", 1)[1].strip('"').split("__")[0]


# -- references -------------------------------------------------------------------------------
def test_references_that_hold_pass_in_a_check_and_a_contract_at_one_query_each(
        root: Path, queries: list[tuple[str, tuple[str, ...]]]) -> None:
    report = build(root)
    got = outcomes(report)
    assert got["orders_have_customers"] == "passed"
    assert got["order_facts"] == "built"
    assert (root / "output" / "order_facts.csv").exists()
    # each references rule: one anti-join query over both datasets; the payments rules: one
    # query for their aggregates, one for unique's DISTINCT; nothing else (no examples)
    cost = sorted((kind, tuple(node_of(t) for t in tables)) for kind, tables in queries)
    assert cost == [("aggregates", ("payments",)), ("aggregates", ("payments",)),
                    ("queries", ("orders", "customers")), ("queries", ("orders", "customers"))]


def test_a_check_with_references_depends_on_both_datasets(root: Path) -> None:
    build(root)
    write(root / "data" / "customers.csv", "customer_id,region,name\n1,n,Ann\n2,s,Bob\n3,e,Cy\n")
    plan = {e["node"]: e for e in json.loads(run_cli("-C", str(root), "explain", "--json").out)
            ["nodes"]}
    assert plan["orders_have_customers"]["status"] == "rebuild"
    assert plan["orders_have_customers"]["reasons"][0]["summary"] == \
        "upstream rebuilt: customers"


def test_orphan_keys_fail_the_contract_and_the_check_naming_them(
        root: Path, queries: list[tuple[str, tuple[str, ...]]]) -> None:
    build(root)
    export = (root / "output" / "order_facts.csv").read_bytes()
    write(root / "data" / "orders.csv", "order_id,customer_id,region\n10,1,n\n11,107,s\n"
                                        "12,,n\n13,101,n\n14,102,s\n15,101,s\n")
    message = ("references(orders.customer_id, customers.customer_id) failed on orders, "
               "customers: rows with orphan keys = 4, e.g. [101, 102, 107]")
    # the contract fails the node before its SQL runs, and its export stays as it was
    queries.clear()
    report = build(root, "+order_facts", code=1)
    assert outcomes(report) == {"orders": "built", "order_facts": "failed"}
    assert report["nodes"]["order_facts"]["error"] == f"contract failed: {message}"
    assert (root / "output" / "order_facts.csv").read_bytes() == export
    # the count, then the orphan keys (only because it broke): both over the two datasets
    assert [(kind, tuple(node_of(t) for t in tables)) for kind, tables in queries] == \
        [("queries", ("orders", "customers"))] * 2
    # the check, a circuit breaker, halts the build
    report = build(root, code=1)
    assert report["nodes"]["orders_have_customers"]["error"] == message
    assert report["halted_by"] == "orders_have_customers"


def test_a_key_of_several_columns(root: Path) -> None:
    edit(root / "odibi.yaml", "assert: references(orders.customer_id, customers.customer_id)",
         "assert: references((orders.customer_id, orders.region), "
         "(customers.customer_id, customers.region))")
    report = build(root, "+orders_have_customers")
    assert outcomes(report)["orders_have_customers"] == "passed"
    write(root / "data" / "orders.csv", "order_id,customer_id,region\n10,1,n\n11,2,n\n"
                                        "12,,n\n13,2,\n14,1,x\n")
    report = build(root, "+orders_have_customers", code=1)
    # (2, 'n') and (1, 'x') have no customer; (NULL, 'n') and (2, NULL) are not checked
    assert report["nodes"]["orders_have_customers"]["error"] == (
        "references((orders.customer_id, orders.region), (customers.customer_id, "
        "customers.region)) failed on orders, customers: rows with orphan keys = 2, "
        "e.g. [(1, 'x'), (2, 'n')]")


def test_references_in_a_validation_reads_the_nodes_own_output(root: Path) -> None:
    """A self-reference (a tree's parent ids) is a validation: it reads only the node."""
    write(root / "data" / "categories.csv", "id,parent_id\n1,\n2,1\n3,1\n4,2\n")
    text = (root / "odibi.yaml").read_text().replace("        checks:", "")
    write(root / "odibi.yaml", text.replace("checks:\n", "  - name: categories\n"
                                            "    read: {connection: raw, path: categories.csv}\n"
                                            "    validate:\n"
                                            "      - references(parent_id, id)\n"
                                            "checks:\n"))
    assert outcomes(build(root, "categories"))["categories"] == "built"
    write(root / "data" / "categories.csv", "id,parent_id\n1,\n2,1\n3,9\n4,8\n5,9\n")
    report = build(root, "categories", code=1)
    assert report["nodes"]["categories"]["error"] == (
        "validation failed: references(parent_id, id) failed on categories: rows with orphan "
        "keys = 3, e.g. [8, 9]")


def test_a_misspelt_key_column_is_a_clear_failure_on_either_side(root: Path) -> None:
    edit(root / "odibi.yaml", "assert: references(orders.customer_id, customers.customer_id)",
         "assert: references(orders.customer_id, customers.customer)")
    report = build(root, "+orders_have_customers", code=1)
    assert report["nodes"]["orders_have_customers"]["error"] == (
        "references(orders.customer_id, customers.customer) could not be checked on orders, "
        "customers: no column 'customer' in customers (did you mean 'customer_id'?)")


# -- every predicate names its offending values -------------------------------------------------
def test_each_broken_predicate_names_its_offending_values_at_one_more_query(
        root: Path, queries: list[tuple[str, tuple[str, ...]]]) -> None:
    build(root)
    write(root / "data" / "payments.csv",
          "payment_id,order_id,amount,method\n1,10,5.0,card\n7,11,7.5,cash\n7,12,-1.0,card\n"
          "7,,2.0,cheque\n12,10,,card\n12,11,5000.0,cash\n,13,3.0,card\n")
    queries.clear()
    report = build(root, code=1)
    assert report["nodes"]["payments"]["error"] == "; ".join([
        "validation failed: unique(payment_id) failed on payments: duplicate rows = 3, "
        "e.g. 7 (x3), 12 (x2)",
        "not_null(payment_id, order_id, amount) failed on payments: rows with nulls = 3 "
        "(payment_id: 1 null, order_id: 1 null, amount: 1 null), e.g. {payment_id: 7, "
        "order_id: null}, {payment_id: 12, amount: null}, {order_id: 13, payment_id: null}",
        "all(amount > 0 and amount < 1000) failed on payments: rows where it is false = 2, "
        "e.g. {amount: -1}, {amount: 5000}",
        "accepted_values(method, ['card', 'cash']) failed on payments: rows with other values "
        "= 1, other values, e.g. = ['cheque']"])
    # its rules: the aggregates, the DISTINCT one, and one query for every example
    assert sorted(kind for kind, tables in queries if node_of(tables[0]) == "payments") == \
        ["aggregates", "aggregates", "queries"]
