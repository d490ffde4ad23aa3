"""`odibi test`: unit tests of SQL and Python nodes on inline fixtures, through the real
CLI in process (and pytest, through its plugin, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: t
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        vars:
          min_amount: 0
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv}
          - name: raw_customers
            read: {connection: raw, path: customers.csv}
          - name: clean_orders
            sql: |
              SELECT order_id, customer_id, amount
              FROM raw_orders
              WHERE amount > ${vars.min_amount}
            contracts:
              - not_null(raw_orders.order_id)
            validate:
              - unique(order_id)
          - name: named_orders
            sql: |
              SELECT o.order_id, c.name, o.amount
              FROM clean_orders o JOIN raw_customers c USING (customer_id)
          - name: totals
            python: transforms.totals:totals
            validate:
              - all(amount >= 0)
          - name: export_totals
            sql: SELECT * FROM totals
            write: {connection: out, path: totals.csv}
        """,
    "transforms/__init__.py": "",
    "transforms/totals.py": """
        def totals(clean_orders):
            out = clean_orders.groupby("customer_id", as_index=False)["amount"].sum()
            return out.sort_values("customer_id")
        """,
    "data/orders.csv": """
        order_id,customer_id,amount
        1,1,10.5
        2,1,20.0
        3,2,-4.0
        4,2,7.25
        5,3,1.0
        6,3,2.0
        7,4,30.0
        """,
    "data/customers.csv": """
        customer_id,name
        1,Ada
        2,Grace
        3,Alan
        4,Edsger
        """,
}

SQL_PASS = """
    - name: drops_non_positive
      node: clean_orders
      given:
        raw_orders:
          rows: [{order_id: 1, customer_id: 7, amount: 10.0}, {order_id: 2, customer_id: 7, amount: -5.0}]
      expect:
        rows: [{order_id: 1, customer_id: 7, amount: 10.0}]
"""
SQL_FAIL = """
    - name: wrong_amount
      node: clean_orders
      given:
        raw_orders:
          rows:
            - {order_id: 1, customer_id: 7, amount: 10.0}
            - {order_id: 2, customer_id: 8, amount: 3.0}
            - {order_id: 3, customer_id: 9, amount: 4.0}
      expect:
        rows:
          - {order_id: 1, customer_id: 7, amount: 11.0}
          - {order_id: 2, customer_id: 8, amount: 3.0}
          - {order_id: 9, customer_id: 9, amount: 9.0}
"""
PY_PASS = """
    - name: sums_per_customer
      node: totals
      given:
        clean_orders:
          rows:
            - {order_id: 1, customer_id: 1, amount: 1.5}
            - {order_id: 2, customer_id: 1, amount: 2.0}
            - {order_id: 3, customer_id: 2, amount: 4.0}
      expect:
        rows: [{customer_id: 2, amount: 4.0}, {customer_id: 1, amount: 3.5}]
"""
PY_FAIL = """
    - name: sums_wrongly
      node: totals
      given:
        clean_orders:
          rows: [{order_id: 1, customer_id: 1, amount: 1.5}, {order_id: 2, customer_id: 1, amount: 2.0}]
      expect:
        rows: [{customer_id: 1, amount: 4.0}]
"""


def _test_file(*cases: str) -> str:
    return "tests:\n" + "".join(textwrap.indent(textwrap.dedent(c).strip("\n"), "  ") + "\n"
                                for c in cases)


@pytest.fixture
def proj(tmp_path: Path):
    made = []

    def make(*cases: str, extra: dict[str, str] | None = None, name: str = "test_units.yaml"
             ) -> Path:
        files = dict(PROJECT)
        if cases:
            files[f"tests/{name}"] = _test_file(*cases)
        made.append(1)
        root = write_files(tmp_path / f"p{len(made)}", files)
        for rel, text in (extra or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(textwrap.dedent(text).lstrip("\n"))
        return root
    return make


def odibi_test(root: Path, *argv: str):
    return run_cli("-C", str(root), "test", *argv)


def cases_of(result) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(result.out)["cases"]}


