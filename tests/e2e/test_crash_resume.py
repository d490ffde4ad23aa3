"""Builds that die or are stopped half-way (DESIGN.md §3 "odibi.lock", §4): kill -9 at many
moments of a build, and Ctrl-C. Each time the state stays readable, odibi.lock parses,
and the next `odibi build` finishes the job, running only what had not finished.

The builds run in subprocesses (`python -m odibi`), unbuffered, with `-v` so that each
node's "done NODE in ..." line is written as the node finishes: what a build had
finished when it was killed is read from that output, not from odibi's state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from bench.generate import generate, write_odibi
from tests.conftest import write_files
from tests.e2e.test_executor import (
    LONG_QUERY, build, executed, finish, odibi, outcomes, read_lock, start_build,
    state_integrity, view_contents, wait_for, with_outcome,
)

DONE = re.compile(r"^\s*done (\w+) in ", re.M)


def finished_nodes(log: Path) -> set[str]:
    """The nodes a `-v` build said it finished, from its stdout."""
    return set(DONE.findall(Path(f"{log}.out").read_text()))


# -- 5. kill -9 at any moment ----------------------------------------------------------------
GEN = generate(200, 20)
ALL = {"src"} | {n.name for n in GEN}
# Kill moments: one during start-up (at half the time a clean build takes to finish its
# first node), then as the build's output reports so many nodes done (a node's "done" line
# is printed as it finishes), spread over the whole build, the last when every node is done
# and odibi.lock is being written. Progress rather than wall-clock fractions: the same build
# takes 1.1 s or 1.6 s here from one run to the next.
DONE_AT = (1, 25, 50, 75, 100, 125, 150, 175, len(ALL))


def timed_build(root: Path, log: Path) -> tuple[float, float]:
    """Build `root` in a subprocess: (seconds to its first "done" line, seconds to exit)."""
    t0 = time.monotonic()
    proc = start_build(root, "-j", "4", "-v", log=log)
    first = wait_for(lambda: DONE.search(Path(f"{log}.out").read_text()) and time.monotonic(),
                     "the first node to finish", proc=proc) - t0
    assert finish(proc) == 0, Path(f"{log}.err").read_text()
    return first, time.monotonic() - t0


def kill_when(proc: subprocess.Popen, log: Path, *, after: float | None = None,
              done: int | None = None) -> int:
    """SIGKILL `proc` after `after` seconds or once its output says `done` nodes finished
    (unless it ended first); its exit code."""
    deadline = time.monotonic() + 60
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() < deadline:
        if after is not None and time.monotonic() - start >= after:
            break
        if done is not None and len(finished_nodes(log)) >= done:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(30)


@pytest.mark.slow
def test_kill_9_at_any_moment_then_resume(tmp_path: Path) -> None:
    pristine = write_odibi(GEN, tmp_path / "pristine", rows=300)

    # a clean build: the reference lock and outputs
    clean = tmp_path / "clean"
    shutil.copytree(pristine, clean)
    first_done, duration = timed_build(clean, tmp_path / "clean")
    assert finished_nodes(tmp_path / "clean") == ALL
    reference_lock = (clean / "odibi.lock").read_bytes()
    reference = view_contents(clean, sorted(ALL))
    kills = [{"after": 0.5 * first_done}] + [{"done": n} for n in DONE_AT]

    killed = 0
    left_counts = []
    for i, when in enumerate(kills):
        root = tmp_path / f"kill{i}"
        log = tmp_path / f"kill{i}"
        shutil.copytree(pristine, root)
        proc = start_build(root, "-j", "4", "-v", log=log)
        code = kill_when(proc, log, **when)
        if code == -signal.SIGKILL:
            killed += 1
        else:
            assert code == 0, Path(f"{log}.err").read_text()
        done = finished_nodes(log)
        left = ALL - done
        left_counts.append(len(left))
        context = (f"killed at {when} (a clean build: {duration:.2f}s) with {len(done)} "
                   f"done, exit {code}")

        # what the kill left is readable
        if (root / ".odibi" / "state.db").exists():
            assert state_integrity(root) == "ok", context
        if (root / "odibi.lock").exists():
            tomllib.loads((root / "odibi.lock").read_text())

        # the next build finishes the job, running only what had not finished. A node's
        # state record is committed before its "done" line is printed (one thread does
        # both): nothing reported done runs again, and of the nodes not reported done at
        # most one (recorded, then killed before its line came out) does not
        plan = json.loads(odibi(root, "explain", "--json").out)["nodes"]
        to_run = {e["node"] for e in plan if e["status"] != "up-to-date"}
        report = build(root, "-j", "4")
        ran = executed(report)
        assert ran == to_run, context
        assert set(outcomes(report).values()) <= {"built", "restored"}, (context, report)
        assert ran <= left, f"{context}: reported done, run again: {sorted(ran - left)}"
        assert len(left - ran) <= 1, (
            f"{context}: never reported done and not run: {sorted(left - ran)}")

        assert (root / "odibi.lock").read_bytes() == reference_lock, context
        assert view_contents(root, sorted(ALL)) == reference, context
        assert outcomes(build(root, "-j", "4")) == {}, context

    assert killed >= 8, f"only {killed} of {len(kills)} builds were still running to be killed"
    # the kills were spread over the build, not all at its start or its end
    assert any(0 < n < len(ALL) / 2 for n in left_counts), left_counts
    assert any(len(ALL) / 2 <= n < len(ALL) for n in left_counts), left_counts


# -- 6. Ctrl-C -------------------------------------------------------------------------------
# Each slow node runs until the test removes its file `hold_sN` (30 s at most): the test
# decides which nodes have finished and which are running when Ctrl-C comes.
SLEEPY_PY = '''
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
MARKS = HERE / "marks"


def _mark(what):
    MARKS.mkdir(exist_ok=True)
    (MARKS / what).write_text("")


def _held(name):
    _mark("started_" + name)
    deadline = time.monotonic() + 30
    while (HERE / ("hold_" + name)).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    _mark("done_" + name)
''' + "".join(f'''

def s{i}(src):
    _held("s{i}")
    return src.assign(s={i})
''' for i in range(1, 7))

SLOW_NODES = {f"s{i}" for i in range(1, 7)}


def sleepy_project(root: Path) -> Path:
    nodes = "".join(f"  - name: s{i}\n    python: transforms.sleepy:s{i}\n" for i in range(1, 7))
    return write_files(root, {
        "odibi.yaml": "project: sleepy\n"
                      "connections:\n  raw: {type: local, base_path: data}\n"
                      "nodes:\n"
                      "  - name: src\n    read: {connection: raw, path: src.csv, format: csv}\n"
                      + nodes +
                      "  - name: total\n"
                      "    sql: SELECT count(*) AS n FROM s1, s2, s3, s4, s5, s6\n",
        "transforms/__init__.py": "",
        "transforms/sleepy.py": SLEEPY_PY,
        **{f"hold_s{i}": "" for i in range(1, 7)},
        "data/src.csv": "id,v\n1,10\n2,20\n",
    })


@pytest.mark.slow
def test_ctrl_c_keeps_what_finished(tmp_path: Path) -> None:
    root = sleepy_project(tmp_path / "proj")
    marks = root / "marks"

    def started() -> set[str]:
        return {p.name.removeprefix("started_") for p in marks.glob("started_*")}

    log = tmp_path / "first"
    proc = start_build(root, "--json", "-j", "2", log=log)
    try:
        # two slow nodes finish, two more are running when Ctrl-C comes
        finished = wait_for(lambda: len(started()) == 2 and started(), "two nodes to start",
                            proc=proc)
        for n in finished:
            (root / f"hold_{n}").unlink()
        running = wait_for(lambda: len(started()) == 4 and started() - finished,
                           "two more nodes to start", proc=proc)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in Path(f"{log}.err").read_text(),
                 "the build to say it stops", proc=proc)
        time.sleep(0.2)
        assert started() == finished | running, "a node started after Ctrl-C"
        for n in running:
            (root / f"hold_{n}").unlink()
        code = finish(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = Path(f"{log}.err").read_text()
    assert code == 130, err
    assert "interrupted" in err
    first = json.loads(Path(f"{log}.out").read_text())
    assert first["ok"] is False
    built = with_outcome(first, "built")
    # the nodes running at Ctrl-C (Python calls cannot be interrupted) were waited for, and
    # as they finished, they are kept; nothing else started
    assert built == {"src"} | finished | running, first
    assert with_outcome(first, "not started") == SLOW_NODES - finished - running | {"total"}
    assert set(outcomes(first).values()) == {"built", "not started"}, first
    assert set(read_lock(root)["nodes"]) == built
    assert state_integrity(root) == "ok"

    for hold in root.glob("hold_*"):
        hold.unlink()
    second = build(root, "-j", "2")
    assert executed(second) == ({"src", "total"} | SLOW_NODES) - built
    assert set(outcomes(second).values()) == {"built"}
    assert set(read_lock(root)["nodes"]) == {"src", "total"} | SLOW_NODES

    runs = json.loads(odibi(root, "history", "--json").out)
    assert [run["status"] for run in runs] == ["ok", "interrupted"]
    assert runs[1]["summary"].get("built") == len(built)
    assert runs[0]["summary"].get("built") == 8 - len(built)


@pytest.mark.slow
def test_ctrl_c_interrupts_a_running_query(tmp_path: Path) -> None:
    root = write_files(tmp_path / "proj", {
        "odibi.yaml": f"""
            project: query
            connections:
              raw: {{type: local, base_path: data}}
            nodes:
              - name: src
                read: {{connection: raw, path: src.csv, format: csv}}
              - name: quick
                sql: SELECT id, v FROM src
              - name: long
                sql: {LONG_QUERY}
              - name: after
                sql: SELECT n FROM long
        """,
        "data/src.csv": "id,v\n1,10\n",
    })
    log = tmp_path / "build"
    proc = start_build(root, "-j", "2", "-v", log=log)
    try:
        # `long` has started (its line is printed as it starts) and `quick` is done
        wait_for(lambda: re.search(r"^long\s+rebuild", Path(f"{log}.out").read_text(), re.M)
                 and "quick" in finished_nodes(log), "long to start", proc=proc)
        time.sleep(0.3)  # well into the query
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = finish(proc, 60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = Path(f"{log}.err").read_text()
    assert code == 130, err
    assert took < 8, f"the build took {took:.1f}s to stop after Ctrl-C"
    assert "interrupted long" in err
    assert set(read_lock(root)["nodes"]) == {"src", "quick"}
    plan = {e["node"]: e["status"] for e in json.loads(odibi(root, "explain", "--json").out)
            ["nodes"]}
    assert plan == {"src": "up-to-date", "quick": "up-to-date", "long": "rebuild",
                    "after": "rebuild"}


HELD = '''
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def held(src):
    (HERE / "started").write_text("")
    deadline = time.monotonic() + 30
    while (HERE / "hold").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return src
'''


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    # a Python node cannot be interrupted: the first Ctrl-C waits for it, the second does not
    root = write_files(tmp_path / "proj", {
        "odibi.yaml": """
            project: held
            connections:
              raw: {type: local, base_path: data}
            nodes:
              - name: src
                read: {connection: raw, path: src.csv, format: csv}
              - name: held
                python: transforms.held:held
              - name: after
                sql: SELECT * FROM held
        """,
        "transforms/__init__.py": "",
        "transforms/held.py": HELD,
        "data/src.csv": "id,v\n1,10\n",
        "hold": "",
    })
    log = tmp_path / "build"
    proc = start_build(root, "-j", "2", "-v", log=log)
    try:
        wait_for(lambda: (root / "started").exists(), "the held node to start", proc=proc)
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in Path(f"{log}.err").read_text(),
                 "the build to say it stops", proc=proc)
        time.sleep(0.2)
        assert proc.poll() is None, "the first Ctrl-C did not wait for the running node"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = finish(proc, 30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, Path(f"{log}.err").read_text()
    assert took < 2, f"the second Ctrl-C took {took:.1f}s to end the build"
    done = finished_nodes(log)
    assert done == {"src"}
    assert state_integrity(root) == "ok"
    if (root / "odibi.lock").exists():
        tomllib.loads((root / "odibi.lock").read_text())

    (root / "hold").unlink()
    report = build(root, "-j", "2")
    assert outcomes(report) == {"held": "built", "after": "built"}
