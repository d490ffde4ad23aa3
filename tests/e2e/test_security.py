"""Security guarantees (issue #9, DESIGN §1, §9), through the real CLI:

- YAML is loaded safely: an alias bomb is refused with exit 2, in bounded memory (the
  loader refuses it before expanding; unit tests in test_yaml_load.py);
- a path cannot leave its connection's base_path, through `..` (the bad-input corpus) or
  through a symlink: a linked file, a linked directory, a link a glob matches, a write;
- `${env:X}` values never reach odibi.lock, `.odibi/`, a `--profile` trace or anything
  odibi prints (plain, -v, --json), even when DuckDB quotes the value in an error;
- names that need quoting in SQL (keywords as node names, column names with spaces and
  quotes in rules) reach DuckDB quoted.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.e2e.test_bad_projects import snapshot as files_under
from tests.e2e.test_executor import odibi

BOMB = "".join(
    [f"a0: &a0 [{', '.join(['x'] * 10)}]\n"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)]
)


# -- YAML ----------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["odibi.yaml", "pipelines/p.yaml"])
def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path, where: str) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: p\npipelines: [pipelines/*.yaml]\n",
        "pipelines/p.yaml": "pipeline: p\nnodes: []\n",
    })
    (root / where).write_text((root / where).read_text() + BOMB)
    before = files_under(root)
    tracemalloc.start()
    try:
        r = odibi(root, "build")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.code == 2, r.text
    assert "alias" in r.err and f"{where}:" in r.err, r.err
    assert "Traceback" not in r.text
    # 10^10 list items if expanded; refused before: a few MB at most for the whole command
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert files_under(root) == before


def test_yaml_tags_that_construct_python_objects_are_refused(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: !!python/object/apply:os.system ['touch pwned']\n"})
    r = odibi(root, "validate")
    assert r.code == 2, r.text
    assert "odibi.yaml:1:" in r.err and "Traceback" not in r.text
    assert not (root / "pwned").exists() and not Path("pwned").exists()


# -- paths stay inside their connection ------------------------------------------------------
@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A project whose data/ holds links to a directory outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("id,v\n1,42\n")
    root = write_files(tmp_path / "p", {"data/ok.csv": "id,v\n1,2\n"})
    (root / "data" / "file_link.csv").symlink_to(outside / "secret.csv")
    (root / "data" / "dir_link").symlink_to(outside, target_is_directory=True)
    (root / "out").mkdir()
    (root / "out" / "dir_link").symlink_to(outside, target_is_directory=True)
    return root


@pytest.mark.parametrize("io,path,shown", [
    ("read", "file_link.csv", "path 'file_link.csv' leaves connection 'raw'"),
    ("read", "dir_link/secret.csv", "path 'dir_link/secret.csv' leaves connection 'raw'"),
    ("read", "dir_link/*.csv", "path 'dir_link/*.csv' leaves connection 'raw'"),
    ("read", "*.csv", "file_link.csv is a link that leaves connection 'raw'"),
    ("write", "dir_link/stolen.csv", "path 'dir_link/stolen.csv' leaves connection 'out'"),
])
def test_a_symlink_cannot_take_a_path_out_of_its_connection(linked: Path, io: str, path: str,
                                                            shown: str) -> None:
    node = (f"    read: {{connection: raw, path: '{path}', format: csv}}\n" if io == "read" else
            "    read: {connection: raw, path: ok.csv, format: csv}\n"
            f"    write: {{connection: out, path: '{path}', format: csv}}\n")
    (linked / "odibi.yaml").write_text(
        "project: p\nconnections:\n"
        "  raw: {type: local, base_path: data}\n  out: {type: local, base_path: out}\n"
        "nodes:\n  - name: a\n" + node)
    outside = linked.parent / "outside"
    before, before_outside = files_under(linked), files_under(outside)
    for command in ("validate", "build"):
        r = odibi(linked, command)
        assert r.code == 2, r.text
        assert "odibi.yaml:7:" in r.err or "odibi.yaml:8:" in r.err, r.err
        assert shown in r.err, r.err
        assert "Traceback" not in r.text
    assert files_under(linked) == before
    assert files_under(outside) == before_outside


def test_a_link_that_stays_inside_the_connection_is_fine(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: p\nconnections:\n  raw: {type: local, base_path: data}\n"
                      "nodes:\n  - name: a\n    read: {connection: raw, path: link.csv}\n",
        "data/real/x.csv": "id,v\n1,2\n",
    })
    (root / "data" / "link.csv").symlink_to(root / "data" / "real" / "x.csv")
    r = odibi(root, "build")
    assert r.code == 0, r.text


# -- environment values ----------------------------------------------------------------------
SECRET = "hunter2-Qx7-secret"
SECRET_PROJECT = {
    "odibi.yaml": """
        project: envy
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        nodes:
          - name: src
            read:
              {connection: raw, path: src.csv, options: {nullstr: '${env:ODIBI_SECRET}'}}
          - name: masked
            sql: SELECT id, v, '${env:ODIBI_SECRET}' = 'x' AS leaked FROM src
            write: {connection: out, path: masked.csv}
          - name: bad
            sql: SELECT CAST('${env:ODIBI_SECRET}' AS INTEGER) AS n FROM masked
    """,
    "data/src.csv": "id,v\n1,10\n2,20\n",
}


def test_env_values_reach_no_file_and_no_output(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_SECRET", SECRET)
    root = write_files(tmp_path / "p", SECRET_PROJECT)
    profile = tmp_path / "trace.json"
    printed = []
    # `bad` fails at run time, and DuckDB's message quotes the value it could not convert
    for argv in (("build", "-v", "-j", "2"), ("build", "--json", "--profile", str(profile)),
                 ("build", "-v", "--json", "--force")):
        r = odibi(root, *argv)
        assert r.code == 1, r.text
        printed.append(r.text)
    assert "Could not convert string '${env:ODIBI_SECRET}' to INT32" in printed[0], printed[0]
    fixed = (root / "odibi.yaml").read_text().replace("CAST('${env:ODIBI_SECRET}' AS INTEGER)",
                                                      "length('${env:ODIBI_SECRET}')")
    (root / "odibi.yaml").write_text(fixed)
    for argv in (("build", "-v"), ("explain", "-v"), ("explain", "--json"), ("history",),
                 ("history", "--json"), ("show", "masked"), ("show", "bad", "--json"),
                 ("ls", "-l"), ("graph",), ("validate", "--json")):
        r = odibi(root, *argv)
        assert r.code == 0, (argv, r.text)
        printed.append(r.text)
    for text in printed:
        assert SECRET not in text, text
    written = files_under(root) | {"trace.json": profile.read_bytes()}
    assert {"odibi.lock", ".odibi/state.db", ".odibi/warehouse.duckdb", "output/masked.csv"} \
        <= set(written)
    for name, data in written.items():
        assert SECRET.encode() not in data, name
    # the value was used: `bad` counts its characters
    assert json.loads(odibi(root, "show", "bad", "--json").out)["data"] == [{"n": len(SECRET)}] * 2


# -- quoting -----------------------------------------------------------------------------
def test_keywords_and_odd_column_names_reach_sql_quoted(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": """
            project: q
            connections:
              raw: {type: local, base_path: data}
              out: {type: local, base_path: out}
            nodes:
              - name: select
                read: {connection: raw, path: s.csv}
                contracts:
                  - not_null("my col")
                  - unique("we""ird")
              - name: order
                sql: SELECT id, "my col", "we""ird" FROM "select"
                validate:
                  - all("my col" > 0) and row_count == 2
                  - column_type("we""ird") == 'BIGINT'
                  - accepted_values("my col", [2, 5])
              - name: Group
                sql: SELECT * FROM "order"
                write: {connection: out, path: g.csv}
              - name: from_python
                python: t:f
            checks:
              - name: where
                assert: row_count(Group) == row_count("order")
        """,
        "t.py": "def f(Group):\n    return Group\n",
        "data/s.csv": 'id,my col,"we""ird"\n1,2,3\n2,5,6\n',
    })
    r = odibi(root, "build", "--json")
    assert r.code == 0, r.text
    report = json.loads(r.out)
    assert {n: e.get("outcome") for n, e in report["nodes"].items()} == {
        "select": "built", "order": "built", "Group": "built", "from_python": "built",
        "where": "passed"}
    assert (root / "out" / "g.csv").read_text() == 'id,my col,"we""ird"\n1,2,3\n2,5,6\n'
    shown = json.loads(odibi(root, "show", "from_python", "--json").out)
    assert shown["columns"] == ["id", "my col", 'we"ird'] and shown["rows"] == 2
    # and a failing rule on such a column names it as written
    text = (root / "odibi.yaml").read_text().replace("[2, 5]", "[2]")
    (root / "odibi.yaml").write_text(text)
    r = odibi(root, "build")
    assert r.code == 1, r.text
    assert 'accepted_values("my col", [2])' in r.text, r.text
    assert os.path.exists(root / "out" / "g.csv")
