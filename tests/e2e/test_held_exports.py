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
         "cause": "failed", "reason": "check amounts_sane failed"},
        {"node": "big_orders", "paths": ["out/big_orders.csv"], "check": "amounts_sane",
         "cause": "failed", "reason": "check amounts_sane failed"}]
    assert report["nodes"]["orders"]["held_by"] == "amounts_sane"
    assert report["nodes"]["orders"]["outcome"] == "built"
    # nothing changed: the check runs again (its last build failed) and holds them again
    r = run_cli("-C", str(root), "explain")
    assert "orders" in r.out and "re-export: export held back: amounts_sane" in r.out
    assert "export waits for: amounts_sane" in r.out
    # what the halt stopped last time (few_orders, totals, if they were running or not yet
    # started) runs now; nothing else but the check
    stopped = {n for n, o in outcomes(report).items() if o in ("interrupted", "not started")}
    report = build(root, code=1)
    assert {n: o for n, o in outcomes(report).items() if n not in stopped} == {
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


# -- what the review found ------------------------------------------------------------------
def small(tmp_path: Path, nodes: str, checks: str = "", data: str = "id,v\n1,10\n2,20\n") -> Path:
    return write_files(tmp_path / "s", {"odibi.yaml": f"""
        project: s
        connections:
          raw: {{type: local, base_path: data}}
          out: {{type: local, base_path: out}}
        nodes:
{nodes}
        checks:
{checks or "          []"}
        """.replace("checks:\n          []", ""), "data/a.csv": data})


SRC = """\
          - name: src
            read: {connection: raw, path: a.csv}
"""


def test_a_reconciliation_of_a_node_with_its_own_file_does_not_hold_the_file(
        tmp_path: Path) -> None:
    """The check reads the node and the read of its export: it needs the file, so it cannot
    guard it (waiting for it would never end)."""
    root = small(tmp_path, SRC + """\
          - name: a
            sql: SELECT * FROM src
            write: {connection: out, path: a.csv}
          - name: a_file
            read: {connection: out, path: a.csv}
""", """\
          - name: recon
            assert: row_count(a) == row_count(a_file)
            on_fail: halt
""")
    report = build(root)
    assert outcomes(report) == {"src": "built", "a": "built", "a_file": "built",
                                "recon": "passed"}
    assert (root / "out" / "a.csv").read_text() == "id,v\n1,10\n2,20\n"


def test_only_a_read_of_a_held_export_is_blocked_not_built_from_the_old_file(
        tmp_path: Path) -> None:
    root = small(tmp_path, SRC + """\
          - name: a
            sql: SELECT * FROM src
            write: {connection: out, path: a.csv}
          - name: r
            read: {connection: out, path: a.csv}
""", """\
          - name: chk
            assert: row_count(a) < 3
            on_fail: halt
""")
    build(root)
    later(root / "data" / "a.csv", "id,v\n1,10\n2,20\n3,30\n")
    report = build(root, code=1)
    assert report["held_exports"][0]["node"] == "a"
    assert report["nodes"]["r"]["outcome"] == "blocked"  # by the check that held its file
    assert report["nodes"]["r"]["because"] == "chk"
    only = run_cli("-C", str(root), "build", "--only", "r")
    assert only.code == 1
    assert ("blocked r: the export of a it reads is held back (the file is older than its "
            "node); build without --only to write it") in only.err, only.text
    r = run_cli("-C", str(root), "--json", "explain", "--only", "r")
    (entry,) = json.loads(r.out)["nodes"]
    assert (entry["status"], entry["reasons"][0]["summary"]) == ("blocked",
                                                                 "export held back: a")
    # the check is relaxed: the file is written, then read
    (root / "odibi.yaml").write_text((root / "odibi.yaml").read_text().replace("< 3", "< 10"))
    report = build(root)
    assert report["ok"]
    assert [row["id"] for row in show(root, "r")] == [1, 2, 3]


def test_only_a_guard_that_reads_the_node_through_another_still_sees_the_new_output(
        tmp_path: Path) -> None:
    root = small(tmp_path, SRC + """\
          - name: a
            sql: SELECT id, v * 10 AS amount FROM src
            write: {connection: out, path: a.csv}
          - name: b
            sql: SELECT * FROM a
""", """\
          - name: chk
            assert: max(b.amount) < 1000
            on_fail: halt
""")
    build(root)
    before = (root / "out" / "a.csv").read_bytes()
    text = (root / "odibi.yaml").read_text()
    (root / "odibi.yaml").write_text(text.replace("v * 10", "v * 5000"))
    report = build(root, "--only", "a", code=1)
    assert outcomes(report) == {"a": "built", "b": "built", "chk": "failed"}
    assert (root / "out" / "a.csv").read_bytes() == before


def test_a_node_released_by_a_batch_of_restores_runs_once(tmp_path: Path) -> None:
    root = small(tmp_path, SRC + """\
          - name: a
            sql: SELECT id, v + 1 AS v FROM src
          - name: b
            sql: SELECT * FROM a
            write: {connection: out, path: b.csv}
          - name: c
            sql: SELECT count(*) AS n FROM b
""", """\
          - name: chk
            assert: row_count(c) > 0
            on_fail: halt
""")
    build(root)
    text = (root / "odibi.yaml").read_text()
    (root / "odibi.yaml").write_text(text.replace("v + 1", "v + 2"))
    build(root)
    (root / "odibi.yaml").write_text(text)  # a revert: a, b, chk restored together
    trace = tmp_path / "trace.json"
    report = build(root, "-j", "2", "--force=c", "--profile", str(trace))
    assert report["ok"] and outcomes(report)["c"] == "built", report
    events = [e["name"] for e in json.loads(trace.read_text())["traceEvents"]
              if e.get("ph") == "X"]
    assert events.count("c") == 1
    assert (root / "out" / "b.csv").read_text() == "id,v\n1,11\n2,21\n"


def test_a_failed_export_fails_its_node_stops_a_fail_fast_build_and_is_rebuilt_next_time(
        tmp_path: Path) -> None:
    root = small(tmp_path, SRC + """\
          - name: a
            sql: SELECT * FROM src
            write: {connection: out, path: sub/a.csv}
""" + "".join(f"""\
          - name: x{i}
            sql: SELECT {i} AS i FROM src
""" for i in range(4)), """\
          - name: chk
            assert: row_count(a) > 0
            on_fail: halt
""")
    (root / "out").mkdir()
    (root / "out" / "sub").write_text("a file where a directory should be")
    r = run_cli("-C", str(root), "--json", "build", "-j", "1", "--fail-fast")
    assert r.code == 1, r.text
    report = json.loads(r.out)
    assert report["nodes"]["a"]["outcome"] == "failed"
    assert report["nodes"]["a"]["error"].startswith("export failed: cannot write")
    assert "held_exports" not in report
    started_after = [n for n, e in report["nodes"].items() if n.startswith("x")
                     and e.get("outcome") == "built"]
    assert len(started_after) < 4  # fail-fast: nothing new started after the failure
    assert "Traceback" not in r.text
    (root / "out" / "sub").unlink()
    report = build(root)
    assert report["nodes"]["a"]["reasons"][0] == "last build failed"
    assert (root / "out" / "sub" / "a.csv").read_text() == "id,v\n1,10\n2,20\n"


def test_a_node_blocked_upstream_is_blocked_not_held(tmp_path: Path) -> None:
    root = small(tmp_path, SRC + """\
          - name: z
            sql: SELECT CAST(CAST(v AS VARCHAR) || 'x' AS INTEGER) AS v FROM src
          - name: a
            sql: SELECT v FROM z
            write: {connection: out, path: a.csv}
""", """\
          - name: chk
            assert: row_count(a) > 0
            on_fail: halt
""")
    report = build(root, code=1)
    assert report["nodes"]["a"]["outcome"] == "blocked"
    assert "held_exports" not in report and "held_by" not in report["nodes"]["a"]
    r = run_cli("-C", str(root), "build")
    assert "held back" not in r.out


def test_rules_changed_with_a_write_run_before_the_files_are_rewritten(tmp_path: Path) -> None:
    node = """\
          - name: a
            sql: SELECT * FROM src
            write: {connection: out, path: a.csv}
"""
    root = small(tmp_path, SRC + node)
    build(root)
    text = (root / "odibi.yaml").read_text()
    (root / "odibi.yaml").write_text(text.replace(
        "out, path: a.csv}\n", "out, path: a2.csv}\n    validate: [row_count > 100]\n"))
    report = build(root, code=1)
    assert report["nodes"]["a"]["status"] == "re-export"
    assert "row_count > 100 failed" in report["nodes"]["a"]["error"]
    assert not (root / "out" / "a2.csv").exists()


def test_while_held_the_kept_file_is_still_watched(tmp_path: Path) -> None:
    root = make(tmp_path)
    build(root)
    later(root / "data" / "orders.csv", BAD)
    build(root, code=1)
    (root / "out" / "orders.csv").write_text("edited by hand\n")
    r = run_cli("-C", str(root), "explain", "orders")
    assert "output modified outside odibi: out/orders.csv" in r.out, r.out
