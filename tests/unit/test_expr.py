"""The rule language (DESIGN.md §6): grammar (`grammar/expr.lark`, `odibi.expr.parse`) and
checker (`odibi.expr.check`), table-driven, then evaluation against real DuckDB tables.

- ACCEPTED: rule text -> its canonical text (`ast.show`), the datasets it reads, the
  measures it needs per dataset (one query each) and the datasets whose schema it needs;
  and print -> parse gives the same tree.
- REJECTED: rule text -> syntax error (ExprSyntaxError: 1-based column, friendly label) or
  meaning error (RuleError: the span it points at, the message, the hint).
- A fuzz test: any text either parses or raises ExprSyntaxError with a column inside the
  text (+1 for "at the end"), never anything else.
- EVALUATED: compiled plans measured on in-memory DuckDB tables built here; exact
  verdicts, measured values and failure messages.
- `odibi.rules.run_rules` on a DuckDB session of a warehouse file: one query per dataset,
  and a misspelt column is a clear failure naming it, with a did-you-mean.

The scopes mirror `odibi.rulesets`: a validation reads its node's own output (bare names
are its columns), a contract reads its node's inputs (bare names mean the only one), a
check reads any node and must name it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odibi.engines.duckdb_rules import aggregate, scalar_query
from odibi.errors import ExprSyntaxError
from odibi.expr import ast
from odibi.expr.check import REFERENCES_FORMS, RuleError, RulePlan, Scope, compile_rules
from odibi.expr.measures import Form, Measure, Query
from odibi.expr.verdict import Offending, broken, evaluate
from odibi.expr.parse import parse_rule

# -- scopes, as odibi.rulesets builds them -------------------------------------------------
SCOPES: dict[str, Scope] = {
    # validate: on node clean_orders
    "val": Scope({"clean_orders": "clean_orders"}, "clean_orders",
                 unknown="clean_orders (validations read the node's own output)",
                 unknown_hint="to compare datasets, write a check"),
    # contracts: on a node whose only input is raw_orders
    "one": Scope({"raw_orders": "raw_orders"}, "raw_orders",
                 unknown="an input of clean_orders"),
    # contracts: on node order_facts, which reads raw_orders and customers
    "two": Scope({"raw_orders": "raw_orders", "customers": "customers"}, None,
                 defaults_hint="order_facts reads 2 datasets: name the one you mean, "
                               "e.g. not_null(raw_orders.id)",
                 unknown="an input of order_facts"),
    # checks: in a project of raw_orders and clean_orders
    "chk": Scope({"raw_orders": "raw_orders", "clean_orders": "clean_orders"}, None,
                 defaults_hint="a check names the nodes it reads: row_count(raw_orders) "
                               "or raw_orders.row_count",
                 unknown="a node"),
}
CO, RO, CU = "clean_orders", "raw_orders", "customers"


def compile_one(scope: str, text: str) -> RulePlan:
    return compile_rules([(text, parse_rule(text))], SCOPES[scope])


def sql(m: Measure) -> str:
    """A measure as DuckDB SQL: an aggregate over `t`, or a scalar query."""
    return aggregate(m.what) if m.form is Form.AGGREGATE else scalar_query(m.what)


def shape(e: Any) -> Any:
    """A tree without its positions: print -> parse must give the same shape."""
    if isinstance(e, ast.Pos):
        return None
    if dataclasses.is_dataclass(e) and not isinstance(e, type):
        return (type(e).__name__,) + tuple(shape(getattr(e, f.name)) for f in dataclasses.fields(e)
                                           if f.name != "pos")
    if isinstance(e, tuple):
        return tuple(shape(x) for x in e)
    return e


# -- accepted ------------------------------------------------------------------------------
# (scope, rule, canonical text, datasets read, {dataset: measures in its one query},
#  datasets whose columns it needs)
ACCEPTED = [
    # measures
    ("val", "row_count > 0", "(row_count) > (0)", (CO,), {CO: 1}, ()),
    ("val", "row_count() >= 1", "(row_count()) >= (1)", (CO,), {CO: 1}, ()),
    ("val", "null_count(email) <= 0.01 * row_count",
     "(null_count(email)) <= ((0.01) * (row_count))", (CO,), {CO: 2}, ()),
    ("val", "distinct_count(customer_id) = row_count",
     "(distinct_count(customer_id)) == (row_count)", (CO,), {CO: 2}, ()),
    ("val", "min(amount) >= 0 and max(amount) < 10000",
     "((min(amount)) >= (0)) and ((max(amount)) < (10000))", (CO,), {CO: 2}, ()),
    ("val", "sum(amount) between 0 and 1e6", "(sum(amount)) between (0) and (1000000.0)",
     (CO,), {CO: 1}, ()),
    ("val", "avg(amount) > .5", "(avg(amount)) > (0.5)", (CO,), {CO: 1}, ()),
    # the same measure twice is measured once
    ("val", "row_count > 0 and row_count < 100 and ROW_COUNT != 7",
     "((row_count) > (0)) and ((row_count) < (100)) and ((ROW_COUNT) != (7))", (CO,),
     {CO: 1}, ()),
    # predicates
    ("val", "not_null(order_id, customer_id)", "not_null(order_id, customer_id)", (CO,),
     {CO: 1}, ()),
    ("val", "unique(order_id)", "unique(order_id)", (CO,), {CO: 1}, ()),
    ("val", "unique(order_id, customer_id)", "unique(order_id, customer_id)", (CO,), {CO: 1}, ()),
    # accepted_values: a count of other values (a few of them for the message: a follow-up)
    ("val", "accepted_values(status, ['paid', 'open', 'it''s'])",
     "accepted_values(status, ['paid', 'open', 'it''s'])", (CO,), {CO: 1}, ()),
    ("val", "accepted_values(code, [1, -2, null, true])",
     "accepted_values(code, [1, -(2), null, true])", (CO,), {CO: 1}, ()),
    ("val", "has_columns(order_id, amount)", "has_columns(order_id, amount)", (CO,), {}, (CO,)),
    ("val", "column_type(amount) == 'BIGINT'", "(column_type(amount)) == ('BIGINT')", (CO,), {},
     (CO,)),
    ("val", "column_type(amount) in ['BIGINT', 'INTEGER']",
     "(column_type(amount)) in ['BIGINT', 'INTEGER']", (CO,), {}, (CO,)),
    ("val", "all(amount > 0 and amount < 10000)", "all(((amount) > (0)) and ((amount) < (10000)))",
     (CO,), {CO: 1}, ()),
    ("val", "all(status in ['paid', 'open'])", "all((status) in ['paid', 'open'])", (CO,),
     {CO: 1}, ()),
    ("val", "all(status not in ['void'])", "all((status) not in ['void'])", (CO,), {CO: 1}, ()),
    ("val", "all(email is not null or phone is not null)",
     "all(((email) is not null) or ((phone) is not null))", (CO,), {CO: 1}, ()),
    ("val", "all(abs(amount - paid) <= 0.01)", "all((abs((amount) - (paid))) <= (0.01))", (CO,),
     {CO: 1}, ()),
    ("val", "all(amount between 0 and 100)", "all((amount) between (0) and (100))", (CO,),
     {CO: 1}, ()),
    ("val", "all(not (amount < 0))", "all(not ((amount) < (0)))", (CO,), {CO: 1}, ()),
    ("val", "all(amount % 2 = 0)", "all(((amount) % (2)) == (0))", (CO,), {CO: 1}, ()),
    ("val", "all(-amount < 0)", "all((-(amount)) < (0))", (CO,), {CO: 1}, ()),
    ("val", "all(flag = true)", "all((flag) == (true))", (CO,), {CO: 1}, ()),
    # comparisons: == = != <> < <= > >=
    ("val", "row_count == 3", "(row_count) == (3)", (CO,), {CO: 1}, ()),
    ("val", "row_count = 3", "(row_count) == (3)", (CO,), {CO: 1}, ()),
    ("val", "row_count != 0", "(row_count) != (0)", (CO,), {CO: 1}, ()),
    ("val", "row_count <> 0", "(row_count) != (0)", (CO,), {CO: 1}, ()),
    ("val", "row_count <= 10", "(row_count) <= (10)", (CO,), {CO: 1}, ()),
    ("val", "max(amount) is not null", "(max(amount)) is not null", (CO,), {CO: 1}, ()),
    ("val", "min(amount) is null", "(min(amount)) is null", (CO,), {CO: 1}, ()),
    ("val", "row_count in [1, 2, 3]", "(row_count) in [1, 2, 3]", (CO,), {CO: 1}, ()),
    ("val", "row_count not in [0]", "(row_count) not in [0]", (CO,), {CO: 1}, ()),
    # and / or / not, precedence, keyword case
    ("val", "not row_count = 0", "not ((row_count) == (0))", (CO,), {CO: 1}, ()),
    ("val", "not_null(order_id) or row_count = 0", "(not_null(order_id)) or ((row_count) == (0))",
     (CO,), {CO: 2}, ()),
    ("val", "unique(order_id) and not_null(order_id) and has_columns(order_id)",
     "(unique(order_id)) and (not_null(order_id)) and (has_columns(order_id))", (CO,), {CO: 2},
     (CO,)),
    ("val", "row_count > 0 AND Row_Count < 10 Or FALSE",
     "(((row_count) > (0)) and ((Row_Count) < (10))) or (false)", (CO,), {CO: 1}, ()),
    ("val", "NOT Unique(ID) OR Row_Count Between 1 AND 2 and ALL(x Is Not Null)",
     "(not (unique(ID))) or (((Row_Count) between (1) and (2)) and (all((x) is not null)))",
     (CO,), {CO: 3}, ()),
    ("val", "true", "true", (), {}, ()),
    # arithmetic and its precedence
    ("val", "-row_count < 0", "(-(row_count)) < (0)", (CO,), {CO: 1}, ()),
    ("val", "(row_count + 1) * 2 / 3 - 1 % 2 >= 0",
     "(((((row_count) + (1)) * (2)) / (3)) - ((1) % (2))) >= (0)", (CO,), {CO: 1}, ()),
    ("val", "abs(min(amount)) < 2 * abs(max(amount))",
     "(abs(min(amount))) < ((2) * (abs(max(amount))))", (CO,), {CO: 2}, ()),
    # quoted names
    ("val", 'unique("order id")', 'unique("order id")', (CO,), {CO: 1}, ()),
    ("val", 'not_null("and", "x""y")', 'not_null("and", "x""y")', (CO,), {CO: 1}, ()),
    # qualified by dataset
    ("val", "clean_orders.row_count > 0", "(clean_orders.row_count) > (0)", (CO,), {CO: 1}, ()),
    ("val", "row_count(clean_orders) > 0", "(row_count(clean_orders)) > (0)", (CO,), {CO: 1}, ()),
    ("val", "sum(clean_orders.amount) > 0", "(sum(clean_orders.amount)) > (0)", (CO,), {CO: 1}, ()),
    ("chk", "abs(row_count(raw_orders) - row_count(clean_orders)) <= 0.1 * row_count(raw_orders)",
     "(abs((row_count(raw_orders)) - (row_count(clean_orders)))) <= "
     "((0.1) * (row_count(raw_orders)))", (RO, CO), {RO: 1, CO: 1}, ()),
    ("chk", "raw_orders.row_count >= clean_orders.row_count",
     "(raw_orders.row_count) >= (clean_orders.row_count)", (RO, CO), {RO: 1, CO: 1}, ()),
    ("chk", "sum(clean_orders.amount) between 0 and sum(raw_orders.amount)",
     "(sum(clean_orders.amount)) between (0) and (sum(raw_orders.amount))", (CO, RO),
     {CO: 1, RO: 1}, ()),
    ("chk", "row_count(raw_orders) > 0 and null_count(raw_orders.id) = 0 "
            "and max(clean_orders.amount) < 1000",
     "((row_count(raw_orders)) > (0)) and ((null_count(raw_orders.id)) == (0)) and "
     "((max(clean_orders.amount)) < (1000))", (RO, CO), {RO: 2, CO: 1}, ()),
    ("chk", "unique(clean_orders.order_id)", "unique(clean_orders.order_id)", (CO,), {CO: 1}, ()),
    ("chk", "all(clean_orders.amount > 0)", "all((clean_orders.amount) > (0))", (CO,), {CO: 1}, ()),
    ("chk", "RAW_ORDERS.ROW_COUNT > 0", "(RAW_ORDERS.ROW_COUNT) > (0)", (RO,), {RO: 1}, ()),
    ("chk", "has_columns(raw_orders.id, raw_orders.amount) and "
            "column_type(clean_orders.amount) = 'DOUBLE'",
     "(has_columns(raw_orders.id, raw_orders.amount)) and "
     "((column_type(clean_orders.amount)) == ('DOUBLE'))", (RO, CO), {}, (RO, CO)),
    ("two", "not_null(raw_orders.order_id) and unique(customers.customer_id)",
     "(not_null(raw_orders.order_id)) and (unique(customers.customer_id))", (RO, CU),
     {RO: 1, CU: 1}, ()),
    ("two", "row_count(customers) <= customers.row_count",
     "(row_count(customers)) <= (customers.row_count)", (CU,), {CU: 1}, ()),
    ("one", "not_null(order_id)", "not_null(order_id)", (RO,), {RO: 1}, ()),
    ("one", "row_count > 0", "(row_count) > (0)", (RO,), {RO: 1}, ()),
    ("one", "not_null(raw_orders.order_id)", "not_null(raw_orders.order_id)", (RO,), {RO: 1}, ()),
    # references(child key, parent key): reads both (a check depends on both), measured in a
    # query of its own (test_references_is_a_query_of_its_own); a key of several columns is
    # a tuple; a bare column means the default dataset, on either side
    ("chk", "references(clean_orders.customer_id, raw_orders.customer_id)",
     "references(clean_orders.customer_id, raw_orders.customer_id)", (CO, RO), {CO: 1}, ()),
    ("two", "references(raw_orders.customer_id, customers.customer_id)",
     "references(raw_orders.customer_id, customers.customer_id)", (RO, CU), {RO: 1}, ()),
    ("two", "REFERENCES((raw_orders.customer_id, raw_orders.region),(customers.id,customers.region))",
     "references((raw_orders.customer_id, raw_orders.region), (customers.id, customers.region))",
     (RO, CU), {RO: 1}, ()),
    ("one", "references(customer_id, raw_orders.customer_id)",
     "references(customer_id, raw_orders.customer_id)", (RO,), {RO: 1}, ()),
    ("val", "references(parent_id, order_id)", "references(parent_id, order_id)", (CO,),
     {CO: 1}, ()),
    ("val", "references((parent_id, region), (clean_orders.order_id, clean_orders.region))",
     "references((parent_id, region), (clean_orders.order_id, clean_orders.region))", (CO,),
     {CO: 1}, ()),
    ("chk", "references(clean_orders.id, raw_orders.id) and row_count(clean_orders) > 0",
     "(references(clean_orders.id, raw_orders.id)) and ((row_count(clean_orders)) > (0))",
     (CO, RO), {CO: 2}, ()),
    ("chk", "not references(raw_orders.id, clean_orders.id)",
     "not (references(raw_orders.id, clean_orders.id))", (RO, CO), {RO: 1}, ()),
]


@pytest.mark.parametrize(("scope", "text", "show", "datasets", "queries", "schema"), ACCEPTED,
                         ids=[f"{r[0]}: {r[1]}" for r in ACCEPTED])
def test_accepted(scope: str, text: str, show: str, datasets: tuple[str, ...],
                  queries: dict[str, int], schema: tuple[str, ...]) -> None:
    tree = parse_rule(text)
    assert ast.show(tree) == show
    plan = compile_one(scope, text)
    assert plan.datasets == datasets
    assert {ds: len(ms) for ds, ms in plan.queries().items()} == queries
    assert plan.schema_of == schema
    assert [r.text for r in plan.rules] == [text]
    # print -> parse gives the same tree, and the canonical text is a fixed point
    again = parse_rule(show)
    assert shape(again) == shape(tree)
    assert ast.show(again) == show
    # the canonical text means the same: same datasets and measures
    replan = compile_one(scope, show)
    assert [(m.dataset, sql(m)) for m in replan.measures] == \
        [(m.dataset, sql(m)) for m in plan.measures]


def test_a_rule_set_is_one_query_per_dataset() -> None:
    """Measures are shared across the rules of a set: the shop's staging contracts and
    validations need one query per dataset, whatever the number of rules."""
    rules = ["row_count > 0", "not_null(order_id)", "unique(order_id)", "all(amount > 0)",
             "null_count(order_id) = 0", "row_count <= 1000000", "max(amount) < 10000",
             "sum(amount) > 0 and avg(amount) > 1"]
    plan = compile_rules([(r, parse_rule(r)) for r in rules], SCOPES["val"])
    assert list(plan.queries()) == [CO]
    # row_count is measured once; null_count(order_id) is not_null(order_id)'s count
    assert len(plan.queries()[CO]) == 7
    # and the examples of not_null, unique and all are follow-ups, measured only on failure
    assert len([m for m in plan.measures if m.only_if is not None]) == 3
    assert [r.datasets for r in plan.rules] == [(CO,)] * len(rules)


# -- rejected ------------------------------------------------------------------------------
S, M = "syntax", "meaning"
# (scope, rule, kind, 1-based column, the text it underlines (meaning errors), message, hint)
REJECTED = [
    # syntax: the friendly labels
    ("val", "row_count >", S, 11, None, "a comparison needs a value on its right", None),
    ("val", "sum(x) =< 1", S, 9, None, "a comparison needs a value on its right", None),
    ("val", "row_count > 0)", S, 14, None, "unbalanced parentheses", None),
    ("val", "(row_count > 0", S, 14, None, "unbalanced parentheses", None),
    ("val", "abs(min(x) > 0", S, 14, None, "unbalanced parentheses", None),
    ("val", "row_count 0", S, 11, None, "two values with no operator between them", None),
    ("val", "1a > 0", S, 2, None, "two values with no operator between them", None),
    ("val", "> 0", S, 1, None, "an operator needs a value on each side", None),
    ("val", "row_count > 0 and", S, 15, None, "an operator needs a value on each side", None),
    ("val", "x in [1 2]", S, 9, None,
     "a list needs commas between its values and a closing ']'", None),
    ("val", "x in [1,", S, 8, None,
     "a list needs commas between its values and a closing ']'", None),
    ("val", 'x == "abc', S, 6, None,
     "write strings in single quotes ('paid'); double quotes are for names", None),
    ("val", "a && b", S, 3, None, "use 'and' / 'or', not '&&' / '||'", None),
    ("val", "a || b", S, 3, None, "use 'and' / 'or', not '&&' / '||'", None),
    ("val", "row_count > 0 # comment", S, 15, None, "unexpected character '#'", None),
    ("val", "row_count > $min", S, 13, None, "unexpected character '$'", None),
    ("val", "row_count ≥ 0", S, 11, None, "unexpected character '≥'", None),
    ("val", "row_count > 0;", S, 14, None, "unexpected character ';'", None),
    ("val", "a < b < c", S, 7, None, "unexpected '<'", None),
    ("val", "a.b.c > 1", S, 4, None, "unexpected '.'", None),
    ("val", "f(a,)", S, 5, None, "unexpected ')'", None),
    ("val", "", S, 1, None, "empty rule", None),
    ("val", "   ", S, 1, None, "empty rule", None),
    # the same slip gets the same label after an `and`
    ("val", "row_count > 0 and row_count >", S, 29, None,
     "a comparison needs a value on its right", None),
    # in a rule of several lines, the column counts from the rule's start
    ("val", "row_count > 0\nand a && b", S, 21, None, "use 'and' / 'or', not '&&' / '||'",
     None),
    # meaning: unknown functions and datasets, with did-you-mean
    ("val", "roww_count(clean_orders) > 0", M, 1, "roww_count(clean_orders)",
     "unknown function 'roww_count'", "did you mean 'row_count'?"),
    ("val", "nul_count(email) = 0", M, 1, "nul_count(email)", "unknown function 'nul_count'",
     "did you mean 'null_count'?"),
    ("val", "count(email) > 0", M, 1, "count(email)", "unknown function 'count'",
     "did you mean 'row_count'?"),
    ("val", "foo(x) > 0", M, 1, "foo(x)", "unknown function 'foo'",
     "functions: row_count, null_count, distinct_count, min, max, sum, avg, not_null, unique, "
     "accepted_values, has_columns, all, references, column_type, abs"),
    ("val", "roww_count > 0", M, 1, "roww_count",
     "'roww_count': a column is only meaningful inside a measure or all(...)",
     "did you mean 'row_count'?"),
    ("val", "row_count(raw_orderz) > 0", M, 11, "raw_orderz",
     "'raw_orderz' is not clean_orders (validations read the node's own output)",
     "did you mean 'clean_orders'?"),
    ("val", "sum(raw_orders.amount) > 0", M, 5, "raw_orders.amount",
     "'raw_orders' is not clean_orders (validations read the node's own output)",
     "did you mean 'clean_orders'?"),
    ("chk", "row_count(clean_ordrs) > 0", M, 11, "clean_ordrs", "'clean_ordrs' is not a node",
     "did you mean 'clean_orders'?"),
    ("chk", "shipments.row_count > 0", M, 1, "shipments.row_count", "'shipments' is not a node",
     "it can read: clean_orders, raw_orders"),
    ("two", "row_count(orders) > 0", M, 11, "orders", "'orders' is not an input of order_facts",
     "did you mean 'raw_orders'?"),
    ("one", "row_count(clean_orders) > 0", M, 11, "clean_orders",
     "'clean_orders' is not an input of clean_orders", "did you mean 'raw_orders'?"),
    # meaning: a name that needs a dataset
    ("chk", "row_count > 0", M, 1, "row_count", "row_count needs a dataset here",
     "a check names the nodes it reads: row_count(raw_orders) or raw_orders.row_count"),
    ("chk", "sum(amount) > 0", M, 5, "amount", "column 'amount' needs a dataset here",
     "a check names the nodes it reads: row_count(raw_orders) or raw_orders.row_count"),
    ("two", "not_null(order_id)", M, 10, "order_id", "column 'order_id' needs a dataset here",
     "order_facts reads 2 datasets: name the one you mean, e.g. not_null(raw_orders.id)"),
    ("val", "clean_orders > 0", M, 1, "clean_orders",
     "'clean_orders' is a dataset; measure it: row_count(clean_orders)", None),
    ("val", "amount > 0", M, 1, "amount",
     "'amount': a column is only meaningful inside a measure or all(...)",
     "e.g. all(amount > 0) or max(amount) < 100"),
    # the hint's example is a rule that parses: a quoted name stays quoted
    ("val", '"order id" > 0', M, 1, '"order id"',
     "'order id': a column is only meaningful inside a measure or all(...)",
     'e.g. all("order id" > 0) or max("order id") < 100'),
    # meaning: types
    ("val", "not_null(id) > 3", M, 1, "not_null(id) > 3", "cannot compare a condition with a number",
     None),
    ("val", "row_count > 'a'", M, 1, "row_count > 'a'", "cannot compare a number with a string",
     None),
    ("val", "row_count + 1 > (row_count > 0)", M, 1, "row_count + 1 > (row_count > 0)",
     "cannot compare a number with a condition", None),
    ("val", "column_type(amount) > 3", M, 1, "column_type(amount) > 3",
     "cannot compare a string with a number", None),
    ("val", "row_count and true", M, 1, "row_count", "'and' needs a condition, got a number", None),
    ("val", "not row_count", M, 5, "row_count", "'not' needs a condition, got a number", None),
    ("val", "-unique(id) < 0", M, 2, "unique(id)", "'-' needs a number, got a condition", None),
    ("val", "abs(unique(id)) > 0", M, 5, "unique(id)", "abs() needs a number, got a condition",
     None),
    ("val", "row_count between 'a' and 2", M, 19, "'a'", "'between' needs a number, got a string",
     None),
    ("val", "sum(amount)", M, 1, "sum(amount)", "a rule must be a condition, got a number",
     "compare it: e.g. row_count > 0"),
    ("val", "'a'", M, 1, "'a'", "a rule must be a condition, got a string",
     "compare it: e.g. row_count > 0"),
    # meaning: arguments
    ("val", "[1, 2]", M, 1, "[1, 2]", "a list is only an argument of accepted_values or 'in'", None),
    ("val", "accepted_values(status, 'paid')", M, 1, "accepted_values(status, 'paid')",
     "accepted_values(column, [values...])", None),
    ("val", "accepted_values(status, [paid])", M, 26, "paid",
     "a list holds plain values: numbers, 'strings', true, false, null", None),
    ("val", "null_count(a, b) = 0", M, 1, "null_count(a, b)", "null_count() takes one column", None),
    ("val", "unique()", M, 1, "unique()", "unique() needs at least one column", None),
    ("val", "unique(1)", M, 8, "1", "unique takes column names", None),
    ("val", "row_count(1) > 0", M, 11, "1", "row_count() takes a dataset name", None),
    ("val", "row_count(a, b) > 0", M, 1, "row_count(a, b)", "row_count() takes at most a dataset",
     None),
    ("val", "abs(1, 2) > 0", M, 1, "abs(1, 2)", "abs() takes one value", None),
    ("val", "column_type(a, b) == 'x'", M, 1, "column_type(a, b)",
     "column_type() takes one column", None),
    ("val", "all(1 > 0)", M, 5, "1 > 0", "all(...) needs a condition on columns", None),
    ("val", "all(sum(amount) > 0)", M, 5, "sum(amount)",
     "sum() is a measure of a whole dataset; inside all(...) only row values, operators and "
     "abs() make sense", None),
    ("chk", "unique(raw_orders.id, clean_orders.id)", M, 1,
     "unique(raw_orders.id, clean_orders.id)",
     "unique() takes columns of one dataset, got ['clean_orders', 'raw_orders']", None),
    ("chk", "all(raw_orders.id > 0 and clean_orders.id > 0)", M, 5,
     "raw_orders.id > 0 and clean_orders.id > 0",
     "all(...) reads one dataset at a time, got ['clean_orders', 'raw_orders']", None),
    # references: two keys of as many columns, each of one dataset the rule may read
    ("chk", "references(clean_orders.id)", M, 1, "references(clean_orders.id)",
     "references() takes two keys, got 1", REFERENCES_FORMS),
    ("chk", "references(clean_orders.a, clean_orders.b, raw_orders.a)", M, 1,
     "references(clean_orders.a, clean_orders.b, raw_orders.a)",
     "references() takes two keys, got 3", REFERENCES_FORMS),
    ("chk", "references((clean_orders.a, clean_orders.b), raw_orders.a)", M, 1,
     "references((clean_orders.a, clean_orders.b), raw_orders.a)",
     "references(): a key of 2 column(s) cannot refer to a key of 1", REFERENCES_FORMS),
    ("chk", "references(clean_orders.id, shipments.id)", M, 29, "shipments.id",
     "'shipments' is not a node", "it can read: clean_orders, raw_orders"),
    ("chk", "references(clean_orders.id, raw_ordrs.id)", M, 29, "raw_ordrs.id",
     "'raw_ordrs' is not a node", "did you mean 'raw_orders'?"),
    ("chk", "references(id, raw_orders.id)", M, 12, "id", "column 'id' needs a dataset here",
     "a check names the nodes it reads: row_count(raw_orders) or raw_orders.row_count"),
    ("chk", "references(clean_orders, raw_orders)", M, 12, "clean_orders",
     "'clean_orders' is a dataset; references() takes its key columns: clean_orders.column",
     REFERENCES_FORMS),
    ("chk", "references([clean_orders.a, clean_orders.b], (raw_orders.a, raw_orders.b))", M, 12,
     "[clean_orders.a, clean_orders.b]", "write a key of several columns in parentheses",
     REFERENCES_FORMS),
    ("chk", "references((clean_orders.a, raw_orders.b), (raw_orders.a, raw_orders.b))", M, 12,
     "(clean_orders.a, raw_orders.b)",
     "references() takes columns of one dataset, got ['clean_orders', 'raw_orders']", None),
    ("chk", "references(clean_orders.id, 7)", M, 29, "7", "references takes column names", None),
    ("two", "references(customer_id, customers.id)", M, 12, "customer_id",
     "column 'customer_id' needs a dataset here",
     "order_facts reads 2 datasets: name the one you mean, e.g. not_null(raw_orders.id)"),
    # a validation reads only its node's output: references to another dataset is a check
    ("val", "references(customer_id, customers.customer_id)", M, 25, "customers.customer_id",
     "'customers' is not clean_orders (validations read the node's own output)",
     "to compare datasets, write a check; there it may name both: "
     "references(clean_orders.customer_id, customers.customer_id)"),
    ("val", "references((a, b), (customers.a, customers.b))", M, 21, "customers.a",
     "'customers' is not clean_orders (validations read the node's own output)",
     "to compare datasets, write a check; there it may name both: "
     "references((clean_orders.a, clean_orders.b), (customers.a, customers.b))"),
    ("val", "references(customers.customer_id, customer_id)", M, 12, "customers.customer_id",
     "'customers' is not clean_orders (validations read the node's own output)",
     "to compare datasets, write a check; there it may name both: "
     "references(customers.customer_id, clean_orders.customer_id)"),
    # tuples are keys of references only
    ("val", "(a, b) = 1", M, 1, "(a, b)", "a tuple of columns is only an argument of references()",
     REFERENCES_FORMS),
    ("val", "all((a, b) = 1)", M, 5, "(a, b)",
     "a tuple of columns is only an argument of references()", None),
    ("val", "references(a, b) > 1", M, 1, "references(a, b) > 1",
     "cannot compare a condition with a number", None),
    # syntax: tuples and SQL's `in (...)`
    ("val", "references((a, b), (c, d)", S, 25, None, "unbalanced parentheses", None),
    ("val", "references((a,), b)", S, 15, None,
     "a key of several columns needs a column after each comma: (orders.a, orders.b)", None),
    ("val", "references(orders.(a, b), c.a)", S, 19, None, "unexpected '('", None),
    ("val", "status in ('paid', 'open')", S, 11, None,
     "'in' takes a list in square brackets: x in [1, 2]", None),
]


@pytest.mark.parametrize(("scope", "text", "kind", "col", "under", "message", "hint"), REJECTED,
                         ids=[f"{r[0]}: {r[1]!r}" for r in REJECTED])
def test_rejected(scope: str, text: str, kind: str, col: int, under: str | None, message: str,
                  hint: str | None) -> None:
    if kind == S:
        with pytest.raises(ExprSyntaxError) as info:
            parse_rule(text)
        assert (info.value.col, info.value.message) == (col, message)
        return
    tree = parse_rule(text)  # a meaning error parses
    with pytest.raises(RuleError) as caught:
        compile_rules([(text, tree)], SCOPES[scope])
    e = caught.value
    assert (e.pos.start + 1, text[e.pos.start:e.pos.end]) == (col, under)
    assert (e.message, e.hint) == (message, hint)


def test_a_rule_error_names_which_rule_of_a_set() -> None:
    rules = ["row_count > 0", "unique(id)", "nul_count(email) = 0", "roww_count(x) > 0"]
    with pytest.raises(RuleError) as caught:
        compile_rules([(r, parse_rule(r)) for r in rules], SCOPES["val"])
    assert caught.value.index == 2  # type: ignore[attr-defined]
    assert caught.value.message == "unknown function 'nul_count'"


# -- fuzz ------------------------------------------------------------------------------------
TOKENS = ["row_count", "null_count(", "unique(", "all(", "accepted_values(", "abs(", "x", "ds.x",
          '"q q"', "'s'", "'", '"', "1", "2.5", ".5", "1e3", "(", ")", "[", "]", ",", ".",
          "and", "or", "not", "between", "is", "in", "null", "true", "false", "==", "=", "!=",
          "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&&", "||", "#", "$", "\n", "\t",
          " ", "é", "≥", "\\", "`", ";"]
rule_texts = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(TOKENS), max_size=14).map(" ".join),
    st.lists(st.sampled_from(TOKENS), max_size=14).map("".join),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_texts)
def test_any_text_parses_or_is_a_located_syntax_error(text: str) -> None:
    try:
        tree = parse_rule(text)
    except ExprSyntaxError as e:
        assert 1 <= e.col <= len(text) + 1, (text, e.col)
        assert e.message
        return
    # what parses prints back to the same tree (numbers too big for a float: below)
    if all(math.isfinite(n) for n in numbers(tree)):
        assert shape(parse_rule(ast.show(tree))) == shape(tree)


def numbers(e: Any) -> list[float]:
    if isinstance(e, ast.Number):
        return [e.value]
    if dataclasses.is_dataclass(e) and not isinstance(e, type):
        return [n for f in dataclasses.fields(e) for n in numbers(getattr(e, f.name))]
    if isinstance(e, tuple):
        return [n for x in e for n in numbers(x)]
    return []


def test_a_number_too_big_for_a_float_prints_back_to_itself() -> None:
    """`1e400` is read as a float infinity, which must not print as `inf` (a name)."""
    tree = parse_rule("row_count < 1e400")
    assert shape(parse_rule(ast.show(tree))) == shape(tree), ast.show(tree)


# -- evaluation on real tables ---------------------------------------------------------------
ORDERS = """
    CREATE TABLE orders (id INTEGER, customer_id INTEGER, amount DOUBLE, status VARCHAR);
    INSERT INTO orders VALUES (1, 7, 10.5, 'paid'), (2, 7, -3.0, 'open'),
                              (2, NULL, 20.0, 'void'), (4, 8, NULL, 'paid');
    CREATE TABLE raw_orders AS SELECT * FROM orders WHERE false;
    CREATE TABLE customers (customer_id INTEGER, region VARCHAR);
    INSERT INTO customers VALUES (7, 'north'), (NULL, 'south');
