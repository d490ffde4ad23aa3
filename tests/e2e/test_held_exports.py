"""Circuit breakers guard exports (issue #15 part 2: write, audit, publish).

A node's `write:` waits for every halting check that reads the node (directly or through
other nodes). A failing halt check holds those exports back: the previous file stays
byte-identical, the summary and `--json` say which and why; a `warn` check holds nothing;
exports no check guards are written; dependants in the warehouse still read the new
output. A build killed between the check and the export writes the export next time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_files
from tests.e2e.test_executor import build, outcomes, subprocess_env

PROJECT = """
    project: guarded
    connections:
      raw: {type: local, base_path: data}
      out: {type: local, base_path: out}
    nodes:
      - name: raw_orders
        read: {connection: raw, path: orders.csv}
      - name: orders
        sql: SELECT order_id, amount FROM raw_orders
        write: {connection: out, path: orders.csv}
      - name: big_orders                      # reads orders: the check below guards orders
        sql: SELECT * FROM orders WHERE amount >= 100
        write: {connection: out, path: big_orders.csv}
      - name: totals                          # no check reads it: never held
        sql: SELECT count(*) AS n, sum(amount) AS total FROM raw_orders
        write: {connection: out, path: totals.csv}
    checks:
      - name: amounts_sane                    # through big_orders, it reads orders too
        assert: max(big_orders.amount) < 1000 and row_count(orders) > 0
        on_fail: halt
      - name: few_orders
        assert: row_count(orders) < 3
        on_fail: warn
"""
GOOD = "order_id,amount\n1,10\n2,200\n"
BAD = GOOD + "3,5000\n"
FIXED = GOOD + "4,300\n"


def make(tmp_path: Path, data: str = GOOD) -> Path:
    return write_files(tmp_path / "p", {"odibi.yaml": PROJECT, "data/orders.csv": data})


def later(path: Path, text: str) -> None:
    """Write `text`, making sure the file's mtime moves (odibi compares stat first)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    while path.stat().st_mtime_ns == before:
        time.sleep(0.01)
        path.write_text(text)


def files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "out").iterdir())}


def guarded(found: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in found.items() if k != "totals.csv"}


def show(root: Path, node: str) -> list[dict]:
    r = run_cli("-C", str(root), "show", node, "--json", "--limit", "100")
    assert r.code == 0, r.text
    return json.loads(r.out)["data"]


def test_a_failing_halt_check_holds_back_the_exports_it_guards(tmp_path: Path) -> None:
    root = make(tmp_path)
    first = build(root)
    assert first["ok"] and "held_exports" not in first
    before = files(root)
    assert before["orders.csv"] == b"order_id,amount\n1,10\n2,200\n"

    later(root / "data" / "orders.csv", BAD)
    r = run_cli("-C", str(root), "build")
    assert r.code == 1, r.text
    held = [line.strip() for line in r.out.splitlines() if "held back" in line]
    assert held == [
        "held back: out/orders.csv (orders): check amounts_sane failed; the previous file is kept",
        "held back: out/big_orders.csv (big_orders): check amounts_sane failed; the previous "
        "file is kept"]
    now = files(root)
    assert now["orders.csv"] == before["orders.csv"]  # byte-identical
    assert now["big_orders.csv"] == before["big_orders.csv"]
    assert now["totals.csv"] != before["totals.csv"]  # no check guards it: written
    assert now["totals.csv"] == b"n,total\n3,5210\n"
    # inside the warehouse, dependants read the new output (the check needed it)
    assert {row["order_id"] for row in show(root, "orders")} == {1, 2, 3}
    assert {row["order_id"] for row in show(root, "big_orders")} == {2, 3}
    assert not list((root / "out").glob(".*odibi-tmp*"))


def test_held_exports_are_named_in_json_and_stay_held_until_the_check_passes(
        tmp_path: Path) -> None:
    root = make(tmp_path)
    build(root)
    before = files(root)
    later(root / "data" / "orders.csv", BAD)
    report = build(root, code=1)
    assert report["halted_by"] == "amounts_sane"
    assert report["held_exports"] == [
        {"node": "orders", "paths": ["out/orders.csv"], "check": "amounts_sane",
         "reason": "check amounts_sane failed"},
        {"node": "big_orders", "paths": ["out/big_orders.csv"], "check": "amounts_sane",
         "reason": "check amounts_sane failed"}]
    assert report["nodes"]["orders"]["held_by"] == "amounts_sane"
    assert report["nodes"]["orders"]["outcome"] == "built"
    # nothing changed: the check runs again (its last build failed) and holds them again
    r = run_cli("-C", str(root), "explain")
    assert "orders" in r.out and "re-export: export held back: amounts_sane" in r.out
    assert "export waits for: amounts_sane" in r.out
    report = build(root, code=1)
    # (few_orders may have been stopped by the halt last time: it may run now)
    assert {n: o for n, o in outcomes(report).items() if n != "few_orders"} == {
        "amounts_sane": "failed"}
    assert [h["node"] for h in report["held_exports"]] == ["orders", "big_orders"]
    assert guarded(files(root)) == guarded(before)
    # fixed data: the check passes and the exports are written
    later(root / "data" / "orders.csv", FIXED)
    report = build(root)
    assert report["ok"] and "held_exports" not in report
    assert files(root)["orders.csv"] == b"order_id,amount\n1,10\n2,200\n4,300\n"
    assert files(root)["big_orders.csv"] == b"order_id,amount\n2,200\n4,300\n"
    assert run_cli("-C", str(root), "explain").out.splitlines()[-1].startswith("0 to run")


