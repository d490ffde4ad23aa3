"""Join keys read from DuckDB's parse tree (odibi/testing/joins.py), for
`odibi test --generate`: exact keys for a table of SQL shapes, and the order inputs are
sampled in."""

from __future__ import annotations

import pytest

from odibi.sql import parse_tree
from odibi.testing.joins import JoinKey, SampleStep, join_shape, sampling_plan

COLUMNS = {
    "orders": ["order_id", "Customer_ID", "amount", "sku"],
    "customers": ["id", "name", "region_id"],
    "regions": ["region_id", "region_name"],
    "items": ["sku", "title"],
}


def shape(sql: str, *inputs: str):
    return join_shape(parse_tree(sql), {i: COLUMNS[i] for i in inputs})


def key(left: str, left_cols: tuple[str, ...], right: str, right_cols: tuple[str, ...]):
    return JoinKey(left, right, left_cols, right_cols)


ORDERS_CUSTOMERS = key("orders", ("Customer_ID",), "customers", ("id",))
CUSTOMERS_REGIONS = key("customers", ("region_id",), "regions", ("region_id",))

# sql -> the keys found (columns as the inputs spell them; the input named first on the left)
CASES = {
    "JOIN ON, aliases": (
        "SELECT * FROM orders o JOIN customers c ON o.customer_id = c.id",
        [ORDERS_CUSTOMERS]),
    "the other way round, reversed equality": (
        "SELECT * FROM customers c LEFT JOIN orders o ON c.id = o.customer_id",
        [key("customers", ("id",), "orders", ("Customer_ID",))]),
    "USING": (
        "SELECT * FROM customers JOIN regions USING (region_id)",
        [CUSTOMERS_REGIONS]),
    "NATURAL": (
        "SELECT * FROM customers NATURAL JOIN regions",
        [CUSTOMERS_REGIONS]),
    "WHERE, table names, main.": (
        "SELECT * FROM orders, main.customers WHERE orders.customer_id = main.customers.id "
        "AND amount > 3",
        [ORDERS_CUSTOMERS]),
    "unqualified names only one input has": (
        "SELECT * FROM orders JOIN customers ON customer_id = id",
        [ORDERS_CUSTOMERS]),
    "3-way: a chain": (
        "SELECT * FROM orders o JOIN customers c ON o.customer_id = c.id "
        "JOIN regions r ON r.region_id = c.region_id",
        [ORDERS_CUSTOMERS, CUSTOMERS_REGIONS]),
    "3-way: USING after a join": (
        "SELECT * FROM orders o LEFT JOIN customers c ON o.customer_id = c.id "
        "LEFT JOIN regions USING (region_id)",
        [ORDERS_CUSTOMERS, CUSTOMERS_REGIONS]),
    "a composite key": (
        "SELECT * FROM orders o JOIN customers c "
        "ON o.customer_id = c.id AND o.amount = c.region_id",
        [key("orders", ("Customer_ID", "amount"), "customers", ("id", "region_id"))]),
    "in a CTE's body": (
        "WITH j AS (SELECT o.order_id, c.name "
        "FROM orders o JOIN customers c ON o.customer_id = c.id) SELECT * FROM j",
        [ORDERS_CUSTOMERS]),
    "an equality under OR is no key": (
        "SELECT * FROM orders o JOIN customers c ON o.customer_id = c.id OR o.amount = 0",
        []),
    "an expression is no key": (
        "SELECT * FROM orders o JOIN customers c ON o.customer_id + 1 = c.id",
        []),
    "a cross join has none": (
        "SELECT * FROM orders CROSS JOIN customers",
        []),
    "an input read through a subquery": (
        "SELECT * FROM orders o JOIN (SELECT * FROM customers) c ON o.customer_id = c.id",
        []),
    "a subquery aliased with an input's name is not that input": (
        "SELECT * FROM orders o JOIN (SELECT * FROM regions) customers "
        "ON o.customer_id = customers.id",
        []),
    "a CTE shadowing an input is not that input": (
        "WITH customers AS (SELECT 1 AS id) SELECT * FROM orders o JOIN customers c "
        "ON o.customer_id = c.id",
        []),
    "an alias given to two tables means neither": (
        "SELECT * FROM orders x JOIN customers c ON x.customer_id = c.id "
        "UNION ALL SELECT * FROM regions x JOIN customers c ON x.region_id = c.region_id",
        []),
    "columns an input does not have": (
        "SELECT * FROM orders o JOIN customers c ON o.nope = c.id",
        []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_join_keys(case: str) -> None:
    sql, keys = CASES[case]
    inputs = [i for i in COLUMNS if i in sql]
    assert list(shape(sql, *inputs).keys) == keys


def test_inputs_are_ordered_as_the_statement_names_them() -> None:
    sql = "SELECT * FROM regions JOIN customers USING (region_id) JOIN orders ON id = customer_id"
    assert shape(sql, "customers", "orders", "regions").order == ("regions", "customers", "orders")


def test_sampling_follows_the_keys_breadth_first() -> None:
    sql = ("SELECT * FROM orders o JOIN customers c ON o.customer_id = c.id "
           "JOIN regions r ON r.region_id = c.region_id CROSS JOIN items")
    assert sampling_plan(shape(sql, "regions", "items", "customers", "orders")) == (
        SampleStep("orders", ()),
        SampleStep("customers", (ORDERS_CUSTOMERS,)),
        SampleStep("regions", (CUSTOMERS_REGIONS,)),  # c matches b's sample, not a's
        SampleStep("items", ()),  # no key reaches it: its first rows
    )


def test_an_input_joined_to_two_sampled_inputs_matches_both() -> None:
    sql = ("SELECT * FROM orders o JOIN items i ON o.sku = i.sku "
           "JOIN customers c ON o.customer_id = c.id AND c.name = i.title")
    plan = sampling_plan(shape(sql, "orders", "items", "customers"))
    assert plan[-1] == SampleStep("customers", (
        ORDERS_CUSTOMERS, key("items", ("title",), "customers", ("name",))))


def test_a_second_component_starts_afresh() -> None:
    sql = ("SELECT * FROM orders o JOIN customers c ON o.customer_id = c.id, "
           "items JOIN regions ON title = region_name")
    assert sampling_plan(shape(sql, "orders", "customers", "items", "regions")) == (
        SampleStep("orders", ()),
        SampleStep("customers", (ORDERS_CUSTOMERS,)),
        SampleStep("items", ()),
        SampleStep("regions", (key("items", ("title",), "regions", ("region_name",)),)),
    )