"""
EVAL_SCOPE = Scope({"orders": "orders", "raw_orders": "raw_orders", "customers": "customers"},
                   "orders")
EMPTY_SCOPE = Scope({"raw_orders": "raw_orders"}, "raw_orders")

# (the dataset bare names mean, rule, verdict, measured values, message when it fails)
EVALUATED = [
    ("raw_orders", "row_count > 0", False, (("row_count", 0),),
     "row_count > 0 failed on raw_orders: row_count = 0"),
    ("orders", "row_count > 0", True, (("row_count", 4),), None),
    ("orders", "row_count(raw_orders) > 0", False, (("row_count(raw_orders)", 0),),
     "row_count(raw_orders) > 0 failed on raw_orders: row_count(raw_orders) = 0"),
    ("orders", "raw_orders.row_count >= 1", False, (("raw_orders.row_count", 0),),
     "raw_orders.row_count >= 1 failed on raw_orders: raw_orders.row_count = 0"),
    # a broken predicate names what broke it: the most repeated keys with their counts,
    # which columns hold nulls and the first rows holding them (their first other column),
    # the first rows (of the columns read) where a condition is false
    ("orders", "unique(id)", False, (("duplicate rows", Offending(1, ", e.g. 2 (x2)")),),
     "unique(id) failed on orders: duplicate rows = 1, e.g. 2 (x2)"),
    ("orders", "unique(id, customer_id)", True, (("duplicate rows", 0),), None),
    ("orders", "unique(customer_id)", False,
     (("duplicate rows", Offending(1, ", e.g. 7 (x2)")),),
     "unique(customer_id) failed on orders: duplicate rows = 1, e.g. 7 (x2)"),
    ("orders", "not_null(customer_id, amount)", False,
     (("rows with nulls", Offending(2, " (customer_id: 1 null, amount: 1 null), e.g. "
                                       "{id: 2, customer_id: null}, {id: 4, amount: null}")),),
     "not_null(customer_id, amount) failed on orders: rows with nulls = 2 (customer_id: 1 "
     "null, amount: 1 null), e.g. {id: 2, customer_id: null}, {id: 4, amount: null}"),
    ("orders", "not_null(amount)", False,
     (("rows with nulls", Offending(1, ", e.g. {id: 4, amount: null}")),),
     "not_null(amount) failed on orders: rows with nulls = 1, e.g. {id: 4, amount: null}"),
    ("orders", "not_null(id, status)", True, (("rows with nulls", 0),), None),
    ("orders", "accepted_values(status, ['paid', 'open'])", False,
     (("rows with other values", 1), ("other values, e.g.", ["void"])),
     "accepted_values(status, ['paid', 'open']) failed on orders: rows with other values = 1, "
     "other values, e.g. = ['void']"),
    ("orders", "accepted_values(status, ['paid', 'open', 'void'])", True,
     (("rows with other values", 0),), None),
    ("orders", "accepted_values(customer_id, [7, 8])", True, (("rows with other values", 0),),
     None),
    ("orders", "all(amount > 0)", False,
     (("rows where it is false", Offending(1, ", e.g. {amount: -3}")),),
     "all(amount > 0) failed on orders: rows where it is false = 1, e.g. {amount: -3}"),
    ("orders", "all(abs(amount) < 15)", False,
     (("rows where it is false", Offending(1, ", e.g. {amount: 20}")),),
     "all(abs(amount) < 15) failed on orders: rows where it is false = 1, e.g. {amount: 20}"),
    ("orders", "all(id < 2 or status = 'open')", False,
     (("rows where it is false", Offending(2, ", e.g. {id: 2, status: 'void'}, "
                                              "{id: 4, status: 'paid'}")),),
     "all(id < 2 or status = 'open') failed on orders: rows where it is false = 2, e.g. "
     "{id: 2, status: 'void'}, {id: 4, status: 'paid'}"),
    ("orders", "all(status in ['paid', 'open', 'void'])", True, (("rows where it is false", 0),),
     None),
    ("orders", "all(status not in ['void'] or amount > 10)", True,
     (("rows where it is false", 0),), None),
    ("orders", "all(customer_id is not null)", False,
     (("rows where it is false", Offending(1, ", e.g. {customer_id: null}")),),
     "all(customer_id is not null) failed on orders: rows where it is false = 1, e.g. "
     "{customer_id: null}"),
    ("orders", "all(id between 1 and 3)", False,
     (("rows where it is false", Offending(1, ", e.g. {id: 4}")),),
     "all(id between 1 and 3) failed on orders: rows where it is false = 1, e.g. {id: 4}"),
    ("orders", "has_columns(id, amount)", True, (), None),
    ("orders", "has_columns(id, amout, statuss)", False, (("missing", "amout, statuss"),),
     "has_columns(id, amout, statuss) failed on orders: missing = 'amout, statuss'"),
    ("orders", "column_type(amount) == 'DOUBLE'", True, (("column_type(amount)", "DOUBLE"),), None),
    ("orders", "column_type(id) == 'BIGINT'", False, (("column_type(id)", "INTEGER"),),
     "column_type(id) == 'BIGINT' failed on orders: column_type(id) = 'INTEGER'"),
    ("orders", "column_type(status) in ['VARCHAR', 'TEXT']", True,
     (("column_type(status)", "VARCHAR"),), None),
    ("orders", "sum(amount) between 0 and 10", False, (("sum(amount)", 27.5),),
     "sum(amount) between 0 and 10 failed on orders: sum(amount) = 27.5"),
    ("orders", "avg(amount) > 10", False, (("avg(amount)", 27.5 / 3),),
     "avg(amount) > 10 failed on orders: avg(amount) = 9.16667"),
    ("orders", "min(amount) >= 0", False, (("min(amount)", -3.0),),
     "min(amount) >= 0 failed on orders: min(amount) = -3"),
    ("orders", "max(amount) is null", False, (("max(amount)", 20.0),),
     "max(amount) is null failed on orders: max(amount) = 20"),
    ("orders", "null_count(amount) = 0", False, (("null_count(amount)", 1),),
     "null_count(amount) = 0 failed on orders: null_count(amount) = 1"),
    ("orders", "distinct_count(id) = row_count", False,
     (("distinct_count(id)", 3), ("row_count", 4)),
     "distinct_count(id) = row_count failed on orders: distinct_count(id) = 3, row_count = 4"),
    ("orders", "abs(row_count - row_count(raw_orders)) <= 1", False,
     (("row_count", 4), ("row_count(raw_orders)", 0)),
     "abs(row_count - row_count(raw_orders)) <= 1 failed on orders, raw_orders: row_count = 4, "
     "row_count(raw_orders) = 0"),
    ("orders", "max(raw_orders.amount) is null", True, (("max(raw_orders.amount)", None),), None),
    ("orders", "sum(raw_orders.amount) > 0", False, (("sum(raw_orders.amount)", None),),
     "sum(raw_orders.amount) > 0 failed on raw_orders: sum(raw_orders.amount) = null"),
    ("orders", "row_count > 0 and unique(id)", False,
     (("row_count", 4), ("duplicate rows", Offending(1, ", e.g. 2 (x2)"))),
     "row_count > 0 and unique(id) failed on orders: row_count = 4, duplicate rows = 1, e.g. "
     "2 (x2)"),
    ("orders", "row_count >= 4 or unique(id)", True, (("row_count", 4), ("duplicate rows", 1)),
     None),
    ("orders", "not unique(id)", True, (("duplicate rows", 1),), None),
    ("orders", "row_count * 2 - 1 = 7 and row_count % 3 <> 0 and row_count / 8 = 0.5", True,
     (("row_count", 4),), None),
    ("orders", "row_count in [1, 4] and row_count not in [0]", True, (("row_count", 4),), None),
    ("orders", "min(amount) is not null and -min(amount) = 3", True, (("min(amount)", -3.0),),
     None),
    # references: child rows whose key (no column NULL) is no parent row's key; a NULL
    # child key is no orphan (orders has customer_id NULL once), a NULL parent key matches
    # nothing; the message shows the first distinct orphan keys, sorted
    ("orders", "references(customer_id, customers.customer_id)", False,
     (("rows with orphan keys", Offending(1, ", e.g. [8]")),),
     "references(customer_id, customers.customer_id) failed on orders, customers: rows with "
     "orphan keys = 1, e.g. [8]"),
    ("orders", "references(customers.customer_id, customer_id)", True,
     (("rows with orphan keys", 0),), None),
    ("orders", "references(id, id)", True, (("rows with orphan keys", 0),), None),
    ("orders", "references((id, customer_id), (raw_orders.id, raw_orders.customer_id))", False,
     (("rows with orphan keys", Offending(3, ", e.g. [(1, 7), (2, 7), (4, 8)]")),),
     "references((id, customer_id), (raw_orders.id, raw_orders.customer_id)) failed on orders, "
     "raw_orders: rows with orphan keys = 3, e.g. [(1, 7), (2, 7), (4, 8)]"),
    ("orders", "references(status, customers.region)", False,
     (("rows with orphan keys", Offending(4, ", e.g. ['open', 'paid', 'void']")),),
     "references(status, customers.region) failed on orders, customers: rows with orphan keys "
     "= 4, e.g. ['open', 'paid', 'void']"),
]


def measured_by_hand(con: duckdb.DuckDBPyConnection, plan: RulePlan
                     ) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The plan's measures and the schemas it needs, done here with plain DuckDB,
    independently of odibi's engine: each query of the first pass, then the follow-ups
    (examples) of the counts that came out non-zero."""
    schemas = {ds: {c[0]: c[1] for c in con.execute(f"DESCRIBE {ds}").fetchall()}
               for ds in plan.datasets}
    values: dict[str, Any] = {}
    for follow_up in (False, True):
        for query in plan.passes(broken(plan, values, schemas) if follow_up else None):
            if query.form is Form.AGGREGATE:
                select = ", ".join(f"{sql(m)} AS {m.key}" for m in query.measures)
                statement = f"SELECT {select} FROM {query.dataset} AS t"
            else:
                ctes = f"t AS (FROM {query.dataset})" + \
                    (f", p AS (FROM {query.parent})" if query.parent else "")
                select = ", ".join(f"({sql(m)}) AS {m.key}" for m in query.measures)
                statement = f"WITH {ctes} SELECT {select}"
            row = con.execute(statement).fetchone()
            assert row is not None
            values.update({m.key: v for m, v in zip(query.measures, row)})
    return values, schemas


