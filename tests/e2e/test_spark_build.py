"""Incremental builds on a Spark target, as a user sees them through the CLI (issue 17,
"Tests": no-op, touch, reformat, SQL edit closure, revert = restore without a Spark job,
early cutoff, a halting check, kill -9 of the driver then resume; `-j 2`, Python nodes
given Spark and pandas DataFrames, exports to one file and to a directory of part files).

Every `odibi build --target spark` that computes starts a Spark session, so each scenario
runs several builds in sequence and asserts after each. The same steps are taken on the
project's DuckDB target (`dev`, cheap) where the plan's reasons must be the same. Builds
that must start no JVM run in a subprocess that reports whether it imported pyspark.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO, run_cli, write_files
from tests.e2e.spark_support import (SPARK, WAREHOUSE, file_rows, multiset, odibi_process,
                                     processes_in_group, spark_master, spark_rows,
                                     spark_version, targets_yaml, tree_bytes, duckdb_rows)

__all__ = ["spark_master"]  # (the fixture, imported for pytest)

SQL_B = "SELECT id, v * 2 AS w FROM a"
YAML = """
project: sparky
connections:
  raw: {type: local, base_path: data}
  out: {type: local, base_path: out}
TARGETS
nodes:
  - name: a
    read: {connection: raw, path: a.csv}
  - name: b
    sql: SQL_B
    write: {connection: out, path: b.csv, format: csv}
  - name: c
    sql: SELECT id % 2 AS k, sum(w) AS total FROM b GROUP BY id % 2
    write: {connection: out, path: c/, format: parquet}
  - name: d
    sql: SELECT count(*) AS n FROM a
  - name: on_spark
    python: transforms.frames:kind_of
  - name: on_pandas
    python: transforms.frames:as_pandas