def test_explain_and_plan_show_the_hold(tmp_path: Path) -> None:
    root = make(tmp_path)
    build(root)
    later(root / "data" / "orders.csv", FIXED)
    r = run_cli("-C", str(root), "explain", "orders")
    assert r.code == 0, r.text
    lines = [" ".join(line.split()) for line in r.out.splitlines()]
    at = lines.index("orders rebuild: upstream rebuilt: raw_orders")
    assert lines[at + 1:at + 3] == [
        "orders <- raw_orders <- source changed: data/orders.csv (27 B -> 33 B)",
        "export waits for: amounts_sane"]
    dry = run_cli("-C", str(root), "build", "-n", "orders")
    assert "    export waits for: amounts_sane" in dry.out.splitlines()
    doc = json.loads(run_cli("-C", str(root), "--json", "explain").out)
    waits = {n["node"]: n["export_waits"] for n in doc["nodes"] if n["export_waits"]}
    assert waits == {"orders": ["amounts_sane"], "big_orders": ["amounts_sane"]}
    saved = tmp_path / "plan.json"
    assert run_cli("-C", str(root), "plan", "-o", str(saved)).code == 0
    planned = {n["node"]: n.get("export_waits") for n in json.loads(saved.read_text())["nodes"]}
    assert planned["orders"] == ["amounts_sane"] and planned["totals"] is None


def test_building_a_guarded_node_runs_its_check_before_writing(tmp_path: Path) -> None:
    """`odibi build orders` brings the check that guards its export into the build (and, with
    --only, the check alone), so the export is never written unchecked."""
    root = make(tmp_path)
    build(root)
    before = files(root)
    later(root / "data" / "orders.csv", BAD)
    for argv in (["orders"], ["--only", "raw_orders", "orders"]):
        report = build(root, *argv, code=1)
        assert report["nodes"]["amounts_sane"]["outcome"] == "failed"
        assert files(root)["orders.csv"] == before["orders.csv"]


def test_a_warn_check_holds_nothing(tmp_path: Path) -> None:
    root = make(tmp_path)
    build(root)
    later(root / "data" / "orders.csv", FIXED)  # 3 orders: few_orders warns
    r = run_cli("-C", str(root), "build")
    assert r.code == 0, r.text
    assert "warning check few_orders" in r.err
    assert files(root)["orders.csv"] == b"order_id,amount\n1,10\n2,200\n4,300\n"


def test_with_the_check_passing_every_export_is_written_once(tmp_path: Path) -> None:
    root = make(tmp_path)
    report = build(root)
    assert set(files(root)) == {"orders.csv", "big_orders.csv", "totals.csv"}
    assert outcomes(report)["orders"] == "built"
    state = build(root)
    assert outcomes(state) == {}  # nothing held over: nothing to re-export


# -- kill -9 between the check and the export --------------------------------------------------
def big_orders_csv(n: int, bad: bool) -> str:
    rows = "".join(f"{i},{(i * 37) % 900 + 100}\n" for i in range(n))
    return "order_id,amount\n" + rows + ("999999999,5000\n" if bad else "")


def start(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "odibi", "-C", str(root), "build", "-j", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=subprocess_env())


def kill_when(proc: subprocess.Popen, ready, *, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return True
    proc.wait(30)
    return False


@pytest.mark.slow
def test_killed_between_the_check_and_the_export_the_next_build_writes_it(
        tmp_path: Path) -> None:
    root = make(tmp_path, big_orders_csv(400_000, bad=False))
    clean = make(tmp_path / "clean", big_orders_csv(400_000, bad=False))
    build(clean)
    want = files(clean)
    out = root / "out"
    out.mkdir()
    # the export of orders only starts once amounts_sane has passed: kill it in the write
    proc = start(root)
    killed = kill_when(proc, lambda: any(p.name.startswith(".orders.csv.odibi-tmp")
                                         for p in out.iterdir()))
    assert killed, proc.stderr.read().decode() if proc.stderr else ""
    assert not (out / "orders.csv").exists()
    r = run_cli("-C", str(root), "explain", "orders")
    assert "re-export: export held back: amounts_sane" in r.out, r.out
    report = build(root)
    assert outcomes(report)["orders"] == "exported"
    assert "amounts_sane" not in outcomes(report)  # it had passed, and its verdict is kept
    assert files(root) == want
    assert not list(out.glob(".*odibi-tmp*")), "the killed write's temp file was left behind"


@pytest.mark.slow
def test_killed_at_any_moment_a_failing_check_never_lets_the_data_out(tmp_path: Path) -> None:
    root = make(tmp_path, big_orders_csv(200_000, bad=False))
    build(root)
    before = files(root)
    later(root / "data" / "orders.csv", big_orders_csv(200_000, bad=True))
    rng = random.Random(15)
    for _ in range(4):
        proc = start(root)
        due = time.monotonic() + rng.uniform(0.2, 2.5)
        kill_when(proc, lambda: time.monotonic() >= due)
        assert guarded(files(root)) == guarded(before)
    build(root, code=1)
    assert files(root)["orders.csv"] == before["orders.csv"]
    assert files(root)["big_orders.csv"] == before["big_orders.csv"]