# -- SQL and Python nodes, passing and failing -------------------------------------------------
def test_sql_node_passing_case_exits_0(proj) -> None:
    r = odibi_test(proj(SQL_PASS))
    assert r.code == 0, r.text
    assert "PASS tests/test_units.yaml::drops_non_positive (clean_orders)" in r.out
    assert "1 passed, 0 failed" in r.out


def test_sql_node_failing_case_exits_1_with_a_row_diff(proj) -> None:
    r = odibi_test(proj(SQL_PASS, SQL_FAIL))
    assert r.code == 1, r.text
    assert "FAIL tests/test_units.yaml::wrong_amount (clean_orders)" in r.out
    assert "1 missing, 1 unexpected, 1 changed (expected 3 rows, got 3)" in r.out
    lines = [line.split() for line in r.out.splitlines()]
    assert ["~", "1", "7", "11.0", "->", "10.0"] in lines  # the changed cell: expected -> actual
    assert ["-", "9", "9", "9.0"] in lines  # expected, not produced
    assert ["+", "3", "9", "4.0"] in lines  # produced, not expected
    assert ["2", "8", "3.0"] not in [line[1:] for line in lines]  # equal rows are not shown
    assert "1 passed, 1 failed" in r.out


def test_python_node_passing_and_failing_cases(proj) -> None:
    r = odibi_test(proj(PY_PASS, PY_FAIL))
    assert r.code == 1, r.text
    assert "PASS tests/test_units.yaml::sums_per_customer (totals)" in r.out
    assert "FAIL tests/test_units.yaml::sums_wrongly (totals)" in r.out
    assert ["~", "1", "4.0", "->", "3.5"] in [line.split() for line in r.out.splitlines()]
    assert odibi_test(proj(PY_PASS)).code == 0


def test_diff_is_styled_on_a_terminal_and_plain_otherwise(proj, monkeypatch) -> None:
    root = proj(SQL_FAIL)
    plain = odibi_test(root)
    assert "\x1b[" not in plain.out
    monkeypatch.setenv("FORCE_COLOR", "1")
    styled = odibi_test(root)
    assert "\x1b[" in styled.out and "→" in styled.out
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in odibi_test(root).out


# -- fixtures ------------------------------------------------------------------------------------
def test_every_fixture_kind_and_schema(proj, tmp_path: Path) -> None:
    import duckdb

    case = """
        - name: {name}
          node: named_orders
          given:
            clean_orders:
              {orders}
            raw_customers:
              {customers}
          expect:
            {expect}
    """
    inline_csv = "csv: |\n                customer_id,name\n                7,Ada\n                8,Bob"
    cases = [
        case.format(name="rows", orders="rows: [{order_id: 1, customer_id: 7, amount: 2.5}]",
                    customers="rows: [{customer_id: 7, name: Ada}]",
                    expect="rows: [{order_id: 1, name: Ada, amount: 2.5}]"),
        case.format(name="inline_csv", orders="rows: [{order_id: 1, customer_id: 8, amount: 2.5}]",
                    customers=inline_csv, expect="rows: [{order_id: 1, name: Bob, amount: 2.5}]"),
        case.format(name="csv_file", orders="file: fixtures/orders.csv",
                    customers="file: fixtures/customers.csv",
                    expect="file: fixtures/expected.csv"),
        case.format(name="parquet_file", orders="file: fixtures/orders.parquet",
                    customers="rows: [{customer_id: 7, name: Ada}]",
                    expect="rows: [{order_id: 5, name: Ada, amount: 1.25}]"),
        # schema: the ids are text in the fixture; typed, they join with the customers
        case.format(name="schema", orders="rows: [{order_id: '1', customer_id: '007', amount: 2}]"
                                          "\n              schema: {customer_id: BIGINT, "
                                          "amount: 'DECIMAL(10,2)'}",
                    customers="rows: [{customer_id: 7, name: Ada}]",
                    expect="rows: [{order_id: '1', name: Ada, amount: 2.0}]"),
    ]
    root = proj(*cases, extra={
        "tests/fixtures/orders.csv": "order_id,customer_id,amount\n1,7,2.5\n2,8,3.5\n",
        "tests/fixtures/customers.csv": "customer_id,name\n7,Ada\n8,Bob\n",
        "tests/fixtures/expected.csv": "order_id,name,amount\n2,Bob,3.5\n1,Ada,2.5\n"})
    con = duckdb.connect()
    con.execute("COPY (SELECT 5 AS order_id, 7 AS customer_id, 1.25 AS amount) TO "
                f"'{root / 'tests/fixtures/orders.parquet'}' (FORMAT parquet)")
    con.close()
    r = odibi_test(root, "--json")
    assert r.code == 0, r.text
    results = cases_of(r)
    assert set(results) == {"rows", "inline_csv", "csv_file", "parquet_file", "schema"}
    assert all(c["ok"] for c in results.values()), results


