"""Shared test helpers: run the real CLI in-process, build temporary projects."""

from __future__ import annotations

import atexit
import io
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from odibi.cli.main import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(*argv: str) -> CliResult:
    """Run `odibi argv...` in this process, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return CliResult(code, out.getvalue(), err.getvalue())


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A fresh copy of examples/shop."""
    dest = tmp_path / "shop"
    shutil.copytree(EXAMPLES / "shop", dest, ignore=shutil.ignore_patterns(".odibi", "output",
                                                                           "__pycache__"))
    return dest


@pytest.fixture
def project(tmp_path: Path):
    """Write a project from {relative path: text} and return its root."""
    def make(files: dict[str, str]) -> Path:
        return write_files(tmp_path / "proj", files)
    return make


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite the expected output of golden tests from what odibi prints")


# -- Spark: one standalone cluster per test session, and local[2] ----------------------------
# (tests/spark_cluster.py starts and stops it; nothing here imports pyspark)
from tests.spark_cluster import (  # noqa: E402
    STARTED, SparkCluster, add_targets, start_cluster, stop_cluster)


@pytest.fixture(scope="session", autouse=True)
def _spark_driver_env():
    """A driver started in this process binds 127.0.0.1 only (SPARK_LOCAL_IP), and its
    executors run this interpreter (PYSPARK_PYTHON: pandas and pyarrow are here, not
    necessarily in the `python3` on PATH). Set before any JVM starts; costs nothing."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        yield


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A standalone master and one worker (2 cores, 2g) on 127.0.0.1, shared by the whole
    session; stopped at its end, on Ctrl-C too (and by the kernel if pytest is killed)."""
    cluster: SparkCluster = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
    STARTED.append(cluster)
    atexit.register(stop_cluster, cluster)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
        atexit.unregister(stop_cluster)


@pytest.fixture(params=["local[2]", "cluster"])
def spark_master(request: pytest.FixtureRequest) -> str:
    """Each test runs twice: on `local[2]`, and on the shared standalone cluster."""
    if request.param == "cluster":
        return request.getfixturevalue("spark_cluster").master_url  # type: ignore[no-any-return]
    return str(request.param)


@pytest.fixture
def spark_project(tmp_path: Path):
    """Write a project like `project`, with `targets:` for Spark on the given master (the
    default target unless default="duckdb") and DuckDB: make(files, master)."""
    def make(files: dict[str, str], master: str, *, default: str = "spark") -> Path:
        return add_targets(write_files(tmp_path / "proj", files), master, default=default)
    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    for cluster in STARTED:
        terminalreporter.write_line(
            f"spark cluster {cluster.master_url}: worker registered "
            f"{cluster.started_in:.1f} s after launch")
