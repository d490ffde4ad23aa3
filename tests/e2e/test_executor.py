"""Acceptance tests of the parallel executor (DESIGN.md §3-§4), through the real CLI:
`-j N`, `--keep-going` / `--fail-fast`, interrupting running queries, per-node `timeout`
and `retry`, `--profile` traces, concurrent builds in one project, and `odibi history`.

What ran is judged from `odibi build --json` (a node executed iff its entry has an
outcome other than "cut off", "blocked" or "not started") and from the `--profile`
Chrome trace of the same run. Expected sets are worked out here, from the DAGs the tests
write, never read back from odibi.

Subprocess-heavy tests (a build must be in flight while the test acts) are marked slow.
The resume-after-kill and Ctrl-C tests are in test_crash_resume.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli, write_files

NOT_EXECUTED = ("cut off", "blocked", "not started")
# Long enough that nobody waits for it: about 40 s of DuckDB here on 2 cores (1e9 rows
# take 3.8 s), so a build that ends in seconds must have interrupted it.
LONG_QUERY = "SELECT count(*) AS n FROM range(10000000000) t(i) WHERE i % 7 = 3"


# -- running odibi ---------------------------------------------------------------------------
def odibi(root: Path, *argv: str):
    return run_cli("-C", str(root), *argv)


def build(root: Path, *argv: str, code: int = 0) -> dict[str, Any]:
    r = odibi(root, "build", "--json", *argv)
    assert r.code == code, r.text
    return json.loads(r.out)


def outcomes(report: Mapping[str, Any]) -> dict[str, str]:
    return {n: v["outcome"] for n, v in report["nodes"].items() if "outcome" in v}


def executed(report: Mapping[str, Any]) -> set[str]:
    return {n for n, o in outcomes(report).items() if o not in NOT_EXECUTED}


def with_outcome(report: Mapping[str, Any], outcome: str) -> set[str]:
    return {n for n, o in outcomes(report).items() if o == outcome}


def write_later(path: Path, text: str) -> None:
    """Write `path` with an mtime strictly later than before (stat-keyed caches)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    later = max(time.time_ns(), before + 2_000_000_000)
    os.utime(path, ns=(later, later))


def replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    write_later(path, text.replace(old, new))


# -- the warehouse and the state -------------------------------------------------------------
@contextmanager
def warehouse(root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=True)
    try:
        yield con
    finally:
        con.close()


def view_contents(root: Path, names: Iterable[str]) -> dict[str, tuple[tuple, list[tuple]]]:
    """Every node's view: (schema, rows in a canonical order)."""
    with warehouse(root) as con:
        out = {}
        for n in names:
            schema = tuple((c[0], c[1]) for c in con.execute(
                f"DESCRIBE SELECT * FROM main.{n}").fetchall())
            rows = con.execute(f"SELECT * FROM main.{n} ORDER BY ALL").fetchall()
            out[n] = (schema, rows)
        return out


def state_integrity(root: Path) -> str:
    con = sqlite3.connect(root / ".odibi" / "state.db")
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def read_lock(root: Path) -> dict[str, Any]:
    return tomllib.loads((root / "odibi.lock").read_text())


