"""Concurrency (issue #9): builds of one project started at the same moment, a build while
`explain` and `show` read, and builds of two projects at once. (A second build that waits
for a held first one, `--no-wait`, and read-only commands that never wait are in
test_executor.py, `test_a_second_build_waits_for_the_first`.)

`explain` reads only the state and answers throughout a build. `show` reads the warehouse,
which DuckDB lets no second process open while a build writes it: during a build `show`
exits 2 at once saying so (it never waits and never sees a half-written version).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.generate import generate, write_odibi
from tests.e2e.test_executor import (
    build, executed, odibi, state_integrity, subprocess_env, view_contents,
)
from tests.e2e.test_incremental import write_later

GEN = generate(120, 12)
BUSY = "the warehouse is in use by a running build; try again when it finishes"
ALL = sorted({"src"} | {n.name for n in GEN})


def start(root: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "odibi", "-C", str(root), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, dict]:
    """The project unbuilt, and what one build alone gives: (pristine root, lock, outputs)."""
    base = tmp_path_factory.mktemp("conc")
    pristine = write_odibi(GEN, base / "pristine", rows=200)
    alone = base / "alone"
    shutil.copytree(pristine, alone)
    build(alone, "-j", "2")
    return pristine, (alone / "odibi.lock").read_bytes(), view_contents(alone, ALL)


@pytest.mark.slow
def test_builds_of_one_project_started_together_build_each_node_once(
        reference: tuple[Path, bytes, dict], tmp_path: Path) -> None:
    pristine, lock, outputs = reference
    for i in range(2):
        root = tmp_path / f"p{i}"
        shutil.copytree(pristine, root)
        procs = [start(root, "build", "--json", "-j", "2") for _ in range(3)]
        results = [finish(p) for p in procs]
        ran: list[set[str]] = []
        for code, out, err in results:
            assert code == 0, err
            ran.append(executed(json.loads(out)))
        # one build did everything; the others waited for it, then had nothing to do
        assert sorted(len(r) for r in ran) == [0, 0, len(ALL)], [len(r) for r in ran]
        assert set().union(*ran) == set(ALL)
        assert state_integrity(root) == "ok"
        assert (root / "odibi.lock").read_bytes() == lock
        assert view_contents(root, ALL) == outputs
        assert executed(build(root)) == set()


@pytest.mark.slow
def test_explain_and_show_read_while_a_build_runs(reference: tuple[Path, bytes, dict],
                                                  tmp_path: Path) -> None:
    pristine, _, outputs = reference
    root = tmp_path / "p"
    shutil.copytree(pristine, root)
    build(root, "-j", "2")
    old_leaf = outputs[ALL[-1]]
    # every node rebuilds: what `show` prints changes while the build runs
    path = root / "data" / "src.csv"
    head, *rows = path.read_text().splitlines()
    write_later(path, "\n".join([head] + [f"{a},{int(v) + 1}" for a, v in
                                          (row.rsplit(",", 1) for row in rows)]) + "\n")
    proc = start(root, "build", "--json", "-j", "2")
    reads = busy = 0
    shown: set[str] = set()
    while proc.poll() is None or reads < 4:
        r = odibi(root, "explain", "--json")
        assert r.code == 0, r.text
        assert {e["node"] for e in json.loads(r.out)["nodes"]} == set(ALL)
        # DuckDB lets no other process open a warehouse a build is writing: `show`
        # says so at once, without waiting; otherwise it shows a whole version
        r = odibi(root, "show", ALL[-1], "--json", "--limit", "1000")
        if r.code == 2:
            assert json.loads(r.out) == {"error": BUSY}, r.text
            busy += 1
        else:
            assert r.code == 0, r.text
            shown.add(json.dumps(sorted(map(json.dumps, json.loads(r.out)["data"]))))
        reads += 1
    code, out, err = finish(proc)
    assert code == 0, err
    assert executed(json.loads(out)) == set(ALL)
    new = view_contents(root, ALL)
    assert new[ALL[-1]] != old_leaf
    # each read saw a whole version, the old one or the new one: never a mixture
    assert len(shown) <= 2, shown
    assert busy < reads
    assert executed(build(root)) == set()
    r = odibi(root, "show", ALL[-1], "--json", "--limit", "1000")
    assert r.code == 0 and json.loads(r.out)["data"], r.text


@pytest.mark.slow
def test_two_projects_build_at_once(reference: tuple[Path, bytes, dict],
                                    tmp_path: Path) -> None:
    pristine, lock, outputs = reference
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        shutil.copytree(pristine, root)
    procs = [start(root, "build", "--json", "-j", "2") for root in roots]
    for proc in procs:
        code, out, err = finish(proc)
        assert code == 0, err
        assert executed(json.loads(out)) == set(ALL)
    for root in roots:
        assert (root / "odibi.lock").read_bytes() == lock
        assert view_contents(root, ALL) == outputs
        assert state_integrity(root) == "ok"


@pytest.mark.slow
def test_a_build_waits_for_a_reader_to_let_go_of_the_warehouse(
        reference: tuple[Path, bytes, dict], tmp_path: Path) -> None:
    # a reader (`show`, or any DuckDB client opening it read-only) holds the warehouse
    # file for a moment just as a build wants to open it: the build waits, then builds
    pristine, _, outputs = reference
    root = tmp_path / "p"
    shutil.copytree(pristine, root)
    build(root, "-j", "2")
    path = root / "data" / "src.csv"
    write_later(path, path.read_text().replace("\n1,", "\n100001,", 1))
    hold = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
         "con = duckdb.connect(sys.argv[1], read_only=True)\n"
         "print('holding', flush=True)\ntime.sleep(1.5)\ncon.close()",
         str(root / ".odibi" / "warehouse.duckdb")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout is not None and hold.stdout.readline() == "holding\n"
        report = build(root, "-j", "2")
    finally:
        hold.wait(timeout=30)
    assert "src" in executed(report)
    assert executed(build(root)) == set()
