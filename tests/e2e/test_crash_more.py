"""kill -9 during the lock write and during `odibi gc` (issue #9, "Crash tests"; kills during
a build are in test_crash_resume.py). After every kill the next command works, nothing that
had finished is done again, and the result is what an uninterrupted run gives.

The lock write is hit by watching the project directory: odibi writes odibi.lock to a temp
file (`.odibi.lock.*`), fsyncs it and renames it over the lock; the test kills the build the
moment the temp file appears (with a 400-node project the lock is large enough that this
lands inside the write most of the time), and at random moments of the same build. No hook
in odibi is needed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.generate import generate, write_odibi
from tests.e2e.test_executor import (
    build, executed, odibi, outcomes, state_integrity, subprocess_env, view_contents,
)

GEN = generate(400, 40)
ALL = sorted({"src"} | {n.name for n in GEN})
TEMP = ".odibi.lock."


def start(root: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "odibi", "-C", str(root), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=subprocess_env())


def temp_files(root: Path) -> list[str]:
    return [n for n in os.listdir(root) if n.startswith(TEMP)]


def kill_at(proc: subprocess.Popen, root: Path, *, delay: float | None = None) -> bool:
    """SIGKILL `proc` after `delay` seconds, or (delay None) the moment a lock temp file
    appears in `root`; whether it was still running to be killed."""
    deadline = time.monotonic() + 60
    due = None if delay is None else time.monotonic() + delay
    while proc.poll() is None and time.monotonic() < deadline:
        if due is not None and time.monotonic() >= due:
            break
        if due is None and temp_files(root):
            break
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return True


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, dict]:
    """A built 400-node project: (root, its lock, every node's output)."""
    root = write_odibi(GEN, tmp_path_factory.mktemp("crash") / "built", rows=60)
    build(root, "-j", "2")
    return root, (root / "odibi.lock").read_bytes(), view_contents(root, ALL)


def assert_resumes_with_nothing_to_do(root: Path, lock: bytes, outputs: dict | None,
                                      context: str) -> None:
    assert state_integrity(root) == "ok", context
    report = build(root, "-j", "2")
    assert executed(report) == set(), (context, outcomes(report))
    assert (root / "odibi.lock").read_bytes() == lock, context
    assert not temp_files(root), f"{context}: a temp file of the lock was left behind"
    if outputs is not None:
        assert view_contents(root, ALL) == outputs, context


@pytest.mark.slow
def test_kill_9_while_the_lock_is_written(built: tuple[Path, bytes, dict],
                                          tmp_path: Path) -> None:
    pristine, lock, outputs = built
    rng = random.Random(9)
    # a build with nothing to run but the lock to write: the lock was deleted
    moments: list[float | None] = [None] * 4 + [rng.uniform(0.0, 1.2) for _ in range(3)]
    in_write = 0
    for i, delay in enumerate(moments):
        root = tmp_path / f"k{i}"
        shutil.copytree(pristine, root)
        (root / "odibi.lock").unlink()
        proc = start(root, "build", "-j", "2")
        killed = kill_at(proc, root, delay=delay)
        context = f"kill {i} ({'at the temp file' if delay is None else f'after {delay:.2f}s'})"
        if not killed:
            assert proc.returncode == 0, (context, proc.stderr.read() if proc.stderr else "")
        # the lock is all there or not there: never a part of it
        if (root / "odibi.lock").exists():
            assert (root / "odibi.lock").read_bytes() == lock, context
        in_write += bool(killed and temp_files(root))
        assert_resumes_with_nothing_to_do(root, lock, outputs, context)
    assert in_write >= 1, "no kill landed while the lock was being written"


def edit_source(root: Path) -> None:
    path = root / "data" / "src.csv"
    lines = path.read_text().splitlines()
    rows = [line.rsplit(",", 1) for line in lines[1:]]
    path.write_text("\n".join([lines[0]] + [f"{a},{int(v) + 3}" for a, v in rows]) + "\n")
    later = time.time_ns() + 2_000_000_000
    os.utime(path, ns=(later, later))


def store_tables(root: Path) -> int:
    import duckdb

    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM duckdb_tables() "
                           "WHERE schema_name = 'odibi_store'").fetchone()[0]
    finally:
        con.close()


@pytest.mark.slow
def test_kill_9_during_gc(built: tuple[Path, bytes, dict], tmp_path: Path) -> None:
    """After each kill: nothing is redone, and the next gc finishes the job; or (every
    other kill) a revert to the old source data restores or rebuilds and gets the old
    outputs: gc forgets version records before it drops their tables, so no record may
    point at a missing table whenever the kill comes."""
    original, original_lock, original_outputs = built
    # every node rebuilt from new source data: 401 stored versions become garbage
    before_gc = tmp_path / "before_gc"
    shutil.copytree(original, before_gc)
    edit_source(before_gc)
    build(before_gc, "-j", "2")
    lock, outputs = (before_gc / "odibi.lock").read_bytes(), view_contents(before_gc, ALL)
    assert store_tables(before_gc) == 2 * len(ALL)

    # how long an uninterrupted gc takes, and what it leaves
    clean = tmp_path / "clean"
    shutil.copytree(before_gc, clean)
    t0 = time.monotonic()
    proc = start(clean, "gc")
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    duration = time.monotonic() - t0
    assert store_tables(clean) == len(ALL)

    killed = 0
    for i, fraction in enumerate((0.1, 0.4, 0.7, 0.95)):
        root = tmp_path / f"gc{i}"
        shutil.copytree(before_gc, root)
        proc = start(root, "gc")
        context = f"gc killed at {fraction:.0%} of {duration:.2f}s"
        if kill_at(proc, root, delay=fraction * duration):
            killed += 1
        else:
            assert proc.returncode == 0, context
        # nothing the builds finished is lost or redone
        assert_resumes_with_nothing_to_do(root, lock, outputs, context)
        if i % 2:  # the next gc finishes the job
            r = odibi(root, "gc", "--json")
            assert r.code == 0, (context, r.text)
            assert store_tables(root) == len(ALL), context
            assert_resumes_with_nothing_to_do(root, lock, None, context)
            continue
        # a revert to the original data (a build that only restores repoints the
        # warehouse's views when it is next opened: the no-op build does it)
        shutil.copy2(original / "data" / "src.csv", root / "data" / "src.csv")
        later = time.time_ns() + 4_000_000_000
        os.utime(root / "data" / "src.csv", ns=(later, later))
        report = build(root, "-j", "2")
        assert set(outcomes(report).values()) <= {"restored", "built", "cut off"}, report
        assert_resumes_with_nothing_to_do(root, original_lock, original_outputs, context)
    assert killed >= 3, f"only {killed} gc runs were still running to be killed"
