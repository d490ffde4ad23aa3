"""Builds at the edges: reruns whose output may change, nodes that read what another
writes, environment variables, selections that cannot be built, and mistakes that must
leave nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, write_files

HEAD = """\
    project: p
    connections:
      raw: {type: local, base_path: data}
      mid: {type: local, base_path: mid}
    pipelines: [p.yaml]
"""


def make(tmp_path: Path, pipeline: str, **files: str) -> Path:
    root = write_files(tmp_path / "p", {"odibi.yaml": HEAD, "p.yaml": pipeline,
                                        "data/a.csv": "id,v\n1,10\n2,20\n", **files})
    return root


def build(root: Path, *argv: str, code: int = 0) -> dict[str, Any]:
    r = run_cli("-C", str(root), "build", "--json", "-j", "2", *argv)
    assert r.code == code, r.text
    return json.loads(r.out)


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {n: e["outcome"] for n, e in report["nodes"].items() if "outcome" in e}


def later(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


# -- reruns whose output may change --------------------------------------------------------
ALWAYS = """\
    pipeline: p
    nodes:
      - name: api
        python: transforms.api:fetch
        always_run: true
      - name: total
        sql: SELECT sum(v) AS total FROM api
"""
API = """\
import pathlib

import pandas as pd


def fetch() -> pd.DataFrame:  # an API odibi cannot fingerprint: a file outside the project
    return pd.read_csv(pathlib.Path(__file__).resolve().parent.parent / "api.csv")
"""


def make_api(tmp_path: Path) -> Path:
    return make(tmp_path, ALWAYS, **{"transforms/__init__.py": "", "transforms/api.py": API,
                                     "api.csv": "id,v\n1,10\n2,20\n"})


def test_dependants_of_an_always_run_node_follow_its_output(tmp_path: Path) -> None:
    root = make_api(tmp_path)
    build(root)
    # it reruns every time; the same output -> its dependant is cut off
    assert outcomes(build(root)) == {"api": "built", "total": "cut off"}
    # new data: the dependant runs although no fingerprint changed
    (root / "api.csv").write_text("id,v\n1,10\n2,20\n3,11\n")
    report = build(root)
    assert outcomes(report) == {"api": "built", "total": "built"}
    assert report["nodes"]["total"]["reasons"] == ["upstream reruns: api"]
    r = run_cli("-C", str(root), "show", "total", "--json")
    assert json.loads(r.out)["data"] == [{"total": 41}]


def test_a_node_built_from_an_older_output_of_its_upstream_is_rebuilt(tmp_path: Path) -> None:
    root = make_api(tmp_path)
    build(root)
    (root / "api.csv").write_text("id,v\n1,10\n2,20\n3,11\n")
    build(root, "api")  # only the source: its dependant now lags behind
    r = run_cli("-C", str(root), "explain", "--json", "--only", "total")
    (entry,) = json.loads(r.out)["nodes"]
    assert entry["status"] == "rebuild"
    assert [x["summary"] for x in entry["reasons"]] == ["upstream output changed: api"]
    assert outcomes(build(root, "--only", "total")) == {"total": "built"}


# -- a node that reads what another writes ---------------------------------------------------
HANDOFF = """\
    pipeline: p
    nodes:
      - name: src
        read: {connection: raw, path: a.csv}
      - name: w
        sql: SELECT id, v * 2 AS v FROM src
        write: {connection: mid, path: x.csv}
      - name: r
        read: {connection: mid, path: x.csv}
      - name: d
        sql: SELECT sum(v) AS s FROM r
"""


def test_a_read_of_an_exported_file_waits_for_its_writer(tmp_path: Path) -> None:
    root = make(tmp_path, HANDOFF)
    report = build(root)  # the very first build: x.csv does not exist until w runs
    assert outcomes(report) == {n: "built" for n in ("src", "w", "r", "d")}
    assert json.loads(run_cli("-C", str(root), "show", "d", "--json").out)["data"] == [{"s": 60}]
    # a source edit settles in one build
    later(root / "data" / "a.csv", "id,v\n1,10\n2,25\n")
    assert set(outcomes(build(root))) == {"src", "w", "r", "d"}
    assert outcomes(build(root)) == {}
    assert json.loads(run_cli("-C", str(root), "show", "d", "--json").out)["data"] == [{"s": 70}]
    # a deleted handoff file is re-exported before its reader would need it
    (root / "mid" / "x.csv").unlink()
    report = build(root)
    assert outcomes(report) == {"w": "exported"}
    assert (root / "mid" / "x.csv").exists()


def test_two_nodes_writing_one_file_is_an_error(tmp_path: Path) -> None:
    root = make(tmp_path, HANDOFF + "        write: {connection: mid, path: ./x.csv}\n")
    r = run_cli("-C", str(root), "validate")
    assert r.code == 2 and "Traceback" not in r.text
    assert "error: nodes 'w' and 'd' both write ./x.csv (connection 'mid')" in r.err


# -- environment variables -----------------------------------------------------------------
ENV = """\
    pipeline: p
    nodes:
      - name: src
        read: {connection: raw, path: a.csv}
      - name: tagged
        sql: SELECT id, '${env:ODIBI_TEST_REGION}' AS region FROM src
