"""Before a build computes anything on Spark: is everything it needs there? And starting
the Spark session once it is.

`preflight(target, warehouse)` checks, without starting a JVM, what would otherwise fail
late and obscurely: pyspark installed (the `spark` extra), Java 17 or later, the master
reachable (a TCP connection to `spark://host:port`, `sc://host:port`), a local warehouse
writable. Each problem is one `SetupProblem` sentence with a hint: the build stops with exit
2 before any work, naming the target in odibi.yaml.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from odibi.config.model import Target

JAVA_MIN = 17
CONNECT_TIMEOUT = 5.0  # seconds to reach a master before it counts as unreachable
_VERSION_RE = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True, slots=True)
class SetupProblem:
    message: str
    hint: str | None = None


def preflight(target: Target, warehouse: Path | None, root: Path | None = None, *,
              named: bool = True) -> SetupProblem | None:
    """The first thing that keeps `target` from running, or None. `warehouse`: the local
    warehouse directory (None: at a URI, which only the cluster can check), shown relative
    to the project's `root` when it lies inside it. Each message names the target, when
    `named` (a project's target; not `odibi test`'s local session)."""
    for check in (_pyspark, _java, lambda: _master(target),
                  lambda: _writable(warehouse, root)
                  if warehouse is not None else None):
        problem = check()
        if problem is not None:
            if not named:
                return problem
            return SetupProblem(f"target '{target.name}': {problem.message}", problem.hint)
    return None


def _shown(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _pyspark() -> SetupProblem | None:
    if find_spec("pyspark") is None:
        return SetupProblem("pyspark is not installed (it runs Spark targets)",
                            "pip install 'odibi[spark]'")
    return None


def java_command() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _java() -> SetupProblem | None:
    java = java_command()
    hint = f"install Java {JAVA_MIN} or later (e.g. apt-get install openjdk-{JAVA_MIN}-jre-headless) " \
           "and put it on PATH, or set JAVA_HOME"
    if java is None:
        home = os.environ.get("JAVA_HOME")
        where = f" (JAVA_HOME={home} has no bin/java)" if home else ""
        return SetupProblem(f"Spark needs Java {JAVA_MIN} or later, and no java was found"
                            f"{where}", hint)
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return SetupProblem(f"cannot run {java}: {e}", hint)
    m = _VERSION_RE.search(done.stderr + done.stdout)
    if m is None:
        return SetupProblem(f"cannot tell the version of {java}", hint)
    major = int(m.group(1)) if m.group(1) != "1" else int(m.group(2) or 0)
    if major < JAVA_MIN:
        return SetupProblem(f"Spark needs Java {JAVA_MIN} or later; {java} is Java {major}",
                            hint)
    return None


def _master(target: Target) -> SetupProblem | None:
    url = target.remote or target.master or ""
    m = re.match(r"(spark|sc)://([^/:]+):(\d+)", url)
    if m is None:
        return None  # local[N], yarn, k8s://...: Spark itself says
    host, port = m.group(2), int(m.group(3))
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return None
    except OSError as e:
        return SetupProblem(f"cannot reach {url} ({e.strerror or e})",
                            "is the Spark master running, and is the address right?")


def _writable(warehouse: Path, root: Path | None) -> SetupProblem | None:
    shown = _shown(warehouse, root)
    hint = "give the target a warehouse: it can write (a directory, or where one can be made)"
    blocker = next((p for p in (warehouse, *warehouse.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        what = "it" if blocker == warehouse else _shown(blocker, root)
        return SetupProblem(f"cannot write the warehouse {shown}: {what} is a file, not a "
                            "directory", hint)
    try:
        warehouse.mkdir(parents=True, exist_ok=True)
        probe = warehouse / f".odibi-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return SetupProblem(f"cannot write the warehouse {shown}: {e.strerror or e}", hint)
    return None


def start_session(target: Target, app: str, conf: Mapping[str, str]) -> Any:
    """The SparkSession for `target` (the driver starts here: ~5 s). A local master's
    driver listens on 127.0.0.1 only, and the driver logs errors only (odibi's defaults; a
    target's `conf` overrides each)."""
    import warnings

    with warnings.catch_warnings():  # (pyspark warns about pandas versions on import)
        warnings.simplefilter("ignore", FutureWarning)
        from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app)
    if target.remote is not None:
        builder = builder.remote(target.remote)
        settings: dict[str, str] = {}
    else:
        # pyspark marks the process as Spark Connect once a remote session started in it
        # (an environment variable): a classic session would then start none
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        master = target.master or "local[*]"
        builder = builder.master(master)
        settings = dict(DEFAULT_CONF)
        log4j = Path(__file__).with_name("spark-log4j2.properties")
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j}"
        if master.startswith("local"):
            settings.update(LOCAL_CONF)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings.update(conf)
    for key, value in settings.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        spark = builder.getOrCreate()
    if target.remote is None:
        spark.sparkContext.setLogLevel("ERROR")
    quiet_query_logs()
    return spark


DEFAULT_CONF = {
    "spark.scheduler.mode": "FAIR",  # -j N: N jobs share the cluster
    "spark.sql.execution.arrow.pyspark.enabled": "true",  # pandas in and out, through Arrow
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.ui.showConsoleProgress": "false",  # odibi shows progress itself
}
LOCAL_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def quiet_query_logs() -> None:
    """pyspark logs every failed query's error (as JSON, on stderr) before raising it:
    the error is odibi's to report, once."""
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