def test_schema_types_are_applied(proj) -> None:
    """Without the schema the ids are text and the join finds nothing."""
    case = """
        - name: untyped
          node: named_orders
          given:
            clean_orders:
              rows: [{order_id: 1, customer_id: '007', amount: 2.0}]
            raw_customers:
              rows: [{customer_id: '7', name: Ada}]
          expect:
            rows: []
    """
    assert odibi_test(proj(case)).code == 0


def test_fixture_missing_a_column_the_sql_reads_exits_2(proj) -> None:
    case = """
        - name: no_amount
          node: clean_orders
          given:
            raw_orders:
              rows: [{order_id: 1, customer_id: 7}]
          expect:
            rows: []
    """
    r = odibi_test(proj(case))
    assert r.code == 2, r.text
    assert "Traceback" not in r.text
    assert ("tests/test_units.yaml:5:7: error: test 'no_amount': the fixture 'raw_orders' has "
            "no column 'amount', which 'clean_orders' reads") in r.err
    assert "PASS" not in r.out and "FAIL" not in r.out


def test_fixture_missing_a_column_the_python_reads_exits_2(proj) -> None:
    case = """
        - name: no_amount
          node: totals
          given:
            clean_orders:
              rows: [{order_id: 1, customer_id: 7, amout: 1.0}]
          expect:
            rows: []
    """
    r = odibi_test(proj(case))
    assert r.code == 2, r.text
    assert "the fixture 'clean_orders'" in r.err and "'amount'" in r.err
    assert "hint: did you mean 'amout'?" in r.err


def test_a_fixture_file_that_cannot_be_read_exits_2(proj) -> None:
    case = """
        - name: not_parquet
          node: clean_orders
          given:
            raw_orders:
              file: fixtures/orders.parquet
              {schema}
          expect:
            rows: []
    """
    extra = {"tests/fixtures/orders.parquet": "order_id,customer_id,amount\n1,7,2.5\n"}
    typed = odibi_test(proj(case.format(schema="schema: {order_id: BIGINT}"), extra=extra))
    assert typed.code == 2, typed.text
    assert "Traceback" not in typed.text
    assert ("tests/test_units.yaml:5:7: error: test 'not_parquet': given raw_orders: the "
            "fixture could not be read: ") in typed.err
    untyped = odibi_test(proj(case.format(schema=""), extra=extra))
    assert untyped.code == 2, untyped.text
    assert ("tests/test_units.yaml:5:7: error: test 'not_parquet': given raw_orders: the "
            "fixture could not be loaded: ") in untyped.err
    assert "PASS" not in untyped.out and "FAIL" not in untyped.out


# -- comparison ----------------------------------------------------------------------------------
def test_row_order_counts_only_when_ordered(proj) -> None:
    base = """
        - name: {name}
          node: clean_orders
          given:
            raw_orders:
              rows: [{{order_id: 1, customer_id: 7, amount: 1.0}}, {{order_id: 2, customer_id: 7, amount: 2.0}}]
          expect:
            rows: [{{order_id: {first}, customer_id: 7, amount: {first}.0}}, {{order_id: {second}, customer_id: 7, amount: {second}.0}}]
            ordered: {ordered}
    """
    r = odibi_test(proj(base.format(name="any_order", first=2, second=1, ordered="false"),
                        base.format(name="in_order", first=1, second=2, ordered="true"),
                        base.format(name="out_of_order", first=2, second=1, ordered="true")),
                   "--json")
    assert r.code == 1
    results = cases_of(r)
    assert results["any_order"]["ok"] is True
    assert results["in_order"]["ok"] is True
    assert results["out_of_order"]["ok"] is False
    assert "in order" in results["out_of_order"]["message"]