@pytest.fixture(scope="module")
def orders_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(ORDERS)
    yield con
    con.close()


@pytest.mark.parametrize(("default", "text", "ok", "measured", "message"), EVALUATED,
                         ids=[f"{r[0]}: {r[1]}" for r in EVALUATED])
def test_evaluated(orders_db: duckdb.DuckDBPyConnection, default: str, text: str, ok: bool,
                   measured: tuple[tuple[str, Any], ...], message: str | None) -> None:
    scope = EVAL_SCOPE if default == "orders" else EMPTY_SCOPE
    plan = compile_rules([(text, parse_rule(text))], scope)
    values, schemas = measured_by_hand(orders_db, plan)
    (result,) = evaluate(plan, values, schemas)
    assert (result.ok, result.measured) == (ok, measured)
    assert result.error is None
    if message is not None:
        assert result.describe() == message


def test_distinct_aggregates_get_a_query_of_their_own_and_examples_come_only_on_failure(
        ) -> None:
    rules = ["row_count > 0", "unique(order_id)", "distinct_count(customer_id) > 1",
             "max(amount) < 10000", "accepted_values(status, ['paid', 'open'])"]
    plan = compile_rules([(r, parse_rule(r)) for r in rules], SCOPES["val"])
    first = plan.passes()
    assert [(q.dataset, q.form, [m.label for m in q.measures]) for q in first] == [
        (CO, Form.AGGREGATE, ["row_count", "max(amount)", "accepted_values(status): other values"]),
        (CO, Form.AGGREGATE, ["unique(order_id): duplicate rows", "distinct_count(customer_id)"])]
    other = next(m for m in plan.measures if m.label.startswith("accepted_values")).key
    dups = next(m for m in plan.measures if m.label.startswith("unique")).key
    assert plan.passes({other: 0}) == []  # nothing broke the rule: no examples to fetch
    assert [(q.form, [m.label for m in q.measures]) for q in plan.passes({other: 3})] == \
        [(Form.QUERY, ["other values, e.g."])]
    # the examples of every broken rule of a dataset: one query
    assert [[m.label for m in q.measures] for q in plan.passes({other: 3, dups: 1})] == \
        [["unique(order_id): duplicate rows, e.g.", "other values, e.g."]]


