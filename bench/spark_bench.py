"""odibi on Spark -> the "Running on Spark" section of BENCHMARKS.md. Every number is
measured in this run, next to the baseline it is compared with.

    python bench/spark_bench.py             # 10M-row heavy pipeline, 1,000-node no-op
    python bench/spark_bench.py --quick     # 2M rows
    python bench/spark_bench.py --rounds 2  # fewer rounds of the heavy pipeline

Run alone it rewrites only its own section of BENCHMARKS.md (`--out`); `bench/run.py
--spark` runs it as part of the full benchmark. Two scenarios, on `local[2]`:

- Heavy: the heavy pipeline of bench/run.py (5 SQL nodes over a Parquet source), odibi's
  cold build on a Spark target (`python -m odibi build -j 1`, whole process) against the
  same statements run by `spark.sql` in one session, each result written to Parquet and
  read back through a temporary view, as odibi writes its outputs and reads its inputs.
  The session's start-up (Python, pyspark, the JVM) is measured in the direct process and
  reported apart; the overhead is computed with and without it.
- No-op build and `explain` at 1,000 nodes on a Spark target (whole processes, best of 3),
  each also run once under an audit hook that records every process the command starts
  and whether pyspark was imported: planning must start no JVM.

Before odibi has its Spark engine (odibi/engines/spark_engine.py) only the direct
baseline runs, and the section says so.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from generate import generate, write_odibi  # noqa: E402
from heavy import HEAVY_SQL, heavy_yaml, write_heavy_source  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update({"PYTHONPATH": str(REPO), "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable})
PY = sys.executable
MASTER = "local[2]"
# The same conf for odibi's target and for the direct session (a driver of 2 GB: the
# window over 10M rows; few shuffle partitions: 2 cores).
CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "2g", "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1"}
SECTION = "## Running on Spark"

DIRECT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession
    master, conf, lake, statements = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], \\
        json.load(open(sys.argv[4]))
    digests = sys.argv[5:] == ["--digests"]  # observed while writing, as odibi does
    builder = SparkSession.builder.master(master).appName("direct")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sql("SELECT 1").collect()  # the session answers
    t1 = time.perf_counter()
    for i, (name, sql) in enumerate(statements):
        out = f"{lake}/{name}"
        df = spark.sql(sql)
        if digests:
            from pyspark.sql import Observation, functions as F
            obs = Observation(f"d{i}")
            hashed = F.xxhash64(*[df[c] for c in df.columns])
            df = df.observe(obs, F.count(F.lit(1)).alias("rows"),
                            F.sum(hashed.cast("decimal(38,0)")).alias("hash"))
            df.write.parquet(out)
            obs.get
        else:
            df.write.parquet(out)
        spark.read.parquet(out).createOrReplaceTempView(name)
    t2 = time.perf_counter()
    spark.stop()
    print(json.dumps({"session": t1 - t0, "work": t2 - t1}))
""")

NO_JVM = textwrap.dedent("""
    import io, json, sys
    launched = []
    def hook(event, args):
        if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system",
                     "os.spawn", "os.fork", "os.forkpty"):
            launched.append(repr(args)[:200])
    sys.addaudithook(hook)
    from odibi.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    code = main(sys.argv[1:], stdout=out, stderr=err)
    spark = sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "py4j"))
    print(json.dumps({"code": code, "imported": spark, "launched": launched,
                      "err": err.getvalue()[-2000:]}))
""")


