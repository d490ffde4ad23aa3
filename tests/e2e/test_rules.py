"""Contracts, validations and checks (DESIGN.md §1, §4, §6) through the real CLI.

The project below has a Python transform that appends to `calls.txt` each time it runs,
so a test can prove that a failing contract stopped it from running at all, and that a
rule change re-ran only the rules.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: rules
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv}
            contracts:
              - has_columns(order_id, amount)
          - name: scored
            python: transforms.score:score
            contracts:
              - row_count > 0
              - not_null(raw_orders.order_id)
            validate:
              - all(amount > 0)
              - unique(order_id)
            write: {connection: out, path: scored.csv}
          - name: other
            read: {connection: raw, path: other.csv}
          - name: slow
            python: transforms.score:slow
          - name: after_slow
            sql: SELECT * FROM slow
        checks:
          - name: enough_orders
            assert: row_count(raw_orders) >= 2
            on_fail: halt
        """,
    "transforms/score.py": """
        import time
        from pathlib import Path

        ROOT = Path(__file__).resolve().parent.parent


        def score(raw_orders):
            with open(ROOT / "calls.txt", "a") as f:
                f.write("score\\n")
            return raw_orders.assign(amount=raw_orders["amount"] * 2)


        def slow(other):
            time.sleep(float((ROOT / "data" / "sleep.txt").read_text()))
            return other
        """,
    "transforms/__init__.py": "",
    "data/orders.csv": "order_id,amount\n1,10\n2,20\n",
    "data/other.csv": "x\n1\n",
    "data/sleep.txt": "0",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_files(tmp_path / "rules", PROJECT)


def odibi(root: Path, *argv: str):
    return run_cli("-C", str(root), *argv)


def build(root: Path, *argv: str, code: int = 0) -> tuple[dict[str, Any], str]:
    """(the --json report, stderr)."""
    r = odibi(root, "build", "--json", "-j", "2", *argv)
    assert r.code == code, r.text
    return json.loads(r.out), r.err


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {n: v["outcome"] for n, v in report["nodes"].items() if "outcome" in v}