def test_evaluating_a_set_gives_one_verdict_per_rule_in_order(orders_db) -> None:
    texts = [r[1] for r in EVALUATED if r[0] == "orders"]
    plan = compile_rules([(t, parse_rule(t)) for t in texts], EVAL_SCOPE)
    assert set(plan.queries()) == {"orders", "raw_orders", "customers"}
    values, schemas = measured_by_hand(orders_db, plan)
    results = evaluate(plan, values, schemas)
    assert [(r.text, r.ok) for r in results] == [(r[1], r[2]) for r in EVALUATED if r[0] == "orders"]


# -- run_rules on a warehouse session ---------------------------------------------------------
class CountingSession:
    """A session that counts the queries `measure` runs: `measured` the aggregates over a
    table, `queried` the scalar queries over named tables (the child's, then the parent's)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.measured: list[tuple[str, int]] = []
        self.queried: list[tuple[tuple[str, ...], int]] = []

    def measure(self, query: Query, relations: Mapping[str, str]) -> Mapping[str, Any]:
        if query.form is Form.AGGREGATE:
            self.measured.append((relations[query.dataset], len(query.measures)))
        else:
            read = (query.dataset,) + ((query.parent,) if query.parent is not None else ())
            self.queried.append((tuple(relations[d] for d in read), len(query.measures)))
        return self.inner.measure(query, relations)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def session(tmp_path: Path):
    from odibi.engines.duckdb_engine import DuckDBEngine

    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    engine.con.execute(ORDERS)
    s = engine.session()
    yield s
    s.close()
    engine.close()


TABLES = {"orders": "orders", "raw_orders": "raw_orders"}  # each node's current output


def test_run_rules_measures_each_dataset_in_one_query_per_kind(session) -> None:
    """Plain aggregates in one query, DISTINCT ones in another, and the examples of what
    broke unique, not_null, all and accepted_values in a third, only because something
    did."""
    from odibi.rules import run_rules

    texts = ["row_count > 0", "unique(id)", "not_null(customer_id, amount)", "all(amount > 0)",
             "accepted_values(status, ['paid', 'open'])", "max(amount) < 100",
             "row_count(raw_orders) = 0", "null_count(raw_orders.amount) = 0",
             "has_columns(id, status)"]
    plan = compile_rules([(t, parse_rule(t)) for t in texts], EVAL_SCOPE)
    counting = CountingSession(session)
    results = run_rules(counting, plan, TABLES)
    assert sorted(counting.measured) == [("orders", 1), ("orders", 5),
                                         ("raw_orders", 2)]
    # unique's examples, not_null's counts per column and rows, all's rows, accepted_values'
    assert counting.queried == [(("orders",), 5)]
    assert [(r.ok, r.describe() if not r.ok else None) for r in results] == [
        (True, None),
        (False, "unique(id) failed on orders: duplicate rows = 1, e.g. 2 (x2)"),
        (False, "not_null(customer_id, amount) failed on orders: rows with nulls = 2 "
                "(customer_id: 1 null, amount: 1 null), e.g. {id: 2, customer_id: null}, "
                "{id: 4, amount: null}"),
        (False, "all(amount > 0) failed on orders: rows where it is false = 1, e.g. "
                "{amount: -3}"),
        (False, "accepted_values(status, ['paid', 'open']) failed on orders: rows with other "
                "values = 1, other values, e.g. = ['void']"),
        (True, None),
        (True, None),
        (True, None),
        (True, None),
    ]


def test_run_rules_a_misspelt_column_is_a_clear_failure(session) -> None:
    from odibi.rules import run_rules

    texts = ["all(amout > 0)", "sum(amout) > 0", "row_count > 0", "unique(ID)",
             "null_count(raw_orders.custmer_id) = 0", "has_columns(amout)"]
    plan = compile_rules([(t, parse_rule(t)) for t in texts], EVAL_SCOPE)
    results = run_rules(session, plan, TABLES)
    assert [(r.ok, r.error) for r in results] == [
        (False, "no column 'amout' in orders (did you mean 'amount'?)"),
        (False, "no column 'amout' in orders (did you mean 'amount'?)"),
        (True, None),  # the other rules are still checked; column names ignore case
        (False, None),
        (False, "no column 'custmer_id' in raw_orders (did you mean 'customer_id'?)"),
        (False, None),
    ]
    assert results[0].describe() == ("all(amout > 0) could not be checked on orders: no column "
                                      "'amout' in orders (did you mean 'amount'?)")
    assert results[4].describe() == (
        "null_count(raw_orders.custmer_id) = 0 could not be checked on raw_orders: no column "
        "'custmer_id' in raw_orders (did you mean 'customer_id'?)")
    assert results[5].describe() == "has_columns(amout) failed on orders: missing = 'amout'"


TABLES_CU = {**TABLES, "customers": "customers"}


def test_references_is_a_query_of_its_own_and_its_examples_come_only_on_failure(
        session) -> None:
    """The anti-join count of a references rule reads two datasets: a query of its own per
    pair, beside the child's aggregates; the orphan keys are fetched only when it failed."""
    from odibi.rules import run_rules

    holds = ["row_count > 0", "references(customers.customer_id, customer_id)",
             "references(id, id)"]
    plan = compile_rules([(t, parse_rule(t)) for t in holds], EVAL_SCOPE)
    assert [(q.dataset, q.parent, q.form) for q in plan.passes()] == [
        ("orders", None, Form.AGGREGATE), ("customers", "orders", Form.QUERY),
        ("orders", "orders", Form.QUERY)]
    counting = CountingSession(session)
    assert all(r.ok for r in run_rules(counting, plan, TABLES_CU))
    assert counting.measured == [("orders", 1)]
    assert counting.queried == [(("customers", "orders"), 1),
                                (("orders", "orders"), 1)]  # and no follow-up

    broken = holds + ["references(customer_id, customers.customer_id)"]
    plan = compile_rules([(t, parse_rule(t)) for t in broken], EVAL_SCOPE)
    counting = CountingSession(session)
    results = run_rules(counting, plan, TABLES_CU)
    assert counting.queried == [(("customers", "orders"), 1),
                                (("orders", "orders"), 1),
                                (("orders", "customers"), 1),
                                (("orders", "customers"), 1)]  # its orphan keys
    assert [r.describe() for r in results if not r.ok] == [
        "references(customer_id, customers.customer_id) failed on orders, customers: rows "
        "with orphan keys = 1, e.g. [8]"]


