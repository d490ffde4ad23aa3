"""`odibi test` on a project whose SQL is Spark SQL (`sql_dialect: spark`): its cases run on
a local Spark session (started once per run), through the real CLI. Spark is slow to start
(~5-8 s, far more on a busy machine): the module makes two Spark runs, and each test below
reads what they printed. A project whose SQL is DuckDB's runs its cases on DuckDB whatever
its targets (no JVM)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: s
        sql_dialect: spark
        connections:
          raw: {type: local, base_path: data}
        vars:
          min_amount: 0
        nodes:
          - name: orders
            read: {connection: raw, path: orders.csv}
          - name: customers
            read: {connection: raw, path: customers.csv}
          - name: people
            read: {connection: raw, path: people.json}
          # array_join, size, date_format, try_element_at: Spark SQL functions DuckDB does not have
          - name: tagged
            sql: |
              SELECT order_id, customer_id, array_join(tags, '|') AS tags, size(tags) AS n, amount
              FROM orders WHERE amount > ${vars.min_amount}
          - name: named
            sql: |
              SELECT t.order_id, c.name, t.amount, date_format(c.since, 'yyyy-MM') AS since
              FROM tagged t JOIN customers c ON t.customer_id = c.customer_id
          - name: cities
            sql: |
              SELECT name, address.city AS city, address, try_element_at(tags, 1) AS first_tag,
                     year(seen) AS seen
              FROM people
          - name: strict
            sql: SELECT CAST(code AS INT) AS code FROM orders
          - name: totals
            python: transforms.totals:totals
        """,
    "data/orders.csv": "order_id,customer_id,amount\n1,7,2.5\n",
    "data/customers.csv": "customer_id,name\n7,Ada\n",
    "data/people.json": '{"name": "Ada"}\n',
    "transforms/__init__.py": "",
    # a Python node gets Spark DataFrames, and returns one
    "transforms/totals.py": """
        from pyspark.sql import functions as F


        def totals(named):
            return named.groupBy("name").agg(F.sum("amount").alias("amount"))
        """,
    "tests/fixtures/customers.csv": "customer_id,name,since\n7,Ada,2021-03-04\n8,Bob,2022-11-30\n",
    "tests/test_spark.yaml": """
        tests:
          - name: joins_tags
            node: tagged
            given:
              orders:
                rows:
                  - {order_id: 1, customer_id: 7, tags: [a, b], amount: 2.5}
                  - {order_id: 2, customer_id: 7, tags: [c], amount: -1.0}
                schema: {tags: 'ARRAY<STRING>'}
            expect:
              rows: [{order_id: 1, customer_id: 7, tags: a|b, n: 2, amount: 2.5}]
          - name: wrong_amount
            node: tagged
            given:
              orders:
                rows:
                  - {order_id: 1, customer_id: 7, tags: [a, b], amount: 10.0}
                  - {order_id: 2, customer_id: 8, tags: [y], amount: 3.0}
                  - {order_id: 3, customer_id: 9, tags: [x], amount: 4.0}
            expect:
              rows:
                - {order_id: 1, customer_id: 7, tags: a|b, n: 2, amount: 11.0}
                - {order_id: 2, customer_id: 8, tags: y, n: 1, amount: 3.0}
                - {order_id: 9, customer_id: 9, tags: x, n: 1, amount: 9.0}
          - name: csv_text_and_file
            node: named
            given:
              tagged:
                csv: |
                  order_id,customer_id,amount
                  1,7,2.5
                  2,8,3.5
              customers:
                file: fixtures/customers.csv
            expect:
              rows:
                - {order_id: 2, name: Bob, amount: 3.5, since: 2022-11}
                - {order_id: 1, name: Ada, amount: 2.5, since: 2021-03}
          - name: parquet_file
            node: named
            given:
              tagged: {file: fixtures/tagged.parquet}
              customers:
                rows: [{customer_id: 7, name: Ada, since: 2020-01-31}]
            expect:
              rows: [{order_id: 5, name: Ada, amount: 1.25, since: 2020-01}]
          - name: structs_lists_timestamps
            node: cities
            given:
              people:
                rows:
                  - {name: Ada, address: {city: London, zip: N1}, tags: [x, y], seen: 2021-03-04 10:30:00}
                  - {name: Bob, address: {city: Paris, zip: P2}, tags: [z], seen: 2019-12-31 23:00:00}
                  - {name: "O'Brien", address: {city: 'C:\\dir', zip: null}, tags: [], seen: null}
            expect:
              rows:
                - {name: Ada, city: London, address: {city: London, zip: N1}, first_tag: x, seen: 2021}
                - {name: Bob, city: Paris, address: {city: Paris, zip: P2}, first_tag: z, seen: 2019}
                - {name: "O'Brien", city: 'C:\\dir', address: {city: 'C:\\dir', zip: null}, first_tag: null, seen: null}
          - name: schema_casts
            node: totals
            given:
              named:
                rows: [{order_id: 1, name: Ada, amount: '1.25'}, {order_id: 2, name: Ada, amount: '2'}]
                schema: {amount: 'DECIMAL(10,2)'}
            expect:
              rows: [{name: Ada, amount: 3.25}]
          - name: python_node_wrong
            node: totals
            given:
              named:
                rows: [{order_id: 1, name: Ada, amount: 1.5}, {order_id: 2, name: Ada, amount: 2.0}]
            expect:
              rows: [{name: Ada, amount: 4.0}]
          - name: spark_cast_error
            node: strict
            given:
              orders:
                rows: [{code: 'x'}]
            expect: {error: CAST_INVALID_INPUT}
        """,
}
PASSING = {"joins_tags": "tagged", "csv_text_and_file": "named", "parquet_file": "named",
           "structs_lists_timestamps": "cities", "schema_casts": "totals",
           "spark_cast_error": "strict"}


