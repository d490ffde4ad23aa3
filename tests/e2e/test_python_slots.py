"""How Python nodes use the build's `-j` slots (README "Running builds"): a Python node
loads its inputs before it takes a slot and frees the slot as soon as its function
returns, while its worker stores and commits the output. What the user must still see:
never more than N functions at once, a timeout that counts only the node's own run, and
--fail-fast starting no function after the failure.

Each function appends `start end` (wall clock) to a file of its own in the project's
`calls/` folder, so the tests judge from what the functions saw, not from odibi.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.e2e.test_executor import finish, start_build, wait_for

NAP = '''
import time
import uuid
from pathlib import Path

import pandas as pd

CALLS = Path(__file__).resolve().parent.parent / "calls"


def _nap(seconds: float, tag: str) -> pd.DataFrame:
    start = time.time()
    time.sleep(seconds)
    CALLS.mkdir(exist_ok=True)
    (CALLS / f"{tag}-{uuid.uuid4().hex}.txt").write_text(f"{start} {time.time()}")
    return pd.DataFrame({"x": [1]})


def short(**inputs):
    return _nap(0.3, "short")


def tenth(**inputs):
    return _nap(0.1, "tenth")


def second(**inputs):
    return _nap(1.0, "second")


def boom(**inputs):
    raise RuntimeError("boom")
'''


def write(root: Path, package: str, nodes: list[str]) -> Path:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "nap.py").write_text(NAP)
    (root / "odibi.yaml").write_text(f"project: {package}\nnodes:\n" + "".join(nodes))
    return root


def node(name: str, package: str, function: str, *extra: str) -> str:
    return "".join([f"  - name: {name}\n", f"    python: {package}.nap:{function}\n",
                    *(f"    {line}\n" for line in extra)])


def calls(root: Path) -> list[tuple[str, float, float]]:
    out = []
    for f in sorted((root / "calls").glob("*.txt")) if (root / "calls").exists() else []:
        start, end = f.read_text().split()
        out.append((f.name.split("-")[0], float(start), float(end)))
    return out


def build(root: Path, *argv: str, code: int = 0) -> dict[str, Any]:
    r = run_cli("-C", str(root), "build", "--json", *argv)
    assert r.code == code, r.text
    return json.loads(r.out)


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {n: v["outcome"] for n, v in report["nodes"].items() if "outcome" in v}


def most_at_once(spans: list[tuple[str, float, float]]) -> int:
    edges = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_never_more_than_j_functions_at_once_and_all_j_used(tmp_path: Path) -> None:
    root = write(tmp_path / "p", "slots_j", [node(f"n{i}", "slots_j", "short")
                                             for i in range(6)])
    report = build(root, "-j", "2")
    assert outcomes(report) == {f"n{i}": "built" for i in range(6)}
    spans = calls(root)
    assert len(spans) == 6
    assert most_at_once(spans) == 2, spans


def test_a_timeout_counts_from_the_slot_not_from_the_wait_for_one(tmp_path: Path) -> None:
    # -j 1: `slow` goes first (it has a dependant, so its remaining path is longer) and
    # holds the only slot for 1 s while `quick` waits for it with its inputs loaded.
    # `quick`'s 0.6 s timeout must count from its own start, not from that wait.
    root = write(tmp_path / "p", "slots_t", [
        node("slow", "slots_t", "second"),
        "  - name: after_slow\n    sql: SELECT * FROM slow\n",
        node("quick", "slots_t", "tenth", "timeout: 0.6"),
    ])
    report = build(root, "-j", "1")
    assert outcomes(report) == {"slow": "built", "after_slow": "built", "quick": "built"}
    by_tag = {tag: (s, e) for tag, s, e in calls(root)}
    assert by_tag["tenth"][0] >= by_tag["second"][1] - 0.01, "quick overlapped slow at -j 1"


def test_fail_fast_starts_no_function_after_the_failure(tmp_path: Path) -> None:
    # `bad` has the longest remaining path; the five others are independent. With one
    # slot, at most one of them can have got it before `bad` did; once `bad` failed, none
    # may start, even one that was waiting for the slot with its inputs loaded.
    root = write(tmp_path / "p", "slots_f", [
        node("bad", "slots_f", "boom"),
        "  - name: b1\n    sql: SELECT * FROM bad\n",
        "  - name: b2\n    sql: SELECT * FROM b1\n",
        *(node(f"p{i}", "slots_f", "short") for i in range(5)),
    ])
    report = build(root, "-j", "1", "--fail-fast", code=1)
    got = outcomes(report)
    assert got["bad"] == "failed" and "boom" in report["nodes"]["bad"]["error"]
    assert got["b1"] == got["b2"] == "blocked"
    ran = len(calls(root))
    assert ran <= 1, calls(root)
    ps = {f"p{i}" for i in range(5)}
    assert sorted(got[p] for p in ps) == ["built"] * ran + ["not started"] * (5 - ran)

    (root / "slots_f" / "nap.py").write_text(NAP.replace('raise RuntimeError("boom")',
                                                         'return _nap(0.1, "fixed")'))
    again = build(root, "-j", "2")
    assert {n for n, o in outcomes(again).items() if o == "built"} == (
        {"bad", "b1", "b2"} | {p for p in ps if got[p] == "not started"})


def test_a_transform_that_cannot_be_imported_fails_its_node_only(tmp_path: Path) -> None:
    root = write(tmp_path / "p", "slots_i", [
        node("fine", "slots_i", "tenth"),
        "  - name: broken\n    python: slots_i.missing_module:f\n",
        "  - name: after\n    sql: SELECT * FROM broken\n",
    ])
    (root / "slots_i" / "missing_module.py").write_text("raise ImportError('no such lib')\n"
                                                        "def f():\n    pass\n")
    r = run_cli("-C", str(root), "build", "-j", "2")
    assert r.code == 1, r.text
    assert "cannot import slots_i.missing_module" in r.text
    report = build(root, "-j", "2", code=1)
    assert outcomes(report) == {"broken": "failed", "after": "blocked"}
    assert {tag for tag, _, _ in calls(root)} == {"tenth"}


COMMITTING = '''
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent.parent


def big():
    frame = pd.DataFrame({"x": range(10_000_000)})
    (HERE / "big_returned").write_text("")
    return frame


def waiter():
    (HERE / "waiter_started").write_text("")
    while (HERE / "hold").exists():
        time.sleep(0.01)
    return pd.DataFrame({"y": [1]})
'''


@pytest.mark.slow
def test_ctrl_c_lets_a_node_whose_function_returned_commit(tmp_path: Path) -> None:
    # `big` returned 10M rows and is storing and validating them (off its slot) when
    # Ctrl-C comes: its work is done, so it is committed, not interrupted; `waiter`'s
    # function cannot be interrupted and is waited for
    root = tmp_path / "p"
    (root / "slots_c").mkdir(parents=True)
    (root / "slots_c" / "__init__.py").write_text("")
    (root / "slots_c" / "c.py").write_text(COMMITTING)
    (root / "odibi.yaml").write_text(
        "project: committing\nnodes:\n"
        "  - name: big\n    python: slots_c.c:big\n    validate: [unique(x)]\n"
        "  - name: waiter\n    python: slots_c.c:waiter\n")
    (root / "hold").write_text("")
    log = tmp_path / "log"
    proc = start_build(root, "--json", "-j", "2", log=log)
    try:
        wait_for(lambda: (root / "big_returned").exists() and (root / "waiter_started").exists(),
                 "big to return and waiter to start", proc=proc)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in Path(f"{log}.err").read_text(),
                 "the build to say it stops", proc=proc)
        (root / "hold").unlink()
        code = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, Path(f"{log}.err").read_text()
    assert outcomes(json.loads(Path(f"{log}.out").read_text())) == {"big": "built",
                                                                    "waiter": "built"}
