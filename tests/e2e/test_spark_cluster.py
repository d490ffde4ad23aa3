"""The Spark cluster fixture itself (tests/spark_cluster.py): a driver connected to the
shared standalone cluster runs its tasks on the worker's executor, everything listens on
127.0.0.1 only, and stopping a cluster (directly, on Ctrl-C of pytest, on kill -9 of
pytest) leaves no JVM behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, write_files
from tests.spark_cluster import (
    SparkCluster, add_targets, descendants, driver_conf, group_members, listening, pid_alive,
    start_cluster, stop_cluster)

LOOPBACK = "127.0.0.1"


def _where_tasks_ran(spark, partitions: int = 4) -> set[tuple[int, str] | None]:  # type: ignore[no-untyped-def]
    """(pid, executor id) of the executor JVM each task's Python worker ran under."""

    def executor_of(pid: int) -> tuple[int, str] | None:
        # defined here, not at module level, so cloudpickle ships it by value: the
        # executors cannot import this test module
        from pathlib import Path

        while pid > 1:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in args:
                return pid, args[args.index(b"--executor-id") + 1].decode()
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return None

    rdd = spark.sparkContext.parallelize(range(partitions), partitions)
    return set(rdd.map(lambda _: executor_of(os.getpid())).collect())


@pytest.fixture(scope="module")
def cluster_session(spark_cluster: SparkCluster):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(spark_cluster.master_url).appName("odibi-fixture")
    for key, value in driver_conf().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def test_tasks_run_on_the_worker_not_the_driver(spark_cluster, cluster_session):
    spark = cluster_session
    assert spark.sparkContext.master == spark_cluster.master_url
    ran = _where_tasks_ran(spark)
    assert None not in ran, f"a task ran outside any executor JVM: {ran}"
    executor_ids = {eid for _, eid in ran}
    assert executor_ids and "driver" not in executor_ids
    # the executor JVMs are the worker daemon's children, in its process group
    for pid, _ in ran:
        assert pid in descendants(spark_cluster.worker.pid)
        assert pid in group_members(spark_cluster.worker.pid)
    # and a SQL job gives the right answer through them
    total = spark.sql("SELECT sum(id) AS s FROM range(1000000)").collect()[0]["s"]
    assert total == 999999 * 1000000 // 2


def test_everything_listens_on_loopback_only(spark_cluster, cluster_session):
    _where_tasks_ran(cluster_session)  # executors up
    daemons = {spark_cluster.master.pid, spark_cluster.worker.pid}
    ours = daemons | descendants(spark_cluster.worker.pid) | descendants(os.getpid())
    sockets = listening(ours | {os.getpid()})
    holders = {pid for pid, _, _ in sockets}
    # master: RPC + web UI; worker: RPC + web UI; the driver JVM and the executor listen too
    assert daemons <= holders
    assert len(holders) >= 4, sockets
    assert {addr for _, addr, _ in sockets} == {LOOPBACK}, sockets
    master_ports = {port for pid, _, port in sockets if pid == spark_cluster.master.pid}
    assert 6066 not in master_ports  # no REST submission server on a fixed port
    assert int(spark_cluster.master_url.rsplit(":", 1)[1]) in master_ports


def test_the_master_reports_one_alive_worker(spark_cluster):
    from tests.spark_cluster import master_state

    state = master_state(spark_cluster.web_ui)
    assert state is not None and state["url"] == spark_cluster.master_url
    alive = [w for w in state["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 1 and alive[0]["cores"] == 2 and alive[0]["host"] == LOOPBACK
    assert spark_cluster.started_in > 0


def test_add_targets_writes_a_spark_and_a_duckdb_target(tmp_path, spark_cluster):
    import yaml

    root = write_files(tmp_path / "p", {"odibi.yaml": "project: p\nnodes: []\n"})
    add_targets(root, spark_cluster.master_url, default="duckdb")
    targets = yaml.safe_load((root / "odibi.yaml").read_text())["targets"]
    assert list(targets) == ["duckdb", "spark"]
    spark = targets["spark"]
    assert spark["master"] == spark_cluster.master_url
    assert Path(spark["warehouse"]).is_absolute()
    assert not Path(spark["warehouse"]).is_relative_to(root)
    assert spark["conf"]["spark.driver.bindAddress"] == LOOPBACK
    with pytest.raises(ValueError, match="declares targets already"):
        add_targets(root, "local[2]")


# -- stopping: each on a small cluster of its own ----------------------------------------------
def _gone(pids: list[int], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_stop_cluster_ends_both_daemons(tmp_path):
    cluster = start_cluster(tmp_path / "c", cores=1, memory="512m")
    pids = [cluster.master.pid, cluster.worker.pid]
    try:
        assert all(pid_alive(p) for p in pids)
        assert listening(set(pids))
    finally:
        stop_cluster(cluster)
    assert not any(pid_alive(p) for p in pids)
    assert not group_members(cluster.master.pid) and not group_members(cluster.worker.pid)
    assert not listening(set(pids))
    stop_cluster(cluster)  # idempotent


INNER = """
import json, os, time
from pathlib import Path


def test_hold(spark_cluster):
    pids = [spark_cluster.master.pid, spark_cluster.worker.pid]
    Path(os.environ["CLUSTER_PIDS"]).write_text(json.dumps(pids))
    time.sleep(300)
"""


def _inner_pytest(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A pytest session in a subprocess that starts the session fixture's cluster and
    holds it; returns the process and the two daemons' PIDs once the cluster is up."""
    write_files(tmp_path / "inner", {"test_hold.py": INNER})
    pid_file = tmp_path / "pids.json"
    env = {**os.environ, "CLUSTER_PIDS": str(pid_file), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path / "inner"), str(tmp_path / "inner" / "test_hold.py")],
        cwd=tmp_path / "inner", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"inner pytest never started its cluster:\n{proc.communicate()[0]}")
        time.sleep(0.2)
    return proc, json.loads(pid_file.read_text())


@pytest.mark.slow
def test_ctrl_c_of_pytest_stops_the_cluster(tmp_path):
    proc, pids = _inner_pytest(tmp_path)
    assert all(pid_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out  # pytest: interrupted
    assert "KeyboardInterrupt" in out
    assert _gone(pids, timeout=5), f"daemons left running after Ctrl-C: {pids}"


@pytest.mark.slow
def test_kill_9_of_pytest_stops_the_cluster(tmp_path):
    proc, pids = _inner_pytest(tmp_path)
    proc.kill()
    proc.communicate(timeout=30)
    # no teardown ran: the kernel's parent-death signal (SIGTERM) ends the daemons
    assert _gone(pids), f"daemons outlived a kill -9 of pytest: {pids}"
