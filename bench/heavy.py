"""The heavy scenario's data and pipeline, shared by bench/run.py (on DuckDB) and
bench/spark_bench.py (on Spark): a Parquet source and five SQL nodes over it."""

from __future__ import annotations

from pathlib import Path

HEAVY_SQL = [
    ("clean", "SELECT id, k, v, ts FROM src WHERE v >= 0"),
    ("by_key", "SELECT k, count(*) AS n, sum(v) AS total, avg(v) AS mean FROM clean GROUP BY k"),
    ("ranked", "SELECT id, k, v, row_number() OVER (PARTITION BY k ORDER BY v DESC) AS r "
               "FROM clean"),
    ("top", "SELECT r.k, r.id, r.v, b.total FROM ranked AS r JOIN by_key AS b USING (k) "
            "WHERE r.r <= 100"),
    ("daily", "SELECT date_trunc('day', ts) AS day, count(*) AS n, sum(v) AS total "
              "FROM clean GROUP BY ALL"),
]


def write_heavy_source(src: Path, rows_n: int) -> None:
    """The heavy scenario's source: rows_n rows (id, k: 1,000 keys, v: 0-100, ts) as Parquet."""
    import duckdb

    src.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS id, range % 1000 AS k, (random() * 100)::DOUBLE AS v, "
                f"TIMESTAMP '2024-01-01' + to_seconds(range % 31536000) AS ts "
                f"FROM range({rows_n})) TO '{src}' (FORMAT parquet)")
    con.close()


def heavy_yaml() -> str:
    """odibi.yaml of the heavy project (its source at data/src.parquet)."""
    lines = ["project: heavy", "connections:", "  raw: {type: local, base_path: data}",
             "nodes:", "  - name: src", "    read: {connection: raw, path: src.parquet}"]
    for name, sql in HEAVY_SQL:
        lines += [f"  - name: {name}", f"    sql: {sql}"]
    return "\n".join(lines) + "\n"
