"""A real Spark standalone cluster for the test suite: one master and one worker on
127.0.0.1, started from the installed pyspark's own launcher (`bin/spark-class`).

Guarantees:
- Everything listens on 127.0.0.1 only: the master and worker (RPC and web UIs, through
  `--host` and SPARK_LOCAL_IP), and the drivers configured with `driver_conf()`. Ports are
  chosen free at run time; nothing is read from or written to the user's Spark config.
- Every file the daemons write (logs, the worker's work dir with the executors' output,
  scratch space) lives under the directory given to `start_cluster`.
- `start_cluster` returns only once the worker has registered with the master (the
  master's web UI JSON says so), or stops what it started and raises `ClusterError`.
- `stop_cluster` ends both daemons and every executor the worker started: SIGTERM to each
  daemon's process group, then SIGKILL after a grace period. It returns once they are all
  gone, and is idempotent. The daemons also receive SIGTERM if the process that started
  them dies (PR_SET_PDEATHSIG), so a kill -9 of pytest leaves no JVM behind.

No pyspark import here: the launcher is found on disk, so starting a cluster costs no JVM in
the calling process.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
_PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the log to read."""


@dataclass(frozen=True, slots=True)
class Daemon:
    """One JVM we started: its PID (also its process group id) and its log file."""

    name: str
    pid: int
    log: Path


@dataclass(frozen=True, slots=True)
class SparkCluster:
    """A running standalone cluster. `master_url` is all a driver needs."""

    master_url: str
    web_ui: str
    master: Daemon
    worker: Daemon
    root: Path
    started_in: float  # seconds from launching the master to the worker registered

    @property
    def daemons(self) -> tuple[Daemon, Daemon]:
        return (self.master, self.worker)


def spark_home() -> Path:
    """The installed pyspark's directory (it holds bin/spark-class and jars/)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ClusterError("pyspark is not installed: pip install -e '.[test,spark]'")
    return Path(spec.origin).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the daemon binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def java_home() -> str | None:
    """JAVA_HOME for the launcher: the caller's, else none if `java` is on PATH, else
    the machine's Java 17."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if shutil.which("java"):
        return None
    if (JAVA_17 / "bin" / "java").exists():
        return str(JAVA_17)
    raise ClusterError("no Java: Spark needs Java 17+ (set JAVA_HOME or put java on PATH)")


def daemon_env(root: Path) -> dict[str, str]:
    """The environment of the daemons: loopback only, all files under root, small heaps."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARK_", "PYSPARK_")) and k != "JAVA_HOME"}
    conf = root / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    home = java_home()
    if home:
        env["JAVA_HOME"] = home
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_CONF_DIR": str(conf),  # empty: no user spark-defaults or spark-env
        "SPARK_LOCAL_IP": HOST,
        "SPARK_MASTER_HOST": HOST,
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_WORKER_DIR": str(root / "work"),
        "SPARK_LOCAL_DIRS": str(root / "scratch"),
        "SPARK_DAEMON_MEMORY": "512m",
        # the master's REST submission server would take port 6066 on every cluster
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    })
    return env


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started us dies. Also a
    process group of its own, so the executors the worker forks are signalled with it,
    and a Ctrl-C at the terminal reaches pytest (which tears down) rather than the JVMs."""
    os.setpgid(0, 0)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _launch(name: str, args: list[str], root: Path, env: dict[str, str]) -> Daemon:
    log = root / "logs" / f"{name}.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args], cwd=root, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
    _CHILDREN[proc.pid] = proc
    return Daemon(name, proc.pid, log)


# Clusters started by the session fixture, for the terminal summary (start-up time).
STARTED: list[SparkCluster] = []

# Popen objects of the daemons, so that stop_cluster reaps them (no zombies) and can tell a
# daemon that exited early from one still running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def master_state(web_ui: str) -> dict[str, object] | None:
    """The master's web UI JSON, or None while it is not answering yet."""
    try:
        with urllib.request.urlopen(f"{web_ui}/json/", timeout=2) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _alive_workers(state: dict[str, object] | None) -> int:
    if not state:
        return 0
    workers = state.get("workers", [])
    assert isinstance(workers, list)
    return sum(1 for w in workers if w.get("state") == "ALIVE")