def sh(*argv: str, cwd: Path | None = None) -> tuple[float, str]:
    """Wall time and stdout of one command, which must succeed."""
    t = time.perf_counter()
    r = subprocess.run(list(argv), cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took, r.stdout


def odibi(*argv: str) -> list[str]:
    return [PY, "-m", "odibi", *argv]


def engine_landed() -> bool:
    """Whether this odibi has a Spark engine (the odibi half of every comparison)."""
    return importlib.util.find_spec("odibi.engines.spark_engine") is not None


def spark_statements(src: Path) -> list[tuple[str, str]]:
    """The heavy pipeline as Spark runs it: the source read, then HEAVY_SQL transpiled from
    DuckDB's dialect (the project's) to Spark's, as odibi does for a Spark target."""
    import sqlglot

    statements = [("src", f"SELECT * FROM parquet.`{src}`")]
    statements += [(name, sqlglot.transpile(sql, read="duckdb", write="spark")[0])
                   for name, sql in HEAVY_SQL]
    return statements


def target_block(warehouse: Path, conf: dict[str, str]) -> str:
    body = {"engine": "spark", "master": MASTER, "warehouse": str(warehouse), "conf": conf}
    return f"targets:\n  spark: {json.dumps(body)}\n  duckdb: {{engine: duckdb}}\n"


def _clean(proj: Path, *dirs: Path) -> None:
    """Forget every build of proj: its state, its locks, its warehouses."""
    shutil.rmtree(proj / ".odibi", ignore_errors=True)
    for lock in proj.glob("odibi*.lock"):
        lock.unlink()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def bench_heavy(rows_n: int, work: Path, rounds: int) -> dict[str, object]:
    """Direct spark.sql and (when the engine is there) odibi's cold build, alternating,
    `rounds` times each; the best of each is kept."""
    proj = work / "heavy"
    src = proj / "data" / "src.parquet"
    write_heavy_source(src, rows_n)
    lake, direct_lake = work / "heavy-warehouse", work / "direct-warehouse"
    (proj / "odibi.yaml").write_text(heavy_yaml() + target_block(lake, CONF))
    script, plan = work / "direct_spark.py", work / "heavy_spark.json"
    script.write_text(DIRECT)
    plan.write_text(json.dumps(spark_statements(src)))
    direct: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    ours: list[float] = []
    for _ in range(rounds):
        for digests in (False, True):
            shutil.rmtree(direct_lake, ignore_errors=True)
            whole, out = sh(PY, str(script), MASTER, json.dumps(CONF), str(direct_lake),
                            str(plan), *(["--digests"] if digests else []))
            direct[digests].append({**json.loads(out.strip().splitlines()[-1]), "whole": whole})
        if engine_landed():
            _clean(proj, lake)
            ours.append(sh(*odibi("-C", str(proj), "build", "-q", "-j", "1"))[0])

    def best(runs: list[dict[str, float]]) -> dict[str, float]:
        return min(runs, key=lambda d: d["whole"])
    return {"rows": rows_n, "direct": best(direct[False]), "digested": best(direct[True]),
            "odibi": min(ours) if ours else None,
            "statements": spark_statements(src), "src": src}


def no_jvm_check(proj: Path, *argv: str) -> dict[str, object]:
    """Run `odibi -C proj argv` in a fresh process under an audit hook: its exit code,
    the pyspark/py4j modules it imported, the processes it started."""
    _, out = sh(PY, "-c", NO_JVM, "-C", str(proj), *argv)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_noop(n: int, work: Path, jobs: int) -> dict[str, object]:
    """A Spark target at n nodes: cold build, no-op build and explain (best of 3), each
    checked to start no JVM; the same no-op on the project's DuckDB target for scale."""
    proj = work / f"noop{n}"
    write_odibi(generate(n), proj)
    lake = work / f"noop{n}-warehouse"
    conf = {**CONF, "spark.sql.shuffle.partitions": "1", "spark.driver.memory": "1g"}
    with (proj / "odibi.yaml").open("a") as f:
        f.write(target_block(lake, conf))
    _clean(proj, lake)
    build = odibi("-C", str(proj), "build", "-q", "-j", str(jobs))
    cold, _ = sh(*build)
    noop = min(sh(*build)[0] for _ in range(3))
    explain = min(sh(*odibi("-C", str(proj), "explain", "-q"))[0] for _ in range(3))
    checks = {"build": no_jvm_check(proj, "build", "-q", "-j", str(jobs)),
              "explain": no_jvm_check(proj, "explain", "-q")}
    for name, c in checks.items():
        java = [x for x in c["launched"] if re.search(r"java|spark", x)]  # type: ignore[union-attr]
        if c["code"] != 0 or c["imported"] or java:
            raise SystemExit(f"`odibi {name}` on a built Spark target started Spark: {c}")
    duck = odibi("-C", str(proj), "--target", "duckdb", "build", "-q", "-j", str(jobs))
    sh(*duck)
    duck_noop = min(sh(*duck)[0] for _ in range(3))
    duck_explain = min(sh(*odibi("-C", str(proj), "--target", "duckdb", "explain", "-q"))[0]
                       for _ in range(3))
    return {"nodes": n, "cold": cold, "noop": noop, "explain": explain, "checks": checks,
            "duckdb_noop": duck_noop, "duckdb_explain": duck_explain}


def pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.1f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def heavy_table(h: dict[str, object]) -> str:
    d, dd = h["direct"], h["digested"]
    assert isinstance(d, dict) and isinstance(dd, dict)
    whole, session, work = d["whole"], d["session"], d["work"]
    row = [f"{h['rows']:,}", f"{whole:.2f}", f"{session:.2f}", f"{work:.2f}",
           f"{dd['work']:.2f} ({pct(dd['work'], work)})"]
    header = ["rows", "direct: whole process (s)", "of which session start-up (s)",
              "direct: statements (s)", "statements + observed digests (s)"]
    ours = h["odibi"]
    if isinstance(ours, float):
        header += ["odibi cold build (s)", "overhead, whole", "overhead, start-up apart"]
        row += [f"{ours:.2f}", pct(ours, whole), pct(ours - session, whole - session)]
    return table(header, [row])


def noop_table(r: dict[str, object]) -> str:
    checks = r["checks"]
    assert isinstance(checks, dict)
    started = "none" if not any(c["launched"] for c in checks.values()) else "; ".join(
        f"{k}: {len(c['launched'])}" for k, c in checks.items())
    return table(["nodes", "cold build on Spark (s)", "no-op build (s)", "explain (s)",
                  "DuckDB target: no-op (s)", "DuckDB target: explain (s)", "pyspark imported",
                  "processes started"],
                 [[f"{r['nodes']:,}", f"{r['cold']:.1f}", f"{r['noop']:.3f}",
                   f"{r['explain']:.3f}", f"{r['duckdb_noop']:.3f}",
                   f"{r['duckdb_explain']:.3f}", "no", started]])


def section(heavy: dict[str, object] | None, noop: dict[str, object] | None, jobs: int,
            load: str) -> str:
    heavy_doc = _heavy_doc(heavy) if heavy else "Not measured in this run (`--only noop`)."
    why = "`--only heavy`" if engine_landed() else "no Spark engine in this odibi"
    noop_doc = noop_table(noop) if noop else f"Not measured in this run ({why})."
    return f"""{SECTION}

Written by `python bench/spark_bench.py` on {datetime.date.today()}: {machine()}.
Spark on `{MASTER}`, conf {json.dumps(CONF)} for both sides. Load average (1 min) at
the start and the end of this run: {load} (the 2 cores are shared: under load every
number is inflated; the ratios, measured in the same run and alternating, less so).

### Heavy pipeline: odibi's cold build vs `spark.sql` directly

{heavy_doc}

### No-op build and explain on a Spark target (1,000 nodes)

The generated 1,000-node project of the DuckDB benchmark with a Spark target as its
default, built once on Spark (`-j {jobs}`), then `odibi build -j {jobs}` with nothing to do
and `odibi explain`, whole processes, best of 3; for scale, the same on the project's
DuckDB target (built too). Each Spark-target command was also run once under a Python
audit hook that records every process it starts and the modules it imports: goal
< 0.3 s, no pyspark imported, no JVM started.

{noop_doc}
"""


def _heavy_doc(heavy: dict[str, object]) -> str:
    statements = heavy["statements"]
    assert isinstance(statements, list)
    src = str(heavy["src"])
    sql = "\n".join(f"    {name}: {s.replace(src, 'data/src.parquet')}" for name, s in statements)
    pending = "" if heavy["odibi"] is not None else (
        "**odibi's half not measured: this odibi has no Spark engine** "
        "(odibi/engines/spark_engine.py); only the direct baselines ran.\n\n")
    return f"""{pending}The heavy pipeline of the DuckDB benchmark above ({heavy['rows']:,} rows, a Parquet
source, {len(HEAVY_SQL)} SQL nodes), on a Spark target, `-j 1`: odibi's cold build, whole
process, against one Python process that starts a session and runs the same statements
(the project's DuckDB SQL transpiled by sqlglot, as odibi runs it on Spark), writing each
result to Parquet and reading it back through a temporary view, as odibi stores its
outputs and reads its inputs; then the same with each result's row count and
order-insensitive digest observed while it is written (`df.observe`: count and
sum(xxhash64) of the rows, what odibi records for early cutoff). Best of the rounds,
alternating. The session's start-up (Python, pyspark, the JVM, a first query) is
measured in the direct process and shown apart; "start-up apart" subtracts it from both
sides. Goal: overhead <= 10%.

{heavy_table(heavy)}

The statements, as run directly:

{sql}
"""


def machine() -> str:
    from importlib.metadata import version

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    first = java.splitlines()[0] if java else "no java"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"pyspark {version('pyspark')}, {first}")


