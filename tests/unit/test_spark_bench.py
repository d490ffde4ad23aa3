"""bench/spark_bench.py's own logic, without a JVM: the statements the direct baseline
runs are the heavy pipeline's, in Spark's dialect, and its section of BENCHMARKS.md is
replaced in place, the rest of the file kept."""

from __future__ import annotations

from pathlib import Path

from bench.heavy import HEAVY_SQL
from bench.spark_bench import SECTION, replace_section, spark_statements


def test_the_direct_baseline_runs_every_heavy_node_in_spark_sql() -> None:
    statements = spark_statements(Path("/data/src.parquet"))
    assert [name for name, _ in statements] == ["src"] + [name for name, _ in HEAVY_SQL]
    assert statements[0][1] == "SELECT * FROM parquet.`/data/src.parquet`"
    daily = dict(statements)["daily"]
    assert "DATE_TRUNC('DAY', ts)" in daily and daily.endswith("GROUP BY ALL")


def test_the_section_is_replaced_in_place() -> None:
    doc = f"# Benchmarks\n\n## Heavy\nh\n\n{SECTION}\nold numbers\n\n## Rules\nr\n"
    new = replace_section(doc, f"{SECTION}\n\nnew numbers\n")
    assert new == f"# Benchmarks\n\n## Heavy\nh\n\n{SECTION}\n\nnew numbers\n\n## Rules\nr\n"
    last = replace_section("# Benchmarks\n\n## Heavy\nh\n", f"{SECTION}\n\nnew\n")
    assert last == f"# Benchmarks\n\n## Heavy\nh\n\n{SECTION}\n\nnew\n"
    assert replace_section(last, f"{SECTION}\n\nnewer\n").endswith(f"{SECTION}\n\nnewer\n")
