"""Which halting checks guard which exports (odibi/guards.py), on real resolved projects."""

from __future__ import annotations

from pathlib import Path

from odibi.config.load import load_project
from odibi.guards import ExportGuards, export_guards
from odibi.resolve import resolve
from tests.conftest import write_files

PROJECT = """
    project: g
    connections:
      raw: {type: local, base_path: data}
      out: {type: local, base_path: out}
    nodes:
      - name: src
        read: {connection: raw, path: a.csv}
      - name: first                       # writes; read back by `again`
        sql: SELECT * FROM src
        write: {connection: out, path: first.csv}
      - name: again                       # reads first's export
        read: {connection: out, path: first.csv}
      - name: second                      # writes; reads first in the warehouse
        sql: SELECT * FROM first
        write: {connection: out, path: second.csv}
      - name: quiet                       # writes; no check reads it
        sql: SELECT * FROM src
        write: {connection: out, path: quiet.csv}
    checks:
      - name: direct                      # reads second directly, first through it
        assert: row_count(second) > 0
      - name: of_the_file                 # reads first's export: audits the file itself
        assert: row_count(again) > 0
        on_fail: halt
      - name: just_warns
        assert: row_count(first) > 0
        on_fail: warn
"""


def test_halting_checks_guard_the_writers_they_read_but_not_through_their_own_export(
        tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {"odibi.yaml": PROJECT, "data/a.csv": "id\n1\n"})
    resolved = resolve(load_project(root))
    assert export_guards(resolved) == {"first": ("direct",), "second": ("direct",)}
    lazy = ExportGuards(resolved)
    assert lazy.get("quiet", ()) == () and dict(lazy) == export_guards(resolved)