def test_run_rules_references_checks_the_columns_on_both_sides(session) -> None:
    """A misspelt key column, on either side, and a text key compared with a number are
    clear failures (DuckDB would cast the text, and fail on the first that does not
    convert); the other rules are still checked."""
    from odibi.rules import run_rules

    texts = ["references(custmer_id, customers.customer_id)",
             "references(customer_id, customers.custid)",
             "references(status, customers.customer_id)",
             "references((id, status), (customers.customer_id, customers.region))",
             "references(customer_id, customers.customer_id)"]
    plan = compile_rules([(t, parse_rule(t)) for t in texts], EVAL_SCOPE)
    counting = CountingSession(session)
    results = run_rules(counting, plan, TABLES_CU)
    assert [(r.ok, r.error) for r in results] == [
        (False, "no column 'custmer_id' in orders (did you mean 'customer_id'?)"),
        (False, "no column 'custid' in customers (did you mean 'customer_id'?)"),
        (False, "orders.status is VARCHAR but customers.customer_id is INTEGER (cast one of "
                "them in a node, so that the keys compare as the same type)"),
        (False, None),  # checked (its columns compare, pair by pair): no key is a parent's
        (False, None),  # checked: 8 is an orphan
    ]
    assert results[1].describe() == (
        "references(customer_id, customers.custid) could not be checked on orders, customers: "
        "no column 'custid' in customers (did you mean 'customer_id'?)")
    # only the rules that could be checked were measured, with their examples
    assert counting.queried == [(("orders", "customers"), 2),
                                (("orders", "customers"), 2)]
    assert results[3].describe() == (
        "references((id, status), (customers.customer_id, customers.region)) failed on orders, "
        "customers: rows with orphan keys = 4, e.g. [(1, 'paid'), (2, 'open'), (2, 'void'), "
        "(4, 'paid')]")