def replace_section(doc: str, text: str) -> str:
    """doc with its SECTION (up to the next `## ` heading) replaced by text, or text
    appended when doc has none."""
    start = doc.find(f"\n{SECTION}\n")
    if start < 0:
        return doc.rstrip("\n") + "\n\n" + text
    nxt = doc.find("\n## ", start + len(SECTION) + 2)
    return doc[:start + 1] + text + ("" if nxt < 0 else "\n" + doc[nxt + 1:])


def wanted(flag: bool | None, quick: bool) -> bool:
    """For bench/run.py: `--spark` runs this part (and fails without pyspark), `--no-spark`
    skips it; by default it runs when pyspark is installed, except with `--quick`."""
    installed = importlib.util.find_spec("pyspark") is not None
    if flag and not installed:
        raise SystemExit("--spark: pyspark is not installed: pip install -e '.[spark]'")
    return installed and not quick if flag is None else flag


def skipped() -> str:
    return f"""{SECTION}

Not measured in this run (`--quick`, `--no-spark` or no pyspark installed); run
`python bench/spark_bench.py` alone to measure it and rewrite this section.
"""


def run(rows_n: int, work: Path, rounds: int = 3, jobs: int = 8,
        only: str | None = None) -> str:
    """The scenarios (both, or `only` one) under work; returns the markdown section."""
    load = [os.getloadavg()[0]]
    heavy = noop = None
    if only != "noop":
        print(f"spark: heavy pipeline, {rows_n:,} rows ...", flush=True)
        heavy = bench_heavy(rows_n, work, rounds)
    if only != "heavy" and engine_landed():
        print("spark: no-op and explain, 1,000 nodes ...", flush=True)
        noop = bench_noop(1000, work, jobs)
    load.append(os.getloadavg()[0])
    return section(heavy, noop, jobs, " -> ".join(f"{x:.1f}" for x in load))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2M rows instead of 10M")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the heavy pipeline")
    ap.add_argument("--only", choices=["heavy", "noop"], help="one scenario only")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="odibi-spark-bench-"))
    try:
        text = run(2_000_000 if args.quick else 10_000_000, work, args.rounds, only=args.only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.write_text(replace_section(out.read_text() if out.exists() else "", text))
    print(text)


if __name__ == "__main__":
    main()
