"""A Spark target reached through Spark Connect (`remote: sc://...`), as Databricks
clusters are reached today: a real Connect server, started from pyspark's own launcher
on 127.0.0.1 and stopped by its PID after, builds a project to the same outputs as
DuckDB, incrementally."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_files

START_TIMEOUT = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pyspark

    home = Path(pyspark.__file__).parent
    logs = tmp_path_factory.mktemp("connect")
    port = _free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(logs),
           "SPARK_HOME": str(home)}
    log = open(logs / "server.log", "wb")
    proc = subprocess.Popen(
        [str(home / "bin" / "spark-submit"), "--class",
         "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
         "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
         "--conf", "spark.driver.bindAddress=127.0.0.1",
         "--conf", "spark.sql.shuffle.partitions=2", "--driver-memory", "1g",
         "spark-internal"], stdout=log, stderr=subprocess.STDOUT, env=env,
        start_new_session=True, cwd=logs)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, (logs / "server.log").read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the Connect server did not start"
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        with_pid = proc.pid
        try:
            os.killpg(with_pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(with_pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
        assert proc.poll() is not None


def _project(remote: str) -> dict[str, str]:
    return {
        "odibi.yaml": f"""
            project: viaconnect
            connections:
              raw: {{type: local, base_path: data}}
              out: {{type: local, base_path: out}}
            targets:
              dev: {{engine: duckdb}}
              connect:
                engine: spark
                remote: "{remote}"
                connections: {{out: {{base_path: out_connect}}}}
            nodes:
              - name: raw_t
                read: {{connection: raw, path: t.csv}}
              - name: big
                sql: SELECT id, name, amount * 2 AS amount2 FROM raw_t WHERE amount > 10
                validate:
                  - unique(id)
                  - all(amount2 > 0)
                write: {{connection: out, path: big.parquet}}
              - name: total
                sql: SELECT count(*) AS n, sum(amount2) AS s FROM big
                write: {{connection: out, path: total/, format: parquet}}
            """,
        "data/t.csv": "id,name,amount\n1,a,10\n2,b,20\n3,c,30\n",
    }


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """odibi in a process of its own: pyspark marks a process that started a Spark Connect
    session as Connect-only, and the other Spark tests start classic sessions in pytest's."""
    done = subprocess.run([sys.executable, "-m", "odibi", *argv], capture_output=True,
                          text=True, timeout=600)
    done.code = done.returncode  # type: ignore[attr-defined]
    done.out, done.err = done.stdout, done.stderr  # type: ignore[attr-defined]
    return done


def _rows(path: Path) -> list[tuple]:
    table = pq.read_table(path)
    return sorted(tuple(r.values()) for r in table.to_pylist())


def test_a_project_builds_through_spark_connect_as_on_duckdb(connect_server: str,
                                                             tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", _project(connect_server))
    first = run_cli("-C", str(root), "build", "--target", "connect", "-j", "2")
    assert first.code == 0, first.err
    duck = run_cli("-C", str(root), "build")
    assert duck.code == 0, duck.err
    assert _rows(root / "out_connect" / "big.parquet") == _rows(root / "out" / "big.parquet")
    assert _rows(root / "out_connect" / "big.parquet") == [(2, "b", 40), (3, "c", 60)]
    parts = sorted((root / "out_connect" / "total").iterdir())
    assert parts and all(p.suffix == ".parquet" for p in parts)
    assert sorted(r for p in parts for r in _rows(p)) == [(2, 100)]

    again = run_cli("-C", str(root), "build", "--target", "connect")
    assert again.code == 0 and "nothing to do" in again.out + again.err

    (root / "data" / "t.csv").write_text("id,name,amount\n1,a,10\n2,b,20\n3,c,30\n4,d,40\n")
    edited = run_cli("-C", str(root), "build", "--target", "connect")
    assert edited.code == 0, edited.err
    assert _rows(root / "out_connect" / "big.parquet")[-1] == (4, "d", 80)