# -- profiles --------------------------------------------------------------------------------
def load_profile(path: Path) -> list[dict[str, Any]]:
    """The trace's events, after checking it is Chrome trace-event JSON as a viewer reads
    it: complete ("X") events with non-negative integer ts/dur on named worker tracks."""
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list), doc
    events = doc["traceEvents"]
    for e in events:
        assert {"name", "ph", "pid", "tid"} <= e.keys(), e
        assert e["ph"] in ("X", "M"), e
        if e["ph"] == "X":
            for key in ("ts", "dur"):
                assert isinstance(e[key], int) and not isinstance(e[key], bool), e
                assert e[key] >= 0, e
    named = {e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    used = {e["tid"] for e in events if e["ph"] == "X"}
    assert used <= named, f"worker tracks without a thread_name: {used - named}"
    return events


def spans(events: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """node -> (start, end, tid), exactly one complete event per node."""
    out: dict[str, tuple[int, int, int]] = {}
    for e in events:
        if e["ph"] == "X":
            assert e["name"] not in out, f"two events for {e['name']}"
            out[e["name"]] = (e["ts"], e["ts"] + e["dur"], e["tid"])
    return out


def assert_workers(events: list[dict[str, Any]], jobs: int) -> None:
    tids = {e["tid"] for e in events if e["ph"] == "X"}
    assert tids <= set(range(1, jobs + 1)), f"worker tracks {sorted(tids)} with -j {jobs}"


def assert_dependencies_first(span: Mapping[str, tuple[int, int, int]],
                              parents: Mapping[str, Iterable[str]]) -> None:
    for node, (start, _, _) in span.items():
        for parent in parents[node]:
            assert parent in span, f"{node} ran but its dependency {parent} did not"
            assert start >= span[parent][1], (
                f"{node} started at {start}us, before {parent} ended at {span[parent][1]}us")


# -- 1. any -j gives what -j 1 gives ---------------------------------------------------------
SRC_CSV = "id,k,v\n" + "".join(f"{i},{(i * 7) % 5},{(i * 37) % 101}\n" for i in range(40))


# A Python transform for generated DAGs: its one input, mapped (`**inputs`, depends_on).
DAG_OPS = """
def bump(**inputs):
    (frame,) = inputs.values()
    out = frame[["id", "k", "v"]].copy()
    out["v"] = (out["v"] * 3 + 1) % 1009
    return out
"""


def small_project(root: Path, nodes: Mapping[str, str]) -> Path:
    """A project of one csv source `src` and SQL nodes {name: sql}; a node whose "sql" is
    `python: PARENT` is the Python transform `dag_ops.ops:bump` of PARENT instead."""
    lines = ["project: dag",
             "connections:",
             "  raw: {type: local, base_path: data}",
             "nodes:",
             "  - name: src",
             "    read: {connection: raw, path: src.csv, format: csv}"]
    for name, sql in nodes.items():
        if sql.startswith("python: "):
            lines += [f"  - name: {name}", "    python: dag_ops.ops:bump",
                      f"    depends_on: [{sql.removeprefix('python: ')}]"]
        else:
            lines += [f"  - name: {name}", f"    sql: {sql}"]
    (root / "dag_ops").mkdir(parents=True, exist_ok=True)
    (root / "dag_ops" / "__init__.py").write_text("")
    (root / "dag_ops" / "ops.py").write_text(DAG_OPS)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "src.csv").write_text(SRC_CSV)
    (root / "odibi.yaml").write_text("\n".join(lines) + "\n")
    return root


@st.composite
def dags(draw: st.DrawFn) -> dict[str, tuple[tuple[str, ...], str]]:
    """Up to 12 SQL and Python nodes over `src`: {name: (parents, sql)}, names in
    topological order."""
    n = draw(st.integers(1, 12))
    nodes: dict[str, tuple[tuple[str, ...], str]] = {}
    for i in range(n):
        name = f"t{i:02d}"
        pool = ["src", *nodes]
        k = draw(st.integers(1, min(3, len(pool))))
        parents = tuple(draw(st.lists(st.sampled_from(pool), min_size=k, max_size=k,
                                      unique=True)))
        a = parents[0]
        if len(parents) == 1:
            shape = draw(st.sampled_from(("filter", "aggregate", "map", "python")))
            c = draw(st.integers(0, 60))
            if shape == "python":
                sql = f"python: {a}"
            elif shape == "filter":
                sql = f"SELECT id, k, v FROM {a} WHERE v > {c}"
            elif shape == "aggregate":
                sql = f"SELECT min(id) AS id, k, sum(v) % 1009 AS v FROM {a} GROUP BY k"
            else:
                sql = f"SELECT id, (k + {c}) % 5 AS k, (v * 3 + {c}) % 1009 AS v FROM {a}"
        else:
            joins = " ".join(f"LEFT JOIN {p} AS j{j} USING (id)"
                             for j, p in enumerate(parents[1:], 1))
            total = " + ".join(f"coalesce(j{j}.v, 0)" for j in range(1, len(parents)))
            sql = f"SELECT j0.id, j0.k, (j0.v + {total}) % 1009 AS v FROM {a} AS j0 {joins}"
        nodes[name] = (parents, sql)
    return nodes


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(dag=dags())
def test_any_jobs_gives_the_outputs_and_lock_of_one_job(dag) -> None:
    sql = {n: s for n, (_, s) in dag.items()}
    parents = {"src": ()} | {n: p for n, (p, _) in dag.items()}
    everything = set(parents)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for jobs in (1, 4):
            root = small_project(Path(tmp) / f"j{jobs}", sql)
            profile = Path(tmp) / f"j{jobs}.json"
            report = build(root, "-j", str(jobs), "--profile", str(profile))
            assert outcomes(report) == {n: "built" for n in everything}, report
            events = load_profile(profile)
            # a Python node commits its output on a spare worker, off its slot
            python = any(s.startswith("python: ") for s in sql.values())
            assert_workers(events, 2 * jobs if python else jobs)
            span = spans(events)
            assert set(span) == everything
            assert_dependencies_first(span, parents)
            results[jobs] = ((root / "odibi.lock").read_bytes(),
                             view_contents(root, sorted(everything)))
        lock1, views1 = results[1]
        lock4, views4 = results[4]
        assert lock4 == lock1
        assert views4 == views1


# -- 2. keep-going and fail-fast -------------------------------------------------------------
# Two independent branches off `src`. The failing branch is the longer one, so that the
# scheduler (longest remaining path first, every node counted as 1 when nothing is
# remembered) starts it first: with -j 1 the order is src, a1, bad, then c1, c2.
BRANCHES = {
    "odibi.yaml": """
        project: branches
        connections:
          raw: {type: local, base_path: data}
        nodes:
          - name: src
            read: {connection: raw, path: src.csv, format: csv}
          - name: a1
            sql: SELECT id, v + 1 AS v FROM src
          - name: bad
            sql: SELECT CAST('x' AS INTEGER) AS v FROM a1
          - name: b2
            sql: SELECT v FROM bad
          - name: b3
            sql: SELECT v FROM b2
          - name: c1
            sql: SELECT id, v * 2 AS v FROM src
          - name: c2
            sql: SELECT id, v FROM c1 WHERE v > 20
    """,
    "data/src.csv": "id,v\n1,10\n2,20\n3,30\n",
}
ALL = {"src", "a1", "bad", "b2", "b3", "c1", "c2"}
FIX = ("SELECT CAST('x' AS INTEGER) AS v FROM a1", "SELECT CAST(v AS INTEGER) AS v FROM a1")


def test_keep_going_builds_the_independent_branch_and_blocks_dependants(project) -> None:
    root = project(BRANCHES)
    r = odibi(root, "build", "--json", "-j", "2")
    assert r.code == 1, r.text
    report = json.loads(r.out)
    assert report["ok"] is False
    assert with_outcome(report, "built") == {"src", "a1", "c1", "c2"}
    assert with_outcome(report, "failed") == {"bad"}
    assert with_outcome(report, "blocked") == {"b2", "b3"}
    assert set(outcomes(report)) == ALL
    assert {report["nodes"][n]["because"] for n in ("b2", "b3")} == {"bad"}
    assert "Could not convert string 'x'" in report["nodes"]["bad"]["error"]
    assert "failed bad" in r.err

    # the plain summary names the root cause
    text = odibi(root, "build", "-j", "2")
    assert text.code == 1, text.text
    assert "2 blocked because bad failed" in text.text

    replace_text(root / "odibi.yaml", *FIX)
    again = build(root, "-j", "2")
    assert outcomes(again) == {"bad": "built", "b2": "built", "b3": "built"}


# Three failures: `bad` blocks one node, `raw` a chain of three whose build order is not
# alphabetical (zeta, alpha, mid), `raw_orders` a fan of twelve.
FAN = [f"o{i:02}" for i in range(1, 13)]
BLOCKERS = {
    "odibi.yaml": """
        project: blockers
        connections:
          raw: {type: local, base_path: data}
        nodes:
          - name: src
            read: {connection: raw, path: src.csv, format: csv}
          - name: ok
            sql: SELECT id FROM src
          - name: bad
            sql: SELECT CAST('x' AS INTEGER) AS v FROM src
          - name: after_bad
            sql: SELECT v FROM bad
          - name: raw
            sql: SELECT CAST('y' AS INTEGER) AS v FROM src
          - name: zeta
            sql: SELECT v FROM raw
          - name: alpha
            sql: SELECT v FROM zeta
          - name: mid
            sql: SELECT v FROM alpha
          - name: raw_orders
            sql: SELECT CAST('z' AS INTEGER) AS v FROM src
    """ + "".join(f"""
          - name: {n}
            sql: SELECT v FROM raw_orders
    """.rstrip(" ") for n in FAN),
    "data/src.csv": "id\n1\n",
}


def test_keep_going_summary_names_the_blocked_nodes_up_to_five(project) -> None:
    root = project(BLOCKERS)
    r = odibi(root, "build", "-j", "1")
    assert r.code == 1, r.text
    lines = [line for line in r.out.splitlines() if " blocked because " in line]
    assert lines == [
        "  12 blocked because raw_orders failed: o01, o02, o03, o04, o05 and 7 more",
        "  3 blocked because raw failed: zeta, alpha, mid",
        "  1 blocked because bad failed: after_bad",
    ], r.out

    # --json still names the cause per node
    report = build(root, code=1)
    assert {n: v.get("because") for n, v in report["nodes"].items()
            if v.get("outcome") == "blocked"} == (
        {"after_bad": "bad"} | dict.fromkeys(("zeta", "alpha", "mid"), "raw")
        | dict.fromkeys(FAN, "raw_orders"))


def test_fail_fast_starts_nothing_after_the_failure(project, tmp_path: Path) -> None:
    root = project(BRANCHES)
    profile = tmp_path / "trace.json"
    r = odibi(root, "build", "--json", "--fail-fast", "-j", "1", "--profile", str(profile))
    assert r.code == 1, r.text
    report = json.loads(r.out)
    assert report["ok"] is False
    assert with_outcome(report, "built") == {"src", "a1"}
    assert with_outcome(report, "failed") == {"bad"}
    assert with_outcome(report, "blocked") == {"b2", "b3"}
    assert {report["nodes"][n]["because"] for n in ("b2", "b3")} == {"bad"}
    assert with_outcome(report, "not started") == {"c1", "c2"}

    # the trace of the same run agrees: the failure is the last thing that started
    span = spans(load_profile(profile))
    assert set(span) == {"src", "a1", "bad"}
    assert max(span, key=lambda n: span[n][0]) == "bad"

    replace_text(root / "odibi.yaml", *FIX)
    again = build(root, "-j", "1")
    assert outcomes(again) == {n: "built" for n in ("bad", "b2", "b3", "c1", "c2")}
    assert {n for n, v in again["nodes"].items() if v["status"] == "up-to-date"} == {"src", "a1"}


# -- 3. fail-fast interrupts a running query -------------------------------------------------
MEDIUM_QUERY = "SELECT count(*) AS n FROM range(200000000) t(i) WHERE i % 7 = 3"


def test_fail_fast_interrupts_a_running_query(project, tmp_path: Path) -> None:
    # with -j 2, `long` and `mid` start together; `bad` starts when `mid` is done, a while
    # into `long`, and fails at once
    root = project({
        "odibi.yaml": f"""
            project: interrupt
            nodes:
              - name: mid
                sql: {MEDIUM_QUERY}
              - name: bad
                sql: SELECT CAST('x' AS INTEGER) AS v FROM mid
              - name: long
                sql: {LONG_QUERY}
        """,
    })
    profile = tmp_path / "trace.json"
    t0 = time.monotonic()
    r = odibi(root, "build", "--json", "--fail-fast", "-j", "2", "--profile", str(profile))
    took = time.monotonic() - t0
    assert r.code == 1, r.text
    report = json.loads(r.out)
    assert outcomes(report) == {"mid": "built", "bad": "failed", "long": "interrupted"}
    assert "interrupted long" in r.err
    span = spans(load_profile(profile))
    assert span["long"][0] <= span["mid"][1], "long did not run alongside mid"
    # long stopped soon after bad failed, not 40 s later
    after = (span["long"][1] - span["bad"][1]) / 1e6
    assert after < 3, f"long went on for {after:.1f}s after bad failed"
    assert took < 20, f"the build took {took:.1f}s: the long query was not interrupted"

    # the interrupted node is not recorded: it is still to build, the finished one is not
    plan = {e["node"]: e["status"] for e in json.loads(odibi(root, "explain", "--json").out)
            ["nodes"]}
    assert plan == {"mid": "up-to-date", "bad": "rebuild", "long": "rebuild"}


# -- 4. timeout and retry --------------------------------------------------------------------
def test_timeout_fails_a_long_node(project) -> None:
    root = project({
        "odibi.yaml": f"""
            project: timeout
            connections:
              raw: {{type: local, base_path: data}}
            nodes:
              - name: src
                read: {{connection: raw, path: src.csv, format: csv}}
              - name: quick
                sql: SELECT id FROM src
              - name: long
                timeout: 1
                sql: {LONG_QUERY}
              - name: after
                sql: SELECT * FROM long
        """,
        "data/src.csv": "id,v\n1,10\n",
    })
    t0 = time.monotonic()
    r = odibi(root, "build", "--json", "-j", "2")
    took = time.monotonic() - t0
    assert r.code == 1, r.text
    report = json.loads(r.out)
    assert outcomes(report) == {"src": "built", "quick": "built", "long": "failed",
                                "after": "blocked"}
    assert "timed out after 1s" in report["nodes"]["long"]["error"]
    assert 1 <= report["nodes"]["long"]["seconds"] < 4, report["nodes"]["long"]
    assert took < 15, f"the build took {took:.1f}s with a 1s timeout"


FLAKY = '''
    from pathlib import Path

    CALLS = Path(__file__).with_name("calls.txt")


    def _count() -> int:
        n = int(CALLS.read_text()) if CALLS.exists() else 0
        CALLS.write_text(str(n + 1))
        return n + 1


    def once(src):
        if _count() == 1:
            raise RuntimeError("first call fails")
        return src.assign(w=src["v"] * 2)
'''


def test_retry_builds_a_node_that_fails_once(project) -> None:
    root = project({
        "odibi.yaml": """
            project: retry
            connections:
              raw: {type: local, base_path: data}
            nodes:
              - name: src
                read: {connection: raw, path: src.csv, format: csv}
              - name: flaky
                python: transforms.flaky:once
                retry: {attempts: 2, backoff: 0}
              - name: after
                sql: SELECT sum(w) AS total FROM flaky
        """,
        "transforms/__init__.py": "",
        "transforms/flaky.py": FLAKY,
        "data/src.csv": "id,v\n1,10\n2,20\n",
    })
    report = build(root, "-j", "2")
    assert outcomes(report) == {"src": "built", "flaky": "built", "after": "built"}
    assert (root / "transforms" / "calls.txt").read_text() == "2"
    assert report["nodes"]["flaky"].get("attempts", 2) == 2
    with warehouse(root) as con:
        assert con.execute("SELECT total FROM main.after").fetchall() == [(60,)]


def test_retry_gives_up_after_its_attempts(project) -> None:
    root = project({
        "odibi.yaml": """
            project: retry
            connections:
              raw: {type: local, base_path: data}
            nodes:
              - name: src
                read: {connection: raw, path: src.csv, format: csv}
              - name: flaky
                python: transforms.flaky:once
                retry: {attempts: 3, backoff: 0}
        """,
        "transforms/__init__.py": "",
        "transforms/flaky.py": FLAKY.replace("if _count() == 1:", "if _count() > 0:"),
        "data/src.csv": "id,v\n1,10\n",
    })
    r = odibi(root, "build", "--json", "-j", "2")
    assert r.code == 1, r.text
    report = json.loads(r.out)
    assert outcomes(report) == {"src": "built", "flaky": "failed"}
    assert "first call fails" in report["nodes"]["flaky"]["error"]
    assert (root / "transforms" / "calls.txt").read_text() == "3"
    assert "after 3 attempts" in r.err


# -- 8. the profile --------------------------------------------------------------------------
PROFILED = {
    "odibi.yaml": """
        project: profiled
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        nodes:
          - name: src
            read: {connection: raw, path: src.csv, format: csv}
          - name: a
            sql: SELECT id, v FROM src WHERE v > 0
          - name: a2
            sql: SELECT id, v * 2 AS v FROM a
          - name: b
            sql: SELECT id, v FROM src WHERE v > 0
          - name: b2
            sql: SELECT id, v + 1 AS v FROM b
          - name: c
            sql: SELECT id, v FROM src
            write: {connection: out, path: c.csv, format: csv}
    """,
    "data/src.csv": "id,v\n1,10\n2,20\n3,30\n4,0\n",
}


def test_profile_has_one_event_per_executed_node(project, tmp_path: Path) -> None:
    root = project(PROFILED)
    first = tmp_path / "first.json"
    report = build(root, "-j", "3", "--profile", str(first))
    events = load_profile(first)
    assert_workers(events, 3)
    assert set(spans(events)) == {"src", "a", "a2", "b", "b2", "c"} == executed(report)

    yaml_path = root / "odibi.yaml"
    replace_text(yaml_path, "FROM src WHERE v > 0\n  - name: a2",
                 "FROM src WHERE v > 15\n  - name: a2")
    assert outcomes(build(root, "-j", "3")) == {"a": "built", "a2": "built"}

    # revert a (restored with a2), an edit of b with the same output (b2 is cut off),
    # and a new export path for c (re-exported)
    replace_text(yaml_path, "FROM src WHERE v > 15\n  - name: a2",
                 "FROM src WHERE v > 0\n  - name: a2")
    replace_text(yaml_path, "FROM src WHERE v > 0\n  - name: b2",
                 "FROM src WHERE v >= 1\n  - name: b2")
    replace_text(yaml_path, "path: c.csv", "path: c_again.csv")
    third = tmp_path / "third.json"
    report = build(root, "-j", "2", "--profile", str(third))
    assert outcomes(report) == {"a": "restored", "a2": "restored", "b": "built",
                                "b2": "cut off", "c": "exported"}
    events = load_profile(third)
    assert_workers(events, 2)
    span = spans(events)
    assert set(span) == {"a", "a2", "b", "c"} == executed(report)
    assert {e["cat"] for e in events if e["ph"] == "X"} <= {"built", "restored", "exported"}
    assert (root / "output" / "c_again.csv").exists()


# -- 9. history ------------------------------------------------------------------------------
def test_history_lists_builds_newest_first(project) -> None:
    root = project(BRANCHES)
    replace_text(root / "odibi.yaml", *FIX)
    build(root, "-j", "2")                                          # 1: ok, 7 built
    replace_text(root / "odibi.yaml", FIX[1], FIX[0])
    r = odibi(root, "build", "--json", "-j", "2")                   # 2: failed
    assert r.code == 1, r.text
    replace_text(root / "odibi.yaml", *FIX)                         # 3: ok, restored
    third = build(root, "-j", "2")
    build(root, "-j", "2")                                          # 4: ok, nothing to do

    h = odibi(root, "history", "--json")
    assert h.code == 0, h.text
    runs = json.loads(h.out)
    assert [run["status"] for run in runs] == ["ok", "ok", "failed", "ok"]
    ids = [run["id"] for run in runs]
    assert ids == sorted(ids, reverse=True)
    starts = [run["started"] for run in runs]
    assert starts == sorted(starts, reverse=True)
    newest, third_run, failed, first = (run["summary"] for run in runs)
    assert first.get("built") == 7
    assert failed.get("failed") == 1 and failed.get("blocked") == 2
    assert failed.get("up to date") == 4 and not failed.get("built")
    third_counts = {o: len(with_outcome(third, o)) for o in set(outcomes(third).values())}
    assert {k: third_run.get(k) for k in third_counts} == third_counts
    assert newest.get("up to date") == 7 and not newest.get("built")
    assert all(run["finished"] >= run["started"] for run in runs)

    text = odibi(root, "history")
    assert text.code == 0 and "failed" in text.out and "ok" in text.out, text.text


# -- 7. two builds in one project ------------------------------------------------------------
# s1 runs until the test removes the file `hold` (30 s at most): the build is in flight
# for exactly as long as the test needs, whatever the machine's load
HELD_CHAIN = '''
    import time
    from pathlib import Path

    HERE = Path(__file__).resolve().parent.parent
    MARKS = HERE / "marks"


    def _mark(what):
        MARKS.mkdir(exist_ok=True)
        (MARKS / what).write_text("")


    def s1(src):
        _mark("started_s1")
        deadline = time.monotonic() + 30
        while (HERE / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        _mark("done_s1")
        return src.assign(s=1)


    def s2(s1):
        _mark("started_s2")
        _mark("done_s2")
        return s1.assign(s=2)


    def s3(s2):
        _mark("started_s3")
        _mark("done_s3")
        return s2.assign(s=3)
'''


def held_chain(root: Path) -> Path:
    return write_files(root, {
        "odibi.yaml": """
            project: slow
            connections:
              raw: {type: local, base_path: data}
            nodes:
              - name: src
                read: {connection: raw, path: src.csv, format: csv}
              - name: s1
                python: transforms.slow:s1
              - name: s2
                python: transforms.slow:s2
              - name: s3
                python: transforms.slow:s3
              - name: total
                sql: SELECT sum(v) AS v, max(s) AS s FROM s3
        """,
        "transforms/__init__.py": "",
        "transforms/slow.py": HELD_CHAIN,
        "data/src.csv": "id,v\n1,10\n2,20\n",
        "hold": "",
    })


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_build(root: Path, *argv: str, log: Path) -> subprocess.Popen:
    """`odibi build` in a subprocess, its stdout and stderr in log.out / log.err."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "odibi", "-C", str(root), "build", *argv],
            stdout=out, stderr=err, env=subprocess_env())


def wait_for(condition, what: str, timeout: float = 30.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the build ended (exit {proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.mark.slow
def test_a_second_build_waits_for_the_first(tmp_path: Path) -> None:
    root = held_chain(tmp_path / "proj")
    first = start_build(root, "--json", "-j", "1", log=tmp_path / "first")
    try:
        wait_for(lambda: (root / "marks" / "started_s1").exists(), "s1 to start", proc=first)

        # read-only commands never wait
        for argv in (("explain", "--json"), ("ls",), ("explain", "s3")):
            t0 = time.monotonic()
            r = odibi(root, *argv)
            took = time.monotonic() - t0
            assert r.code == 0, r.text
            assert took < 2.0, f"odibi {' '.join(argv)} took {took:.2f}s during a build"
        assert "s3" in odibi(root, "ls").out

        # --no-wait refuses at once
        t0 = time.monotonic()
        r = odibi(root, "build", "--no-wait", "-j", "1")
        assert r.code == 2, r.text
        assert "another odibi build is running" in r.err
        assert time.monotonic() - t0 < 2.0
        assert first.poll() is None, "the first build ended before the checks were done"

        # (plain output: with --json, stdout is the report and warnings are not printed)
        second = start_build(root, "-j", "1", log=tmp_path / "second")
        try:
            waiting = wait_for(lambda: "waiting for another build" in (
                text := Path(f"{tmp_path / 'second'}.err").read_text()) and text,
                "the second build to say it waits", proc=second)
            assert f"pid {first.pid}" in waiting
            time.sleep(0.3)  # the second still waits: it says so once, and does not go on
            assert first.poll() is None, "the first build ended before the second waited"
            assert second.poll() is None, "the second build did not wait"
            assert not (root / "marks" / "done_s1").exists()
            (root / "hold").unlink()
            assert finish(first) == 0, Path(f"{tmp_path / 'first'}.err").read_text()
            assert finish(second) == 0, Path(f"{tmp_path / 'second'}.err").read_text()
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()

    report1 = json.loads(Path(f"{tmp_path / 'first'}.out").read_text())
    assert outcomes(report1) == {n: "built" for n in ("src", "s1", "s2", "s3", "total")}
    # the second planned only after the first had finished: it had nothing to do
    assert "nothing to do" in Path(f"{tmp_path / 'second'}.out").read_text()
    runs = json.loads(odibi(root, "history", "--json").out)
    assert [run["status"] for run in runs] == ["ok", "ok"]
    assert runs[0]["started"] >= runs[1]["finished"]
    assert runs[0]["summary"].get("up to date") == 5 and not runs[0]["summary"].get("built")

    # the lock and the state are intact: a third build has nothing to do
    lock = (root / "odibi.lock").read_bytes()
    assert set(read_lock(root)["nodes"]) == {"src", "s1", "s2", "s3", "total"}
    assert state_integrity(root) == "ok"
    assert outcomes(build(root, "-j", "2")) == {}
    assert (root / "odibi.lock").read_bytes() == lock
    with warehouse(root) as con:
        assert con.execute("SELECT v, s FROM main.total").fetchall() == [(30, 3)]
    assert sorted(p.name for p in (root / "marks").iterdir()) == [
        "done_s1", "done_s2", "done_s3", "started_s1", "started_s2", "started_s3"]