def start_cluster(root: Path, *, cores: int = 2, memory: str = "2g",
                  timeout: float = 90.0) -> SparkCluster:
    """Start a master and one worker under root; return once the worker has registered.
    On failure (a daemon died, or timeout) stop what was started and raise ClusterError."""
    root.mkdir(parents=True, exist_ok=True)
    env = daemon_env(root)
    port, ui, worker_ui = free_port(), free_port(), free_port()
    master_url, web_ui = f"spark://{HOST}:{port}", f"http://{HOST}:{ui}"
    t0 = time.perf_counter()
    master = _launch("master", ["org.apache.spark.deploy.master.Master", "--host", HOST,
                                "--port", str(port), "--webui-port", str(ui)], root, env)
    worker = _launch("worker", ["org.apache.spark.deploy.worker.Worker", "--host", HOST,
                                "--webui-port", str(worker_ui), "--cores", str(cores),
                                "--memory", memory, "--work-dir", str(root / "work"),
                                master_url], root, env)
    cluster = SparkCluster(master_url, web_ui, master, worker, root, 0.0)
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        for d in cluster.daemons:
            if _CHILDREN[d.pid].poll() is not None:
                stop_cluster(cluster)
                raise ClusterError(f"the Spark {d.name} exited at start-up; see {d.log}")
        if _alive_workers(master_state(web_ui)) >= 1:
            took = time.perf_counter() - t0
            return SparkCluster(master_url, web_ui, master, worker, root, took)
        time.sleep(0.25)
    stop_cluster(cluster)
    raise ClusterError(f"no worker registered with {master_url} within {timeout:.0f} s; "
                       f"see {master.log} and {worker.log}")


def pid_alive(pid: int) -> bool:
    """Whether pid is a process that has not been reaped (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes of process group pgid (the daemon and the executors it forked)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry))
    return out


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pgids: list[int], until: float) -> bool:
    while True:
        for pid in pgids:
            child = _CHILDREN.get(pid)
            if child is not None:
                child.poll()  # reap, so a dead daemon is not a zombie
        if not any(group_members(g) for g in pgids):
            return True
        if time.perf_counter() >= until:
            return False
        time.sleep(0.1)


def stop_cluster(cluster: SparkCluster, grace: float = 15.0) -> None:
    """Stop the worker (and its executors) then the master: SIGTERM to each process
    group, SIGKILL to whatever is left after `grace` seconds. Returns when all are gone."""
    pgids = [cluster.worker.pid, cluster.master.pid]
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    if not _wait_gone(pgids, time.perf_counter() + grace):
        for pgid in pgids:
            _signal_group(pgid, signal.SIGKILL)
        _wait_gone(pgids, time.perf_counter() + grace)
    for pid in pgids:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait()


def driver_conf(*, executor_memory: str = "1g") -> dict[str, str]:
    """Spark conf for a driver in the test process: loopback only, no UI, small shuffles.
    (SPARK_LOCAL_IP=127.0.0.1 in the driver's environment does the rest.)"""
    return {
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.executor.memory": executor_memory,
        "spark.cores.max": "2",
    }


def listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state held by one of pids, read
    from /proc (no `ss` needed). IPv4-mapped IPv6 addresses are shown as IPv4."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in owner:  # 0A: LISTEN
                    addr, port = cols[1].split(":")
                    found.append((owner[cols[9]], _address(addr), int(port, 16)))
    return sorted(found)


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    # /proc/net shows each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return socket.inet_ntop(socket.AF_INET, words)
    if words[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, words[12:])
    return socket.inet_ntop(socket.AF_INET6, words)


def descendants(pid: int) -> set[int]:
    """pid's live descendants (not pid itself), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out and pid_alive(child):
                out.add(child)
                todo.append(child)
    return out


def target_yaml(master: str, warehouse: Path, conf: dict[str, str] | None = None) -> str:
    """A Spark target as a one-line YAML flow mapping, for `targets:` in odibi.yaml:
    the master, an absolute warehouse (executors do not run in the project's directory),
    and `driver_conf()` merged with conf."""
    body = {"engine": "spark", "master": master, "warehouse": str(warehouse.resolve()),
            "conf": {**driver_conf(), **(conf or {})}}
    return json.dumps(body)


def add_targets(root: Path, master: str, *, default: str = "spark",
                warehouse: Path | None = None) -> Path:
    """Append to root/odibi.yaml a `targets:` block with a Spark target `spark` on master
    and a DuckDB target `duckdb`; `default` names the one listed first (the default).
    The warehouse defaults to a directory next to the project, so nothing Spark writes
    lands in the project's tree. Refuses a project that already declares targets."""
    config = root / "odibi.yaml"
    text = config.read_text()
    if any(line.startswith("targets:") for line in text.splitlines()):
        raise ValueError(f"{config} declares targets already: write them with target_yaml()")
    lake = warehouse or root.parent / f"{root.name}-warehouse"
    entries = {"spark": f"  spark: {target_yaml(master, lake)}",
               "duckdb": "  duckdb: {engine: duckdb}"}
    order = [default, *(name for name in entries if name != default)]
    block = "targets:\n" + "".join(entries[name] + "\n" for name in order)
    config.write_text(text.rstrip("\n") + "\n" + block)
    return root