NOTES = """
    CREATE TABLE notes (k INTEGER, a VARCHAR, b VARCHAR);
    INSERT INTO notes VALUES (1, 'x', NULL), (1, 'x', NULL), (1, 'x', 'y'),
        (2, repeat('long ', 30), 'line' || chr(10) || 'break'), (3, NULL, NULL),
        (4, repeat('w', 50), 'z'), (4, repeat('w', 50), 'z'), (5, repeat('v', 50), 'z'),
        (5, repeat('v', 50), 'z'), (6, repeat('u', 50), 'z'), (6, repeat('u', 50), 'z');
"""
W, V, U = ("'" + c * 39 + "…'" for c in "wvu")  # a value is cut to 40 characters

# (rule, its failure message)
MESSAGES = [
    # keys of several columns are tuples; most repeated first, then by key; a long list of
    # examples is cut ('…')
    ("unique(k, a)", f"unique(k, a) failed on notes: duplicate rows = 5, e.g. (1, 'x') (x3), "
                     f"(4, {W}) (x2), (5, {V}) (x2), …"),
    ("unique(a)", f"unique(a) failed on notes: duplicate rows = 5, e.g. 'x' (x3), {U} (x2), "
                  f"{V} (x2), {W} (x2)"),
    # a line break in a value is shown escaped: the message stays on one line
    ("all(b is null)", "all(b is null) failed on notes: rows where it is false = 8, e.g. "
                       "{b: 'line\\nbreak'}, {b: 'y'}, {b: 'z'}"),
    ("all(a = 'x' or a is null)", "all(a = 'x' or a is null) failed on notes: rows where it is "
                                  "false = 7, e.g. {a: 'long long long long long long long "
                                  f"long…'}}, {{a: {U}}}, {{a: {V}}}, …"),
    # rows: their first column that is not null and the rule's nulls (equal rows: once)
    ("not_null(a, b)", "not_null(a, b) failed on notes: rows with nulls = 3 (a: 1 null, b: 3 "
                       "nulls), e.g. {k: 1, b: null}, {k: 3, a: null, b: null}"),
    ("not_null(b, k)", "not_null(b, k) failed on notes: rows with nulls = 3 (b: 3 nulls), e.g. "
                       "{k: 1, b: null}, {k: 3, b: null}"),
    ("accepted_values(b, ['z'])", "accepted_values(b, ['z']) failed on notes: rows with other "
                                  "values = 2, other values, e.g. = ['line\\nbreak', 'y']"),
]


@pytest.mark.parametrize(("text", "message"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_messages_name_offending_values_on_one_short_line(text: str, message: str) -> None:
    con = duckdb.connect()
    con.execute(NOTES)
    plan = compile_rules([(text, parse_rule(text))], Scope({"notes": "notes"}, "notes"))
    values, schemas = measured_by_hand(con, plan)
    (result,) = evaluate(plan, values, schemas)
    assert not result.ok
    assert result.describe() == message
    assert "\n" not in message and len(message) < 300