"""


def test_an_environment_variable_used_by_a_node_is_part_of_its_fingerprint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make(tmp_path, ENV)
    monkeypatch.setenv("ODIBI_TEST_REGION", "secret-eu-1234")
    build(root)
    assert outcomes(build(root)) == {}
    monkeypatch.setenv("ODIBI_TEST_REGION", "secret-us-5678")
    report = build(root)
    assert outcomes(report) == {"tagged": "built"}
    assert report["nodes"]["tagged"]["reasons"] == [
        "environment variable changed: ODIBI_TEST_REGION"]
    # the value itself is never written: not in the lock, not in .odibi
    for path in [root / "odibi.lock", *(root / ".odibi").rglob("*")]:
        if path.is_file() and path.suffix != ".duckdb" and "warehouse" not in path.name:
            data = path.read_bytes()
            assert b"secret-eu-1234" not in data and b"secret-us-5678" not in data, path
    assert "env.ODIBI_TEST_REGION = " in (root / "odibi.lock").read_text()


# -- a write's variables re-export, they do not recompute ----------------------------------
WRITE_VAR = """\
    pipeline: p
    nodes:
      - name: src
        read: {connection: raw, path: a.csv}
      - name: t
        sql: SELECT * FROM src
        write: {connection: mid, path: 't_${vars.suffix}.csv'}
      - name: u
        sql: SELECT count(*) AS n FROM t
"""


def test_a_variable_used_only_in_a_write_path_re_exports(tmp_path: Path) -> None:
    root = make(tmp_path, WRITE_VAR, **{"odibi.yaml": HEAD + "    vars: {suffix: a}\n"})
    build(root)
    report = build(root, "--var", "suffix=b")
    assert outcomes(report) == {"t": "exported"}
    assert (root / "mid" / "t_b.csv").read_text() == (root / "mid" / "t_a.csv").read_text()


# -- what cannot be built --------------------------------------------------------------------
def test_a_selection_whose_upstream_was_never_built_fails_and_says_why(tmp_path: Path) -> None:
    root = make(tmp_path, ENV.replace("'${env:ODIBI_TEST_REGION}'", "'x'"))
    r = run_cli("-C", str(root), "build", "--only", "tagged")
    assert r.code == 1
    assert ("blocked tagged: src never built and left out by --only; build without --only "
            "to build them too") in r.err
    assert "out of date but left out" not in r.text
    r = run_cli("-C", str(root), "build", "tagged")  # a target brings what it needs
    assert r.code == 0, r.text
    assert "src     rebuild: new node" in r.out


def test_an_added_input_is_named(tmp_path: Path) -> None:
    root = make(tmp_path, HANDOFF)
    build(root)
    later(root / "p.yaml", HANDOFF.replace("SELECT sum(v) AS s FROM r",
                                           "SELECT sum(r.v) AS s FROM r, src WHERE r.id = src.id"))
    r = run_cli("-C", str(root), "explain", "--json", "d")
    (entry,) = [e for e in json.loads(r.out)["nodes"] if e["node"] == "d"]
    summaries = [x["summary"] for x in entry["reasons"]]
    assert summaries[:2] == ["sql changed", "input added: src"]


# -- mistakes leave nothing behind -----------------------------------------------------------
def test_a_build_of_a_broken_project_writes_nothing(tmp_path: Path) -> None:
    root = make(tmp_path, ENV.replace("FROM src", "FROM srcc"))
    r = run_cli("-C", str(root), "build")
    assert r.code == 2 and "Traceback" not in r.text
    assert not (root / ".odibi").exists()
    assert not (root / "odibi.lock").exists()


def test_odibi_state_dir_that_is_a_file_is_a_clean_error(tmp_path: Path) -> None:
    root = make(tmp_path, HANDOFF)
    (root / ".odibi").write_text("not a directory")
    r = run_cli("-C", str(root), "build")
    assert r.code == 2 and "Traceback" not in r.text
    assert ".odibi is a file" in r.err


def test_show_with_a_negative_limit_is_a_usage_error(tmp_path: Path) -> None:
    root = make(tmp_path, HANDOFF)
    build(root)
    r = run_cli("-C", str(root), "show", "d", "--limit", "-1")
    assert r.code == 2 and "--limit must be 0 or more" in r.err and "Traceback" not in r.text


# -- the warehouse's block size --------------------------------------------------------------
def _block_size(root: Path) -> int:
    import duckdb

    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=True)
    try:
        return int(con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0])
    finally:
        con.close()


def _sized_source(path: Path, size: int) -> None:
    """A csv of about `size` bytes (id,v rows)."""
    rows = max(1, size // 16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,v\n" + "".join(f"{i:>7},{i % 97:>7}\n" for i in range(rows)))


SIZED = """\
    pipeline: p
    nodes:
      - name: src
        read: {connection: raw, path: a.csv}
      - name: total
        sql: SELECT sum(v) AS v FROM src
"""


def test_a_project_of_small_data_gets_small_warehouse_blocks(tmp_path: Path) -> None:
    """Every table takes at least one block: many tiny nodes in DuckDB's default 256 KiB
    blocks would write a quarter of a megabyte each (README "Warehouse blocks")."""
    from odibi.engines.duckdb_engine import SMALL_BLOCKS, SMALL_SOURCES

    root = make(tmp_path, SIZED)
    _sized_source(root / "data" / "a.csv", SMALL_SOURCES // 2)
    build(root)
    assert _block_size(root) == SMALL_BLOCKS == 16384
    # the warehouse keeps the block size it was made with, whatever the data becomes
    _sized_source(root / "data" / "a.csv", SMALL_SOURCES + 4096)
    report = build(root)
    assert outcomes(report) == {"src": "built", "total": "built"}
    assert _block_size(root) == SMALL_BLOCKS


def test_a_project_of_large_data_gets_duckdbs_default_blocks(tmp_path: Path) -> None:
    from odibi.engines.duckdb_engine import LARGE_BLOCKS, SMALL_SOURCES

    root = make(tmp_path, SIZED)
    _sized_source(root / "data" / "a.csv", SMALL_SOURCES + 4096)
    report = build(root)
    assert outcomes(report) == {"src": "built", "total": "built"}
    assert _block_size(root) == LARGE_BLOCKS == 262144
