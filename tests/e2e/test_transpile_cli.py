"""A project written in DuckDB SQL on a Spark target (odibi/dialects.py through resolve):
`explain -v` shows the SQL a node runs there, `validate` checks every statement without a
JVM, and a Spark build runs the translation (its rows are DuckDB's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import run_cli

PROJECT = {
    "odibi.yaml": """project: p
targets:
  dev: {engine: duckdb}
  prod: {engine: spark, master: "local[1]", conf: {spark.sql.shuffle.partitions: 2}}
connections:
  raw: {type: local, base_path: data}
nodes:
  - name: orders
    read: {connection: raw, path: orders.csv}
  - name: whole
    sql: |
      SELECT order_id, CAST(amount AS INTEGER) AS amount_int
      FROM orders
      QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY amount) = 1
  - name: copy
    sql: SELECT order_id FROM whole
""",
    "data/orders.csv": "order_id,amount\n1,10.5\n2,3\n3,7.5\n4,-2.5\n",
}


def test_explain_v_shows_what_a_node_runs_on_the_target(project) -> None:
    root: Path = project(PROJECT)
    got = run_cli("-C", str(root), "explain", "-v", "--target", "prod")
    assert got.code == 0, got.text
    lines = got.out.splitlines()
    at = lines.index("    runs on spark as:")
    assert lines[at - 1].startswith("whole ")
    shown = "\n".join(lines[at + 1:])
    assert "BROUND(amount)" in shown and "ROW_NUMBER() OVER" in shown
    # a statement whose translation is itself (but for layout and case) is not repeated
    assert lines.count("    runs on spark as:") == 1
    # on its own dialect's target, nothing runs translated
    plain = run_cli("-C", str(root), "explain", "-v")
    assert "runs on" not in plain.out


def test_validate_on_a_spark_target_starts_no_jvm(project) -> None:
    root: Path = project(PROJECT)
    code = ("import sys; from odibi.cli.main import main; "
            f"assert main(['-C', {str(root)!r}, 'validate', '--target', 'prod']) == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_spark_build_runs_the_translation_with_duckdb_s_rows(project) -> None:
    """DuckDB rounds a DOUBLE cast to an integer half to even (10.5 -> 10), Spark would
    truncate (10.5 -> 10, 7.5 -> 7): the translation makes Spark's rows DuckDB's."""
    root: Path = project(PROJECT)
    assert run_cli("-C", str(root), "build", "-q").code == 0
    dev = run_cli("-C", str(root), "show", "whole")
    built = run_cli("-C", str(root), "build", "-q", "--target", "prod")
    assert built.code == 0, built.text
    prod = run_cli("-C", str(root), "show", "whole", "--target", "prod")
    rows = lambda text: sorted(line.split() for line in text.splitlines()[2:] if line.strip())
    assert rows(dev.out) == [["1", "10"], ["2", "3"], ["3", "8"], ["4", "-2"]]
    assert rows(prod.out) == rows(dev.out)
