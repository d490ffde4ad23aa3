"""What the Spark end-to-end tests share: the master they build on, the one Spark target
they all declare, the CLI run in a subprocess that says whether it imported pyspark, and
every node's output read back from a warehouse (Spark's Parquet store or DuckDB's file)
as a multiset of normalised rows.

Spark is heavy (a driver JVM per process, ~8-15 s to start on 2 cores): builds that
compute run in this process through `run_cli` (pyspark keeps its JVM gateway between
sessions, so only the first build starts a JVM), and only the commands that must start
no JVM at all, or that must be killed, run in a subprocess.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

SPARK = "spark"  # the Spark target's name in every test project
WAREHOUSE = Path(".odibi") / "targets" / SPARK / "spark-warehouse"
CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
        "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


@pytest.fixture(scope="session")
def spark_master(spark_cluster: Any) -> str:
    """The master every Spark build test builds on: the session's standalone cluster (a
    real master and worker on 127.0.0.1, tests/spark_cluster.py). `local[2]` is covered by
    tests/e2e/test_spark_cluster.py, the Connect test and `odibi test`'s scratch."""
    return str(spark_cluster.master_url)


def targets_yaml(master: str, *, warehouse: str | None = None, out: str = "out_spark",
                 extra: Mapping[str, str] | None = None) -> str:
    """A `targets:` section: `dev` (DuckDB, the default) and `spark` on `master`, whose
    `out` connection writes under `out` (dev and spark never write the same files)."""
    conf = ", ".join(f"{k}: {v}" for k, v in {**CONF, **(extra or {})}.items())
    lines = ["targets:", "  dev: {engine: duckdb}", f"  {SPARK}:", "    engine: spark",
             f"    master: {json.dumps(master)}", f"    conf: {{{conf}}}",
             f"    connections: {{out: {{base_path: {out}}}}}"]
    if warehouse is not None:
        lines.append(f"    warehouse: {json.dumps(warehouse)}")
    return "\n".join(lines) + "\n"


# -- the CLI in a subprocess ----------------------------------------------------------------
_PROBE = textwrap.dedent("""
    import json, os, sys
    if os.environ.get("ODIBI_TEST_NO_PYSPARK"):
        sys.modules["pyspark"] = None  # as if not installed: find_spec and import say so
    from odibi.cli.main import main
    code = main(sys.argv[1:])
    with open(os.environ["ODIBI_TEST_PROBE"], "w") as f:
        json.dump({"pyspark": "pyspark" in sys.modules and sys.modules["pyspark"] is not None,
                   "pandas": "pandas" in sys.modules}, f)
    sys.exit(code)
""")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    imported: Mapping[str, bool]  # {"pyspark": ..., "pandas": ...} when the process ended

    @property
    def text(self) -> str:
        return self.out + self.err

    def json(self) -> Any:
        return json.loads(self.out)


def odibi_process(root: Path, *argv: str, env: Mapping[str, str] | None = None,
                  unset: Iterable[str] = (), no_pyspark: bool = False,
                  timeout: float = 600) -> Run:
    """`odibi argv...` in a fresh Python process working in `root`: what it printed, and
    whether it imported pyspark (a process that never imports pyspark starts no JVM)."""
    probe = root.parent / f".probe-{os.getpid()}.json"
    probe.unlink(missing_ok=True)
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", "ODIBI_TEST_PROBE": str(probe),
               "PYTHONPATH": str(REPO), **(env or {})}
    for name in unset:
        environ.pop(name, None)
    if no_pyspark:
        environ["ODIBI_TEST_NO_PYSPARK"] = "1"
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], cwd=root,
                          capture_output=True, text=True, env=environ, timeout=timeout)
    imported = json.loads(probe.read_text()) if probe.exists() else {}
    probe.unlink(missing_ok=True)
    return Run(done.returncode, done.stdout, done.stderr, imported)


def processes_in_group(pgid: int) -> list[str]:
    """Command lines of the processes still alive in process group `pgid` (a killed
    build's driver JVM, say)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] != "Z":  # (a zombie is dead)
            found.append(f"{pid}: {cmd[:200]}")
    return found


# -- outputs ----------------------------------------------------------------------------------
Row = tuple[Any, ...]


def normalised(value: Any) -> Any:
    """A value as both engines can agree on it: every number a float rounded to 9
    significant digits (BIGINT, HUGEINT, DOUBLE and DECIMAL alike), dates and timestamps
    as ISO text (a Spark timestamp in UTC, naive), NaN as None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, decimal.Decimal, float)):
        f = float(value)
        if math.isnan(f):
            return None
        return float(f"{f:.9g}")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return normalised(value.item())
    return str(value)


def multiset(rows: Iterable[Mapping[str, Any]]) -> Counter[Row]:
    """Rows as a multiset of normalised tuples, columns in name order."""
    return Counter(tuple((k, normalised(v)) for k, v in sorted(r.items())) for r in rows)


def spark_version(root: Path, node: str, warehouse: Path | None = None) -> str:
    """The version `node` names now in the Spark target's warehouse."""
    where = warehouse or root / WAREHOUSE
    return (where / "current" / node).read_text().strip()


def spark_rows(root: Path, node: str, warehouse: Path | None = None) -> list[dict[str, Any]]:
    """`node`'s current output on the Spark target, read with pyarrow from its Parquet
    directory in the store."""
    import pyarrow.parquet as pq

    where = warehouse or root / WAREHOUSE
    version = spark_version(root, node, where)
    return pq.read_table(where / "store" / f"{node}__{version}").to_pylist()


def duckdb_rows(root: Path, node: str) -> list[dict[str, Any]]:
    """`node`'s current output on the default DuckDB target."""
    import duckdb

    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=True)
    try:
        cur = con.execute(f'SELECT * FROM main."{node}"')
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


def file_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an exported file, or of a directory of part files (csv or parquet)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    files = sorted(p for p in path.iterdir() if not p.name.startswith((".", "_"))) \
        if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for f in files:
        if ".csv" in f.name:
            rows += pcsv.read_csv(f).to_pylist()
        else:
            rows += pq.read_table(f).to_pylist()
    return rows


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or `path` itself) by relative name: what a user sees."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}