def _write(root: Path) -> Path:
    import duckdb

    write_files(root, PROJECT)
    con = duckdb.connect()
    con.execute("COPY (SELECT 5 AS order_id, 7 AS customer_id, 1.25 AS amount) TO "
                f"'{root / 'tests/fixtures/tagged.parquet'}' (FORMAT parquet)")
    con.close()
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two runs of `odibi test` on one Spark project: every case, then the passing nodes."""
    root = _write(tmp_path_factory.mktemp("spark_test") / "p")
    before = _files(root)
    every = run_cli("-C", str(root), "test")
    passing = run_cli("-C", str(root), "test", "--json", "named", "cities", "strict")
    return {"root": root, "before": before, "after": _files(root), "every": every,
            "passing": passing}


def _lines(result: CliResult) -> list[list[str]]:
    return [line.split() for line in result.out.splitlines()]


def test_cases_run_on_spark_and_pass(runs) -> None:
    every = runs["every"]
    assert isinstance(every, CliResult)
    for name, node in PASSING.items():
        assert f"PASS tests/test_spark.yaml::{name} ({node})" in every.out, every.text
    assert "6 passed, 2 failed" in every.out, every.text
    assert every.code == 1, every.text


def test_a_failing_sql_case_shows_the_row_diff_as_on_duckdb(runs) -> None:
    every = runs["every"]
    assert isinstance(every, CliResult)
    assert "FAIL tests/test_spark.yaml::wrong_amount (tagged)" in every.out
    assert "1 missing, 1 unexpected, 1 changed (expected 3 rows, got 3)" in every.out
    lines = _lines(every)
    assert ["~", "1", "7", "'a|b'", "2", "11.0", "->", "10.0"] in lines, every.out
    assert ["-", "9", "9", "'x'", "1", "9.0"] in lines
    assert ["+", "3", "9", "'x'", "1", "4.0"] in lines
    assert ["2", "8", "'y'", "1", "3.0"] not in [line[1:] for line in lines]


def test_a_failing_python_case_shows_the_row_diff(runs) -> None:
    every = runs["every"]
    assert isinstance(every, CliResult)
    assert "FAIL tests/test_spark.yaml::python_node_wrong (totals)" in every.out
    assert ["~", "'Ada'", "4.0", "->", "3.5"] in _lines(every), every.out


def test_selected_passing_cases_exit_0(runs) -> None:
    import json

    passing = runs["passing"]
    assert isinstance(passing, CliResult)
    assert passing.code == 0, passing.text
    report = json.loads(passing.out)
    assert report["passed"] == 4 and report["failed"] == 0
    assert {c["name"] for c in report["cases"]} == {"csv_text_and_file", "parquet_file",
                                                    "structs_lists_timestamps",
                                                    "spark_cast_error"}


def test_nothing_is_written_into_the_project(runs) -> None:
    assert runs["after"] == runs["before"]


# -- a project whose SQL is DuckDB's: DuckDB, whatever its targets ----------------------------
def test_duckdb_sql_runs_on_duckdb_even_on_a_spark_target(tmp_path: Path) -> None:
    """strftime and list_value are DuckDB's (Spark has neither): the case passes on DuckDB
    with the Spark target chosen, and no Spark starts (it would need a warehouse, a JVM)."""
    root = write_files(tmp_path / "d", {
        "odibi.yaml": """
            project: d
            targets:
              dev: {engine: duckdb}
              prod: {engine: spark, master: "spark://127.0.0.1:1"}
            connections:
              raw: {type: local, base_path: data}
            nodes:
              - name: orders
                read: {connection: raw, path: orders.csv}
              - name: dated
                sql: SELECT strftime(day, '%Y') AS y, list_value(id, id) AS ids FROM orders
            """,
        "data/orders.csv": "id,day\n1,2024-01-02\n",
        "tests/test_d.yaml": textwrap.dedent("""
            tests:
              - name: years
                node: dated
                given:
                  orders: {rows: [{id: 1, day: 2024-01-02}]}
                expect:
                  rows: [{y: '2024', ids: [1, 1]}]
            """),
    })
    for argv in ((), ("--target", "prod")):
        r = run_cli("-C", str(root), *argv, "test")
        assert r.code == 0, r.text
        assert "1 passed, 0 failed" in r.out
    assert not (root / ".odibi").exists()