def test_columns_subset_compares_only_the_columns_given(proj) -> None:
    base = """
        - name: {name}
          node: clean_orders
          given:
            raw_orders:
              rows: [{{order_id: 1, customer_id: 7, amount: 1.0}}]
          expect:
            rows: [{{order_id: 1}}]
            {extra}
    """
    r = odibi_test(proj(base.format(name="subset", extra="columns: subset"),
                        base.format(name="exact", extra="")), "--json")
    results = cases_of(r)
    assert results["subset"]["ok"] is True
    assert results["exact"]["ok"] is False
    assert "the output also has customer_id, amount" in results["exact"]["message"]


def test_float_tolerance(proj) -> None:
    base = """
        - name: {name}
          node: clean_orders
          given:
            raw_orders:
              rows: [{{order_id: 1, customer_id: 7, amount: 0.1}}, {{order_id: 2, customer_id: 7, amount: 0.2}}]
          expect:
            rows: [{{order_id: 1, customer_id: 7, amount: {a}}}, {{order_id: 2, customer_id: 7, amount: 0.2}}]
            {extra}
    """
    results = cases_of(odibi_test(proj(
        base.format(name="default_tolerance", a="0.1000000000001", extra=""),
        base.format(name="too_far", a="0.1001", extra=""),
        base.format(name="wider_tolerance", a="0.1001", extra="tolerance: 0.01"),
    ), "--json"))
    assert results["default_tolerance"]["ok"] is True
    assert results["too_far"]["ok"] is False
    assert results["too_far"]["diff"]["changed"][0]["columns"] == ["amount"]
    assert results["wider_tolerance"]["ok"] is True


def test_vars_override_the_projects(proj) -> None:
    case = """
        - name: higher_minimum
          node: clean_orders
          given:
            raw_orders:
              rows: [{order_id: 1, customer_id: 7, amount: 5.0}, {order_id: 2, customer_id: 7, amount: 50.0}]
          vars: {min_amount: 10}
          expect:
            rows: [{order_id: 2, customer_id: 7, amount: 50.0}]
    """
    assert odibi_test(proj(case)).code == 0
    assert odibi_test(proj(case.replace("min_amount: 10", "min_amount: 1"))).code == 1


# -- contracts and validations ------------------------------------------------------------------
def test_contracts_and_validations_run(proj) -> None:
    null_id = """
        - name: null_id
          node: clean_orders
          given:
            raw_orders:
              rows: [{order_id: null, customer_id: 7, amount: 5.0}]
          expect:
            rows: []
    """
    dup = """
        - name: duplicate
          node: clean_orders
          given:
            raw_orders:
              rows: [{order_id: 1, customer_id: 7, amount: 5.0}, {order_id: 1, customer_id: 7, amount: 6.0}]
          expect:
            error: unique(order_id)
    """
    wrong_error = dup.replace("duplicate", "wrong_error").replace("unique(order_id)",
                                                                  "not_null(raw_orders.order_id)")
    holds = SQL_PASS.replace("rows: [{order_id: 1, customer_id: 7, amount: 10.0}]\n",
                             "error: unique(order_id)\n", 1)
    holds = holds.replace("drops_non_positive", "rules_hold").replace(
        "expect:\n    rows: [{order_id: 1, customer_id: 7, amount: 10.0}, {order_id: 2, "
        "customer_id: 7, amount: -5.0}]", "")
    results = cases_of(odibi_test(proj(null_id, dup, wrong_error, holds), "--json"))
    assert results["null_id"]["ok"] is False
    assert results["null_id"]["message"].startswith(
        "clean_orders failed: contract failed: not_null(raw_orders.order_id) failed on raw_orders")
    assert results["duplicate"]["ok"] is True
    assert results["wrong_error"]["ok"] is False
    assert "validation failed: unique(order_id)" in results["wrong_error"]["message"]
    assert results["rules_hold"]["ok"] is False
    assert "but clean_orders succeeded (1 rows)" in results["rules_hold"]["message"]


