"""`write:` to a path ending in `/` writes a directory of part files (README, "Running
on Spark": the same on DuckDB), swapped into place whole, and watched like a file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: d
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: out}
        nodes:
          - name: raw_t
            read: {connection: raw, path: t.csv}
          - name: kept
            sql: SELECT id, amount FROM raw_t WHERE amount > 10
            write:
              - {connection: out, path: kept/, format: parquet}
              - {connection: out, path: kept_csv/, format: csv}
        """,
    "data/t.csv": "id,amount\n1,10\n2,20\n3,30\n",
}


def _rows(directory: Path) -> list[tuple]:
    return sorted(tuple(r.values()) for p in sorted(directory.iterdir())
                  for r in pq.read_table(p).to_pylist())


def test_a_directory_export_is_written_whole_and_rewritten_when_touched(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", PROJECT)
    assert run_cli("-C", str(root), "build").code == 0
    assert _rows(root / "out" / "kept") == [(2, 20), (3, 30)]
    csv_parts = sorted((root / "out" / "kept_csv").iterdir())
    assert csv_parts and "".join(p.read_text() for p in csv_parts).count("id,amount") == len(
        csv_parts)
    assert not [p for p in (root / "out").iterdir() if p.name.startswith(".")]

    noop = run_cli("-C", str(root), "build")
    assert "nothing to do" in noop.out + noop.err

    with open(csv_parts[0], "a") as f:  # someone edits a part file
        f.write("99,99\n")
    fixed = run_cli("-C", str(root), "build")
    assert fixed.code == 0 and "re-export" in fixed.out, fixed.out
    assert "99,99" not in "".join(p.read_text() for p in (root / "out" / "kept_csv").iterdir())

    (root / "data" / "t.csv").write_text("id,amount\n1,10\n2,20\n3,30\n4,40\n")
    assert run_cli("-C", str(root), "build").code == 0
    assert _rows(root / "out" / "kept") == [(2, 20), (3, 30), (4, 40)]