def calls(root: Path) -> int:
    path = root / "calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def write(path: Path, text: str) -> None:
    """Write with a later mtime, so the file-digest cache sees the edit whatever its size."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    write(path, text.replace(old, new))


def warehouse_rows(root: Path, table: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(f"SELECT * FROM main.{table} ORDER BY ALL").fetchall()
    finally:
        con.close()


# -- contracts: checked before the transform ---------------------------------------------------
def test_a_failing_contract_stops_the_transform_and_names_the_values(root: Path) -> None:
    write(root / "data" / "orders.csv", "order_id,amount\n")
    write(root / "odibi.yaml", (root / "odibi.yaml").read_text().replace(">= 2", ">= 0"))
    report, err = build(root, code=1)
    assert calls(root) == 0, "the transform ran although its contract failed"
    assert outcomes(report)["scored"] == "failed"
    assert report["nodes"]["scored"]["error"] == \
        "contract failed: row_count > 0 failed on raw_orders: row_count = 0"
    assert "failed scored: contract failed: row_count > 0 failed on raw_orders: " \
           "row_count = 0" in err
    # independent work went on (keep-going), and nothing of scored was committed
    assert outcomes(report)["after_slow"] == "built"
    assert not (root / "output" / "scored.csv").exists()


def test_a_contract_on_a_qualified_input_counts_the_offending_rows(root: Path) -> None:
    write(root / "data" / "orders.csv", "order_id,amount\n1,10\n,20\n,30\n")
    report, _ = build(root, code=1)
    assert calls(root) == 0
    assert report["nodes"]["scored"]["error"] == (
        "contract failed: not_null(raw_orders.order_id) failed on raw_orders: rows with nulls "
        "= 2, e.g. {amount: 20, order_id: null}, {amount: 30, order_id: null}")


def test_a_read_nodes_contract_holds_for_the_data_read(root: Path) -> None:
    write(root / "data" / "orders.csv", "order_id,total\n1,10\n2,20\n")
    report, _ = build(root, code=1)
    assert outcomes(report)["raw_orders"] == "failed"
    assert report["nodes"]["raw_orders"]["error"] == (
        "contract failed: has_columns(order_id, amount) failed on raw_orders: "
        "missing = 'amount'")
    assert outcomes(report)["scored"] == "blocked"
    assert calls(root) == 0


# -- validations: checked before the output is committed ----------------------------------------
def test_a_failing_validation_keeps_the_previous_output_and_export(root: Path) -> None:
    build(root)
    export = (root / "output" / "scored.csv").read_bytes()
    before = warehouse_rows(root, "scored")
    assert before == [(1, 20), (2, 40)]
    write(root / "data" / "orders.csv", "order_id,amount\n1,10\n2,20\n3,-1\n3,5\n")
    report, err = build(root, code=1)
    assert calls(root) == 2  # it ran, and its output was refused
    assert report["nodes"]["scored"]["error"] == (
        "validation failed: all(amount > 0) failed on scored: rows where it is false = 1, e.g. "
        "{amount: -2}; unique(order_id) failed on scored: duplicate rows = 1, e.g. 3 (x2)")
    assert (root / "output" / "scored.csv").read_bytes() == export
    assert warehouse_rows(root, "scored") == before
    # the next build tries again (its last build failed), and succeeds once the data is fixed
    plan = next(n for n in json.loads(odibi(root, "explain", "--json", "scored").out)["nodes"]
                if n["node"] == "scored")
    assert plan["status"] == "rebuild"
    assert plan["reasons"][0]["summary"] == "last build failed"
    write(root / "data" / "orders.csv", "order_id,amount\n1,10\n2,20\n3,7\n")
    report, _ = build(root)
    assert warehouse_rows(root, "scored") == [(1, 20), (2, 40), (3, 14)]


def test_changing_only_a_rule_reruns_it_on_the_stored_output_never_the_transform(
        root: Path) -> None:
    build(root)
    assert calls(root) == 1
    yaml_file = root / "odibi.yaml"
    # a validation that the stored output breaks: the build fails without recomputing
    edit(yaml_file, "- all(amount > 0)", "- all(amount > 30)")
    plan = {e["node"]: e for e in json.loads(odibi(root, "explain", "--json").out)["nodes"]}
    assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {"scored": "revalidate"}
    report, _ = build(root, code=1)
    assert calls(root) == 1
    assert report["nodes"]["scored"]["error"] == (
        "validation failed: all(amount > 30) failed on scored: rows where it is false = 1, "
        "e.g. {amount: 20}")
    # a contract that the stored input breaks: likewise
    edit(yaml_file, "- all(amount > 30)", "- all(amount > 0)")
    edit(yaml_file, "- row_count > 0", "- row_count > 5")
    report, _ = build(root, code=1)
    assert calls(root) == 1
    assert report["nodes"]["scored"]["error"] == \
        "contract failed: row_count > 5 failed on raw_orders: row_count = 2"
    # and rules that hold: revalidated, nothing recomputed, then up to date
    edit(yaml_file, "- row_count > 5", "- row_count >= 2")
    report, _ = build(root)
    assert outcomes(report) == {"scored": "revalidated"}
    assert calls(root) == 1
    report, _ = build(root)
    assert outcomes(report) == {}


# -- checks: nodes of the DAG -------------------------------------------------------------------
def test_a_halting_check_stops_branches_that_had_not_started(root: Path) -> None:
    write(root / "data" / "sleep.txt", "2")  # slow keeps a worker busy while the check fails
    edit(root / "odibi.yaml", ">= 2", ">= 3")
    report, err = build(root, code=1)
    got = outcomes(report)
    assert got["enough_orders"] == "failed"
    assert report["nodes"]["enough_orders"]["error"] == \
        "row_count(raw_orders) >= 3 failed on raw_orders: row_count(raw_orders) = 2"
    assert report["halted_by"] == "enough_orders"
    assert got["after_slow"] == "not started", "a node started after a halting check failed"
    # slow was running, or had not started yet. Running, the halt interrupts its DuckDB
    # work (reading its input, storing its result); a Python call itself runs to its end
    assert got["slow"] in ("built", "interrupted", "not started")
    plain = odibi(root, "build", "enough_orders")  # the summary says why the build stopped
    assert plain.code == 1
    assert "check enough_orders failed: the build was halted" in plain.out
    # the next build (check fixed) finishes the job
    edit(root / "odibi.yaml", ">= 3", ">= 2")
    write(root / "data" / "sleep.txt", "0")
    report, _ = build(root)
    assert "after_slow" in outcomes(report)
    assert outcomes(report)["enough_orders"] == "passed"
    assert ("slow" in outcomes(report)) == (got["slow"] != "built")  # finished work stays


def test_a_warning_check_reports_and_goes_on(root: Path) -> None:
    edit(root / "odibi.yaml", ">= 2\n    on_fail: halt", ">= 3\n    on_fail: warn")
    report, err = build(root)
    got = outcomes(report)
    assert got["enough_orders"] == "warned"
    assert {got[n] for n in ("raw_orders", "scored", "other", "slow", "after_slow")} == {"built"}
    assert re.search(r"warning.*check enough_orders: row_count\(raw_orders\) >= 3 failed on "
                     r"raw_orders: row_count\(raw_orders\) = 2", err)
    # warned checks are not re-run until what they read changes, but they keep saying so
    report, _ = build(root)
    assert outcomes(report) == {}
    plan = {e["node"]: e for e in json.loads(odibi(root, "explain", "--json").out)["nodes"]}
    assert plan["enough_orders"]["status"] == "up-to-date"
    assert "last run warned" in json.dumps(plan["enough_orders"])


def test_checks_are_in_explain_and_the_lock(root: Path) -> None:
    build(root)
    plan = {e["node"]: e for e in json.loads(odibi(root, "explain", "--json").out)["nodes"]}
    assert plan["enough_orders"]["status"] == "up-to-date"
    lock = (root / "odibi.lock").read_text()
    assert "enough_orders" in lock
    write(root / "data" / "orders.csv", "order_id,amount\n1,10\n2,20\n3,30\n")
    plan = {e["node"]: e for e in json.loads(odibi(root, "explain", "--json").out)["nodes"]}
    assert plan["enough_orders"]["status"] == "rebuild"
    assert plan["enough_orders"]["reasons"][0]["summary"] == "upstream rebuilt: raw_orders"