"""
FRAMES = '''
import pandas as pd


def name_of(frame) -> str:
    return f"{type(frame).__module__}.{type(frame).__name__}"


def kind_of(b):
    """No annotation: the engine's own DataFrame (Spark's, on Spark); returns one."""
    if hasattr(b, "withColumn"):
        from pyspark.sql import functions as F

        return b.withColumn("kind", F.lit(name_of(b)))
    return b.assign(kind=name_of(b))


def as_pandas(b: pd.DataFrame) -> pd.DataFrame:
    """Annotated pandas: pandas on every engine; returns pandas."""
    return b.assign(kind=name_of(b))
'''
A_CSV = "id,v\n1,10\n2,20\n3,30\n4,40\n"
NODES = ("a", "b", "c", "d", "on_spark", "on_pandas")


def make_project(root: Path, master: str) -> Path:
    yaml = YAML.replace("TARGETS", targets_yaml(master).rstrip("\n")).replace("SQL_B", SQL_B)
    return write_files(root, {"odibi.yaml": yaml, "data/a.csv": A_CSV,
                              "transforms/__init__.py": "", "transforms/frames.py": FRAMES})


def build(root: Path, *argv: str, code: int = 0) -> dict[str, Any]:
    r = run_cli("-C", str(root), "build", "--json", *argv)
    assert r.code == code, r.text
    return json.loads(r.out)


def plan_of(report: dict[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {n: (v["status"], tuple(v["reasons"])) for n, v in report["nodes"].items()}


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {n: v["outcome"] for n, v in report["nodes"].items() if v.get("outcome")}


def edit(path: Path, old: str, new: str) -> None:
    """Replace text, with a later mtime (odibi caches digests by size and mtime)."""
    text = path.read_text()
    assert old in text, old
    before = path.stat().st_mtime_ns
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(before + 10**9, before + 10**9))


def rows(root: Path, node: str) -> Any:
    return multiset(spark_rows(root, node))


def exports(root: Path) -> dict[str, dict[str, bytes]]:
    out = root / "out_spark"
    return {"b.csv": tree_bytes(out / "b.csv"), "c/": tree_bytes(out / "c")}


def test_incremental_builds_on_spark(tmp_path: Path, spark_master: str) -> None:
    root = make_project(tmp_path / "p", spark_master)

    # 1. a first build, two jobs at once: every output right, both exports written
    report = build(root, "--target", SPARK, "-j", "2")
    assert outcomes(report) == dict.fromkeys(NODES, "built")
    assert rows(root, "b") == multiset([{"id": i, "w": 20 * i} for i in (1, 2, 3, 4)])
    assert rows(root, "c") == multiset([{"k": 1, "total": 80}, {"k": 0, "total": 120}])
    assert rows(root, "d") == multiset([{"n": 4}])
    spark_kind = {r["kind"] for r in spark_rows(root, "on_spark")}
    pandas_kind = {r["kind"] for r in spark_rows(root, "on_pandas")}
    assert len(spark_kind) == 1 and spark_kind.pop().startswith("pyspark.sql."), spark_kind
    assert len(pandas_kind) == 1 and pandas_kind.pop().startswith("pandas."), pandas_kind
    out = root / "out_spark"
    assert out.joinpath("b.csv").is_file(), "a path with an extension is one file"
    assert multiset(file_rows(out / "b.csv")) == rows(root, "b")
    parts = [p for p in (out / "c").iterdir()]
    assert parts and all(p.is_file() and p.name.endswith(".parquet") for p in parts), parts
    assert multiset(file_rows(out / "c")) == rows(root, "c")
    assert not (root / "out").exists(), "the spark target wrote the dev target's files"
    first = exports(root)
    versions = {n: spark_version(root, n) for n in NODES}
    dev = build(root)  # the same project on DuckDB: the same outputs
    assert plan_of(dev) == plan_of(report)
    for node in NODES:
        if node not in ("on_spark", "on_pandas"):
            assert multiset(duckdb_rows(root, node)) == rows(root, node), node

    # 2. nothing changed: nothing to do, and no JVM (pyspark is not even imported)
    noop = odibi_process(root, "build", "--target", SPARK)
    assert noop.code == 0 and "nothing to do" in noop.out, noop.text
    assert noop.imported["pyspark"] is False

    # 3. a source touched, its bytes the same: nothing to do
    a_csv = root / "data" / "a.csv"
    st = a_csv.stat()
    os.utime(a_csv, ns=(st.st_atime_ns + 5 * 10**9, st.st_mtime_ns + 5 * 10**9))
    touched = odibi_process(root, "build", "--target", SPARK)
    assert touched.code == 0 and "nothing to do" in touched.out, touched.text
    assert touched.imported["pyspark"] is False

    # 4. SQL reformatted (spacing, line breaks, a comment): nothing to rebuild
    yaml = root / "odibi.yaml"
    reformatted = "|\n      SELECT id,\n             v*2   AS w   -- doubled\n      FROM a\n"
    edit(yaml, f"sql: {SQL_B}\n", f"sql: {reformatted}")
    again = odibi_process(root, "build", "--target", SPARK)
    assert again.code == 0 and "nothing to do" in again.out, again.text
    assert again.imported["pyspark"] is False

    # 4b. an export edited in place outside odibi is written again, as the version made
    # it (from the copy kept with the version: no Spark job)
    with open(out / "b.csv", "a") as f:
        f.write("99,99\n")
    reexport = odibi_process(root, "build", "--json", "--target", SPARK)
    assert reexport.code == 0, reexport.text
    assert outcomes(reexport.json()) == {"b": "exported"}
    assert reexport.imported["pyspark"] is False
    assert exports(root) == first, "the re-export kept the edited file"

    # 5. an SQL edit rebuilds exactly the node and what reads it, for the reasons DuckDB gives
    edit(yaml, "v*2   AS w", "v*3   AS w")
    report = build(root, "--target", SPARK)
    closure = {"b", "c", "on_spark", "on_pandas"}
    assert outcomes(report) == dict.fromkeys(closure, "built")
    assert plan_of(report)["b"] == ("rebuild", ("sql changed",))
    assert plan_of(report)["c"] == ("rebuild", ("upstream rebuilt: b",))
    assert plan_of(build(root)) == plan_of(report)
    assert rows(root, "b") == multiset([{"id": i, "w": 30 * i} for i in (1, 2, 3, 4)])
    assert multiset(file_rows(out / "b.csv")) == rows(root, "b")
    assert multiset(file_rows(out / "c")) == multiset([{"k": 1, "total": 120},
                                                        {"k": 0, "total": 180}])
    assert {n: spark_version(root, n) for n in ("a", "d")} == \
        {n: versions[n] for n in ("a", "d")}

    # 6. reverted: every changed node restored, no Spark job (no JVM), exports as before
    edit(yaml, "v*3   AS w", "v*2   AS w")
    t0 = time.monotonic()
    restore = odibi_process(root, "build", "--json", "--target", SPARK)
    wall = time.monotonic() - t0
    assert restore.code == 0, restore.text
    report = restore.json()
    assert outcomes(report) == dict.fromkeys(closure, "restored")
    assert restore.imported["pyspark"] is False, "a restore started Spark"
    assert report["seconds"] < 1.0, f"a restore took {report['seconds']} s ({wall:.1f} s wall)"
    assert exports(root) == first, "the exports did not return to their earlier bytes"
    assert {n: spark_version(root, n) for n in NODES} == versions
    assert plan_of(build(root)) == plan_of(report)

    # 7. early cutoff: an edit whose output is the same stops at the node it changed
    edit(yaml, "-- doubled\n      FROM a\n", "-- doubled\n      FROM a WHERE id > 0\n")
    report = build(root, "--target", SPARK)
    assert outcomes(report) == {"b": "built", "c": "cut off", "on_spark": "cut off",
                                "on_pandas": "cut off"}
    assert plan_of(build(root)) == plan_of(report)
    assert exports(root) == first
    assert {n: spark_version(root, n) for n in NODES if n != "b"} == \
        {n: v for n, v in versions.items() if n != "b"}

    # 8. a halting check fails: exit 1, the export of the node it reads is held back, and
    # what had not run when it failed keeps the outputs and exports of the earlier builds.
    # (A halt starts no new node; it does not order the check before the checked node's
    # dependants: with -j 1 the scheduler may run them first.)
    text = yaml.read_text() + ("checks:\n  - name: small_w\n    assert: max(b.w) < 1000\n"
                               "    on_fail: halt\n")
    yaml.write_text(text)
    edit(a_csv, A_CSV, A_CSV + "5,900\n")
    before = {n: spark_version(root, n) for n in NODES}
    report = build(root, "--target", SPARK, "-j", "1", code=1)
    got = outcomes(report)
    assert report["halted_by"] == "small_w"
    assert got["small_w"] == "failed"
    assert report["nodes"]["small_w"]["error"] == \
        "max(b.w) < 1000 failed on b: max(b.w) = 1800"  # as on DuckDB
    assert [h["paths"] for h in report["held_exports"]] == [["out_spark/b.csv"]]
    assert got["a"] == got["b"] == "built"
    assert exports(root)["b.csv"] == first["b.csv"], "a halting check let an export through"
    for node in ("c", "d", "on_spark", "on_pandas"):
        if got.get(node, "not started") in ("not started", "interrupted"):
            assert spark_version(root, node) == before[node], node
    if got.get("c", "not started") != "built":
        assert exports(root)["c/"] == first["c/"]


# -- kill -9 of the driver --------------------------------------------------------------------
KILL_YAML = """
project: killed
sql_dialect: spark
connections:
  raw: {type: local, base_path: data}
  out: {type: local, base_path: out}