# -- selection, JSON, exit codes -----------------------------------------------------------------
def test_selectors_choose_the_cases_of_selected_nodes(proj) -> None:
    root = proj(SQL_PASS, PY_PASS)
    only_sql = cases_of(odibi_test(root, "--json", "clean_orders"))
    assert set(only_sql) == {"drops_non_positive"}
    downstream = cases_of(odibi_test(root, "--json", "clean_orders+"))
    assert set(downstream) == {"drops_non_positive", "sums_per_customer"}
    excluded = cases_of(odibi_test(root, "--json", "--exclude", "kind:python"))
    assert set(excluded) == {"drops_non_positive"}
    r = odibi_test(root, "raw_orders")
    assert r.code == 0 and "no test cases for the selected nodes" in r.out
    assert odibi_test(root, "clean_ordrs").code == 2


def test_json_shape(proj) -> None:
    r = odibi_test(proj(SQL_PASS, SQL_FAIL), "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert set(doc) == {"ok", "passed", "failed", "seconds", "cases"}
    assert (doc["ok"], doc["passed"], doc["failed"]) == (False, 1, 1)
    failed = cases_of(r)["wrong_amount"]
    assert set(failed) == {"id", "file", "name", "node", "ok", "seconds", "message", "diff"}
    assert failed["id"] == "tests/test_units.yaml::wrong_amount"
    diff = failed["diff"]
    assert diff["columns"] == ["order_id", "customer_id", "amount"]
    assert diff["missing"] == [{"order_id": 9, "customer_id": 9, "amount": 9.0}]
    assert diff["unexpected"] == [{"order_id": 3, "customer_id": 9, "amount": 4.0}]
    assert diff["changed"] == [{"expected": {"order_id": 1, "customer_id": 7, "amount": 11.0},
                                "actual": {"order_id": 1, "customer_id": 7, "amount": 10.0},
                                "columns": ["amount"]}]
    assert cases_of(r)["drops_non_positive"]["diff"] is None


def test_exit_codes(proj) -> None:
    assert odibi_test(proj(SQL_PASS)).code == 0
    assert odibi_test(proj(SQL_PASS, SQL_FAIL)).code == 1
    bad = odibi_test(proj(SQL_PASS.replace("node: clean_orders", "node: clean_order")))
    assert bad.code == 2
    assert "error: test 'drops_non_positive': no node named 'clean_order'" in bad.err
    assert "hint: did you mean 'clean_orders'?" in bad.err
    assert odibi_test(proj()).code == 0  # no tests at all
    assert "no test cases" in odibi_test(proj()).out


def test_a_bad_file_runs_nothing(proj) -> None:
    """One bad case anywhere is exit 2 before any case runs (with --json too)."""
    root = proj(SQL_PASS, extra={"tests/test_zz.yaml": "tests:\n  - name: x\n    nod: a\n"})
    r = odibi_test(root, "--json")
    assert r.code == 2
    assert json.loads(r.out)["error"] == "unknown key 'nod' in test case"


# -- nothing is touched ---------------------------------------------------------------------------
def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_a_test_run_touches_neither_odibi_dir_nor_sources(proj) -> None:
    root = proj(SQL_PASS, SQL_FAIL, PY_PASS)
    assert run_cli("-C", str(root), "build").code == 0
    watched = {d: _snapshot(root / d) for d in (".odibi", "data", "output", "tests")}
    assert watched[".odibi"] and watched["data"]
    lock = (root / "odibi.lock").read_bytes()
    assert odibi_test(root).code == 1
    assert odibi_test(root, "--json").code == 1
    for d, before in watched.items():
        assert _snapshot(root / d) == before, f"odibi test changed {d}/"
    assert (root / "odibi.lock").read_bytes() == lock


def test_a_never_built_project_gets_no_odibi_dir(proj) -> None:
    root = proj(SQL_PASS, PY_PASS)
    before = _snapshot(root)
    assert odibi_test(root).code == 0
    assert not (root / ".odibi").exists()
    assert _snapshot(root) == before


# -- --generate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("node", ["clean_orders", "named_orders", "totals"])
def test_generate_writes_a_test_that_passes(proj, node: str) -> None:
    root = proj()
    assert run_cli("-C", str(root), "build").code == 0
    r = run_cli("-C", str(root), "test", "--generate", node, "--rows", "3")
    assert r.code == 0, r.text
    path = root / "tests" / f"test_{node}.yaml"
    text = path.read_text()
    assert f"node: {node}" in text and "schema:" in text
    assert odibi_test(root).code == 0
    doc = json.loads(odibi_test(root, "--json").out)
    assert doc["passed"] == 1 and doc["cases"][0]["node"] == node
    again = run_cli("-C", str(root), "test", "--generate", node, "--rows", "3")
    assert again.code == 2 and "exists" in again.err and "--force" in again.err
    assert path.read_text() == text
    assert run_cli("-C", str(root), "test", "--generate", node, "--force").code == 0
    assert path.read_text() != text  # 5 rows sampled now
    assert odibi_test(root).code == 0


def test_generate_samples_deterministically(proj) -> None:
    root = proj()
    assert run_cli("-C", str(root), "build").code == 0
    assert run_cli("-C", str(root), "test", "--generate", "clean_orders").code == 0
    first = (root / "tests" / "test_clean_orders.yaml").read_text()
    assert run_cli("-C", str(root), "test", "--generate", "clean_orders", "--force").code == 0
    assert (root / "tests" / "test_clean_orders.yaml").read_text() == first
    # the first rows in a stable order (sorted by all columns), not an arbitrary sample
    assert "{order_id: 1, customer_id: 1, amount: 10.5}" in first


def test_generate_before_any_build_exits_2(proj) -> None:
    root = proj()
    r = run_cli("-C", str(root), "test", "--generate", "clean_orders")
    assert r.code == 2
    assert "has not been built" in r.err and "odibi build" in r.err
    assert not (root / ".odibi").exists() and not (root / "tests").exists()
    assert run_cli("-C", str(root), "test", "--generate", "raw_orders").code == 2
    assert "did you mean 'clean_orders'" in run_cli(
        "-C", str(root), "test", "--generate", "clean_order").err


# A join whose first rows do not join: 60 orders of customers 201-300 (the first five
# orders' customers all differ), 300 customers in regions 30-49, 50 regions. The first five
# customers (1-5) and regions (1-5) match nothing sampled from the other side.
JOIN_ORDERS = [(i, 200 + (i * 7) % 100 + 1, float(i)) for i in range(1, 61)]
JOIN_CUSTOMERS = [(c, f"cust{c}", 30 + c % 20) for c in range(1, 301)]
JOIN_REGIONS = [(r, f"region{r}") for r in range(1, 51)]
JOINS = {
    "odibi.yaml": """
        project: joins
        connections:
          raw: {type: local, base_path: data}
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv}
          - name: raw_customers
            read: {connection: raw, path: customers.csv}
          - name: raw_regions
            read: {connection: raw, path: regions.csv}
          - name: order_names                     # JOIN ON, aliases
            sql: |
              SELECT o.order_id, c.name
              FROM raw_orders o JOIN raw_customers c ON o.customer_id = c.id
          - name: order_names_where              # an equality in WHERE, table names
            sql: |
              SELECT order_id, name FROM raw_orders, raw_customers
              WHERE raw_orders.customer_id = raw_customers.id AND amount > 0
          - name: order_regions                   # 3-way, LEFT JOIN, then USING
            sql: |
              SELECT o.order_id, c.name, r.region_name
              FROM raw_orders o
              LEFT JOIN raw_customers c ON o.customer_id = c.id
              LEFT JOIN raw_regions r USING (region_id)
        """,
    "data/orders.csv": "order_id,customer_id,amount\n" + "".join(
        f"{o},{c},{a}\n" for o, c, a in JOIN_ORDERS),
    "data/customers.csv": "id,name,region_id\n" + "".join(
        f"{c},{n},{r}\n" for c, n, r in JOIN_CUSTOMERS),
    "data/regions.csv": "region_id,region_name\n" + "".join(
        f"{r},{n}\n" for r, n in JOIN_REGIONS),
}


def _generated(root: Path, node: str) -> dict:
    import yaml

    r = run_cli("-C", str(root), "test", "--generate", node)
    assert r.code == 0, r.text
    case = yaml.safe_load((root / "tests" / f"test_{node}.yaml").read_text())["tests"][0]
    return {"given": {k: v["rows"] for k, v in case["given"].items()},
            "expect": case["expect"]["rows"]}


def test_generate_samples_rows_that_join(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", JOINS)
    assert run_cli("-C", str(root), "build").code == 0
    first_orders = JOIN_ORDERS[:5]
    wanted = {c for _, c, _ in first_orders}
    # the premise: the first rows of each input join nothing (the sample before this change)
    assert not wanted & {c for c, _, _ in JOIN_CUSTOMERS[:5]}

    for node in ("order_names", "order_names_where"):
        got = _generated(root, node)
        # the orders as before: the first five; the customers: exactly theirs
        assert [r["order_id"] for r in got["given"]["raw_orders"]] == [1, 2, 3, 4, 5]
        assert sorted(r["id"] for r in got["given"]["raw_customers"]) == sorted(wanted)
        assert sorted((r["order_id"], r["name"]) for r in got["expect"]) == \
            [(o, f"cust{c}") for o, c, _ in first_orders]

    got = _generated(root, "order_regions")  # regions follow the customers' sample
    regions = {30 + c % 20 for c in wanted}
    assert sorted(r["region_id"] for r in got["given"]["raw_regions"]) == sorted(regions)
    assert sorted((r["order_id"], r["name"], r["region_name"]) for r in got["expect"]) == \
        [(o, f"cust{c}", f"region{30 + c % 20}") for o, c, _ in first_orders]

    # the generated tests pass as written, and a second generation writes the same files
    r = odibi_test(root, "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["passed"] == 3
    files = {p.name: p.read_text() for p in (root / "tests").iterdir()}
    for node in ("order_names", "order_names_where", "order_regions"):
        assert run_cli("-C", str(root), "test", "--generate", node, "--force").code == 0
    assert {p.name: p.read_text() for p in (root / "tests").iterdir()} == files


def test_generate_matches_every_sampled_key_before_any_twice(tmp_path: Path) -> None:
    """Customers named first: each of the sampled customers with orders gets one order
    before any gets a second (each has four)."""
    files = dict(JOINS)
    files["odibi.yaml"] = JOINS["odibi.yaml"].replace("""
          - name: order_names                     # JOIN ON, aliases""", """
          - name: customer_orders
            sql: |
              SELECT c.id, o.order_id
              FROM raw_customers c JOIN raw_orders o ON o.customer_id = c.id
          - name: order_names                     # JOIN ON, aliases""")
    files["data/orders.csv"] = "order_id,customer_id,amount\n" + "".join(
        f"{o},{1 + (o - 1) // 4},1.0\n" for o in range(1, 13))  # customer 1: orders 1-4, ...
    root = write_files(tmp_path / "p", files)
    assert run_cli("-C", str(root), "build").code == 0
    r = run_cli("-C", str(root), "test", "--generate", "customer_orders", "--rows", "4")
    assert r.code == 0, r.text
    import yaml

    case = yaml.safe_load((root / "tests" / "test_customer_orders.yaml").read_text())["tests"][0]
    orders = case["given"]["raw_orders"]["rows"]
    # customers 1-4 sampled; orders: the first of customers 1, 2 and 3, then the second of
    # customer 1 (the first four rows by all columns would be customer 1's four orders)
    assert [(r["order_id"], r["customer_id"]) for r in orders] == [(1, 1), (5, 2), (9, 3), (2, 1)]
    assert odibi_test(root).code == 0


# -- odibi init --------------------------------------------------------------------------------------
def test_init_creates_a_project_with_a_passing_test(tmp_path: Path) -> None:
    assert run_cli("-C", str(tmp_path), "init", "fresh").code == 0
    root = tmp_path / "fresh"
    assert list((root / "tests").glob("test_*.yaml"))
    r = run_cli("-C", str(root), "--json", "test")
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    assert doc["passed"] >= 1 and doc["failed"] == 0
    assert {c["node"] for c in doc["cases"]} >= {"clean_orders", "customer_value"}
    assert not (root / ".odibi").exists()


# -- the pytest plugin -----------------------------------------------------------------------------
def test_pytest_collects_and_runs_the_yaml_cases(proj) -> None:
    root = proj(SQL_PASS, SQL_FAIL, PY_PASS, extra={
        "tests/test_plain.py": "def test_python_side():\n    assert True\n",
        "tests/fixtures/test_not_a_test.yaml": "rows: [1, 2]\n",  # no top-level tests: key
        "test_outside_tests_dir.yaml": "tests: []\n"})
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTEST_ADDOPTS")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v"],
                         cwd=root, capture_output=True, text=True, env=env, timeout=300)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "tests/test_units.yaml::drops_non_positive PASSED" in out
    assert "tests/test_units.yaml::sums_per_customer PASSED" in out
    assert "tests/test_units.yaml::wrong_amount FAILED" in out
    assert "tests/test_plain.py::test_python_side PASSED" in out
    assert "not_a_test" not in out and "outside_tests_dir" not in out
    assert "1 failed, 3 passed" in out
    assert not (root / ".odibi").exists()
    # the failure shows the same row diff as odibi test
    assert ["~", "1", "7", "11.0", "->", "10.0"] in [line.split() for line in out.splitlines()]
    opted_out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                "-p", "no:odibi", "-q"], cwd=root, capture_output=True,
                               text=True, env=env, timeout=300)
    assert opted_out.returncode == 0 and "1 passed" in opted_out.stdout, opted_out.stdout
    # a bad test file is a collection error (pytest then runs nothing), located, with a hint
    write_files(root, {"tests/sub/test_bad.yaml": "tests:\n  - name: b\n    node: clean_ordrs\n"
                                                  "    expect: {rows: []}\n"})
    bad = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                         cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2, bad.stdout
    assert "tests/sub/test_bad.yaml:3:11: error: test 'b': no node named 'clean_ordrs'" \
        in bad.stdout
    assert "hint: did you mean 'clean_orders'?" in bad.stdout


def test_pytest_runs_cases_on_fixture_files(proj) -> None:
    """The plugin's one scratch engine reaches the fixture files of every collected case
    (given and expected, in any test file), as `odibi test` does."""
    case = """
        - name: {name}
          node: clean_orders
          given:
            raw_orders:
              file: {given}
          expect:
            file: {expect}
    """
    root = proj(case.format(name="from_csv", given="fixtures/orders.csv",
                            expect="fixtures/expected.csv"), extra={
        "tests/fixtures/orders.csv": "order_id,customer_id,amount\n1,7,2.5\n2,8,-1.0\n",
        "tests/fixtures/expected.csv": "order_id,customer_id,amount\n1,7,2.5\n",
        "tests/fixtures/more.csv": "order_id,customer_id,amount\n3,9,4.0\n",
        "tests/sub/test_more.yaml": _test_file(
            case.format(name="from_more", given="../fixtures/more.csv",
                        expect="../fixtures/more.csv"))})
    assert odibi_test(root).code == 0
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "PYTEST_ADDOPTS")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v"],
                         cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tests/test_units.yaml::from_csv PASSED" in run.stdout
    assert "tests/sub/test_more.yaml::from_more PASSED" in run.stdout
