"""Bad input on a Spark target, on a project already built there (issue 17, "Tests"): an
unreachable master, a warehouse the build cannot write, no Java, no pyspark. Each is one
clear message naming the target in odibi.yaml (file:line:col) with a hint, exit 2 before
any work, no traceback, no JVM started, and nothing lost: the earlier outputs, exports,
warehouse and odibi.spark.lock stay byte-identical, and the state still knows what is
built (`explain` wants only the edited node).

The same mistakes on fresh projects are in the bad-input corpus (tests/fixtures/bad/
spark_*.case); a missing pyspark cannot be written there (it is not an environment
variable), so it is only here.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.conftest import run_cli, write_files
from tests.e2e.spark_support import (SPARK, Run, odibi_process, spark_master, targets_yaml,
                                     tree_bytes)

__all__ = ["spark_master"]  # (the fixture, imported for pytest)

YAML = """
project: bad
connections:
  raw: {type: local, base_path: data}
  out: {type: local, base_path: out}
TARGETS
nodes:
  - name: a
    read: {connection: raw, path: a.csv}
  - name: b
    sql: SELECT id, v + 1 AS w FROM a
    write: {connection: out, path: b.csv, format: csv}
"""


def closed_port() -> int:
    """A local TCP port nobody listens at (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kept(root: Path) -> dict[str, bytes]:
    """What a failed command must not change: the lock, the Spark target's warehouse, the
    exports, the sources. (state.db is left out: loading the project caches its parsed
    YAML and SQL there; that the state still knows what is built, `explain` shows.)"""
    files = {"odibi.spark.lock": (root / "odibi.spark.lock").read_bytes()}
    for d in (".odibi", "out_spark", "data"):
        files.update({f"{d}/{k}": v for k, v in tree_bytes(root / d).items()
                      if not k.endswith(("build.lock", "state.db"))})
    return files


def assert_refused(run: Run, root: Path, before: dict[str, bytes], message: str) -> None:
    line = (root / "odibi.yaml").read_text().splitlines().index(f"  {SPARK}:") + 1
    assert run.code == 2, run.text
    assert "Traceback" not in run.text
    lines = run.err.splitlines()
    # (a warehouse moved elsewhere is first announced as missing, its nodes to be rebuilt:
    # a warning printed while the project is opened, before the build is refused)
    while lines and lines[0].startswith("warning: the warehouse "):
        lines.pop(0)
    assert lines, run.err
    first, *rest = lines
    assert first.startswith(f"odibi.yaml:{line}:3: error: target '{SPARK}': {message}"), \
        run.err
    assert any(ln.startswith("hint: ") for ln in rest), run.err
    assert run.imported["pyspark"] is False, "the refused build started Spark"
    assert kept(root) == before, "a refused build changed the project"


def test_bad_setup_on_spark_is_refused_before_any_work(tmp_path: Path,
                                                      spark_master: str) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": YAML.replace("TARGETS", targets_yaml(spark_master).rstrip("\n")),
        "data/a.csv": "id,v\n1,10\n2,20\n"})
    built = run_cli("-C", str(root), "build", "--target", SPARK)
    assert built.code == 0, built.text
    yaml = root / "odibi.yaml"
    good = yaml.read_text().replace("v + 1 AS w", "v + 2 AS w")  # b must be rebuilt
    yaml.write_text(good)
    before = kept(root)

    port = closed_port()
    yaml.write_text(good.replace(json.dumps(spark_master), f'"spark://127.0.0.1:{port}"'))
    assert_refused(odibi_process(root, "build", "--target", SPARK), root, before,
                   f"cannot reach spark://127.0.0.1:{port}")

    for warehouse, problem in (("data/a.csv", "it is a file"),
                               ("data/a.csv/lake", "data/a.csv is a file")):
        yaml.write_text(good.replace("    conf:", f"    warehouse: {warehouse}\n    conf:"))
        assert_refused(odibi_process(root, "build", "--target", SPARK), root, before,
                       f"cannot write the warehouse {warehouse}: {problem}, not a directory")

    yaml.write_text(good)
    no_java = tmp_path / "bin-without-java"
    no_java.mkdir()
    assert_refused(odibi_process(root, "build", "--target", SPARK, env={"PATH": str(no_java)},
                                 unset=["JAVA_HOME"]),
                   root, before, "Spark needs Java 17 or later, and no java was found")
    assert_refused(odibi_process(root, "build", "--target", SPARK, no_pyspark=True),
                   root, before, "pyspark is not installed")

    # nothing lost: the state still knows what was built (only the edited node is to run)
    explain = odibi_process(root, "explain", "--json", "--target", SPARK)
    assert explain.code == 0, explain.text
    assert explain.imported["pyspark"] is False
    plan = {n["node"]: (n["status"], [r["reason"] for r in n["reasons"]])
            for n in explain.json()["nodes"]}
    assert plan == {"a": ("up-to-date", []), "b": ("rebuild", ["sql changed"])}