TARGETS
nodes:
  - name: a
    read: {connection: raw, path: a.csv}
  - name: big
    sql: SELECT a.id, r.id AS r FROM a CROSS JOIN range(ROWS) AS r
  - name: total
    sql: SELECT count(*) AS n, sum(r) AS s, sum(id) AS ids FROM big
    write: {connection: out, path: total.csv, format: csv}
"""
BIG_ROWS = 400_000  # per row of a: writing `big` takes a second or more: time to kill it


def wait_until(condition: Any, what: str, proc: subprocess.Popen, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the build ended (exit {proc.returncode}) before {what}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_the_driver_mid_build_then_resume(tmp_path: Path, spark_master: str) -> None:
    yaml = KILL_YAML.replace("TARGETS", targets_yaml(spark_master).rstrip("\n"))
    files = {"odibi.yaml": yaml.replace("ROWS", str(BIG_ROWS)), "data/a.csv": A_CSV}
    killed, clean = write_files(tmp_path / "killed", files), write_files(tmp_path / "clean", files)
    log = tmp_path / "killed.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "odibi", "-C", str(killed), "build", "--target", SPARK],
            stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    store, tmp = killed / WAREHOUSE / "store", killed / WAREHOUSE / "tmp"
    try:
        wait_until(lambda: (killed / WAREHOUSE / "current" / "a").exists(),
                   "the first node to finish", proc, timeout=300)
        wait_until(lambda: any(p.name.startswith("big__") for p in tmp.iterdir()),
                   "big to start writing", proc, timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    deadline = time.monotonic() + 10
    while processes_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_in_group(proc.pid) == [], "the driver's JVM outlived it"
    assert not any(p.name.startswith("big__") for p in store.iterdir()), \
        "a half-written version is in the store"
    assert not (killed / WAREHOUSE / "current" / "big").exists()

    resumed = build(killed, "--target", SPARK)
    assert outcomes(resumed) == {"big": "built", "total": "built"}, "a was not kept"
    assert list(tmp.iterdir()) == [], "the killed build's temp files were left"
    fresh = build(clean, "--target", SPARK)
    assert outcomes(fresh) == {"a": "built", "big": "built", "total": "built"}
    for node in ("a", "big", "total"):
        assert spark_version(killed, node) == spark_version(clean, node), node
        assert rows(killed, node) == rows(clean, node), node
    total = (killed / "out_spark" / "total.csv").read_bytes()
    assert total == (clean / "out_spark" / "total.csv").read_bytes()
    n = 4 * BIG_ROWS
    assert multiset(file_rows(killed / "out_spark" / "total.csv")) == multiset(
        [{"n": n, "s": 4 * BIG_ROWS * (BIG_ROWS - 1) // 2, "ids": 10 * BIG_ROWS}])
    shutil.rmtree(clean)
