"""odibi benchmarks -> BENCHMARKS.md. Every number is measured in this run, next to the
baseline it is compared with (also measured in this run, on the same machine).

    python bench/run.py            # full: 100 / 1,000 / 10,000 nodes, 10M-row heavy data
    python bench/run.py --quick    # everyday: 100 / 1,000 nodes, 2M rows

With dbt and SQLMesh installed (`pip install -e '.[bench]'`, pinned versions), the full run
starts with odibi, dbt and SQLMesh side by side at 1,000 nodes (`bench/incumbents.py`,
6 to 10 minutes more); `--incumbents` / `--no-incumbents` force it on / off.

Commands run as separate processes, as a user runs them (`python -m odibi ...`), with
bytecode caching on. Fast scenarios take the best of several runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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

from generate import GenNode, edit_target, generate, write_odibi  # noqa: E402
from generate import set_sql as _set_sql  # noqa: E402

import incumbents  # noqa: E402
from heavy import HEAVY_SQL, heavy_yaml, write_heavy_source  # noqa: E402
import spark_bench  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(REPO)
PY = sys.executable


def sh(*argv: str, cwd: Path | None = None, check: bool = True) -> float:
    """Wall time of one command, in seconds."""
    t = time.perf_counter()
    r = subprocess.run(list(argv), cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.perf_counter() - t
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stdout}\n{r.stderr}")
    return took


def best(n: int, *argv: str, cwd: Path | None = None) -> float:
    return min(sh(*argv, cwd=cwd) for _ in range(n))


def odibi(*argv: str) -> list[str]:
    return [PY, "-m", "odibi", *argv]


# -- baselines -------------------------------------------------------------------------------
HASH_FLOOR = textwrap.dedent("""
    import sys, pathlib, blake3
    root = pathlib.Path(sys.argv[1])
    h = blake3.blake3()
    for p in sorted(root.rglob('*')):
        if p.is_file() and '.odibi' not in p.parts:
            h.update(p.read_bytes())
    print(h.hexdigest())
""")

DIRECT = textwrap.dedent("""
    import json, sys, duckdb
    db, script = sys.argv[1], sys.argv[2]
    digests = sys.argv[3:] == ["--digests"]  # and each table's content digest, as odibi's
    con = duckdb.connect(db)
    for name, sql in json.load(open(script)):
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS {sql}')
        if digests:
            con.execute(f'SELECT sum(hash(t)) FROM "{name}" AS t').fetchall()
    con.close()
""")


def direct_script(nodes: list[GenNode], src: str, work: Path) -> Path:
    statements = [("src", f"SELECT * FROM read_csv('{src}')")]
    statements += [(n.name, n.sql) for n in nodes]
    path = work / "direct.json"
    path.write_text(json.dumps(statements))
    return path


# -- scenarios ---------------------------------------------------------------------------------
def bench_load(sizes: list[int], work: Path) -> list[list[str]]:
    """Loading a project: YAML -> checked model (`load_project`), then dependencies and the
    graph (`resolve`: every SQL statement parsed by DuckDB), cold and from the caches."""
    rows = []
    code = textwrap.dedent("""
        import sys, time, pathlib
        root = pathlib.Path(sys.argv[1])
        t = time.perf_counter()
        if sys.argv[2] == 'model':
            from odibi.config.load import load_project
            load_project(root)
        else:
            from odibi.builder import load, open_state
            state = open_state(root, writable=sys.argv[2] == 'cached')
            load(root, [], state)
        print(time.perf_counter() - t)
    """)
    yaml_floor = textwrap.dedent("""
        import sys, time, pathlib, yaml
        t = time.perf_counter()
        for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.yaml')):
            yaml.load(p.read_text(), Loader=yaml.CSafeLoader)
        print(time.perf_counter() - t)
    """)
    for n in sizes:
        proj = work / f"load{n}"
        write_odibi(generate(n), proj)

        def inproc(script: str, *args: str) -> float:
            r = subprocess.run([PY, "-c", script, str(proj), *args], env=ENV,
                               capture_output=True, text=True, check=True)
            return float(r.stdout.strip().splitlines()[-1])

        shutil.rmtree(proj / ".odibi", ignore_errors=True)
        model = min(inproc(code, "model") for _ in range(2))
        cold = min(inproc(code, "cold") for _ in range(2))
        inproc(code, "cached")  # fill the caches
        warm = min(inproc(code, "cached") for _ in range(3))
        floor = min(inproc(yaml_floor) for _ in range(2))
        rows.append([f"{n:,}", f"{model:.3f}", f"{cold:.3f}", f"{warm:.3f}", f"{floor:.3f}",
                     f"{model / floor:.1f}x", f"{warm / floor:.2f}x"])
    return rows


def bench_noop(sizes: list[int], work: Path, jobs: int) -> tuple[list[list[str]], dict[int, Path]]:
    rows = []
    built: dict[int, Path] = {}
    floor_script = work / "hash_floor.py"
    floor_script.write_text(HASH_FLOOR)
    for n in sizes:
        proj = work / f"noop{n}"
        write_odibi(generate(n), proj)
        cold = sh(*odibi("-C", str(proj), "build", "-q", "-j", str(jobs)))
        noop = best(3, *odibi("-C", str(proj), "build", "-q", "-j", str(jobs)))
        explain = best(3, *odibi("-C", str(proj), "explain", "-q"))
        floor = best(3, PY, str(floor_script), str(proj))
        built[n] = proj
        rows.append([f"{n:,}", f"{cold:.2f}", f"{noop:.3f}", f"{explain:.3f}", f"{floor:.3f}",
                     f"{noop / floor:.1f}x"])
    return rows, built


SLEEPY = """\
import time

import pandas as pd


def nap(**inputs: pd.DataFrame) -> pd.DataFrame:
    time.sleep({seconds})
    return pd.DataFrame({{"x": [1]}})
"""


def _sleepy_project(dest: Path, layers: list[list[list[int]]], seconds: float) -> Path:
    """Python nodes that each sleep `seconds`; layers[i][j] lists the nodes of layer i-1
    that node j of layer i depends on."""
    (dest / "transforms").mkdir(parents=True, exist_ok=True)
    (dest / "transforms" / "__init__.py").write_text("")
    (dest / "transforms" / "sleepy.py").write_text(SLEEPY.format(seconds=seconds))
    lines = ["project: sleepy", "nodes:"]
    for i, layer in enumerate(layers):
        for j, deps in enumerate(layer):
            lines += [f"  - name: l{i}_{j}", "    python: transforms.sleepy:nap"]
            if deps:
                lines.append("    depends_on: [" + ", ".join(f"l{i - 1}_{d}" for d in deps) + "]")
    (dest / "odibi.yaml").write_text("\n".join(lines) + "\n")
    return dest


def _span(trace: Path) -> float:
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    return (max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)) / 1e6


def bench_parallel(work: Path, jobs: int) -> list[list[str]]:
    """Waiting nodes (I/O, sleeps) overlap: the build's span against its lower bound
    max(critical path, total work / jobs)."""
    import random

    rng = random.Random(1)
    rows = []
    wide = [[[] for _ in range(64)]]
    deep = [[[] for _ in range(16)]] + [[sorted(rng.sample(range(16), rng.randint(1, 3)))
                                         for _ in range(16)] for _ in range(7)]
    for label, layers, seconds in (("64 independent nodes, 0.25 s each", wide, 0.25),
                                   ("deep and wide: 8 layers x 16, 0.1 s each", deep, 0.1)):
        runs = []
        for attempt in range(3):  # a cold build each time; the median of three is shown
            proj = _sleepy_project(work / f"sleepy{len(layers)}-{attempt}", layers, seconds)
            trace = proj / "trace.json"
            whole = sh(*odibi("-C", str(proj), "build", "-q", "-j", str(jobs), "--profile",
                              str(trace)))
            runs.append((_span(trace), whole))
        span, whole = sorted(runs)[1]
        nodes = sum(len(x) for x in layers)
        bound = max(len(layers) * seconds, nodes * seconds / jobs)
        rows.append([label, f"{bound:.2f}", f"{span:.2f}", f"{(span / bound - 1) * 100:+.1f}%",
                     f"{whole:.2f}"])
    return rows


def bench_tiny_nodes(n: int, work: Path) -> list[list[str]]:
    """Cold build of n tiny SQL nodes with one worker vs the same statements in DuckDB."""
    proj = work / f"tiny{n}"
    nodes = generate(n)
    write_odibi(nodes, proj)
    script = work / "direct.py"
    script.write_text(DIRECT)
    plan = direct_script(nodes, str(proj / "data" / "src.csv"), work)
    direct = []
    odibi_1 = []
    odibi_8 = []
    for _ in range(2):
        db = work / "direct.duckdb"
        if db.exists():
            db.unlink()
        direct.append(sh(PY, str(script), str(db), str(plan)))
        for times, j in ((odibi_1, "1"), (odibi_8, "8")):
            shutil.rmtree(proj / ".odibi", ignore_errors=True)
            (proj / "odibi.lock").unlink(missing_ok=True)
            times.append(sh(*odibi("-C", str(proj), "build", "-q", "-j", j)))
    d, o, o8 = min(direct), min(odibi_1), min(odibi_8)
    per_node_ms = (o - d) / (n + 1) * 1000
    return [[f"{n:,}", f"{d:.2f}", f"{o:.2f}", f"{o / d:.2f}x", f"{per_node_ms:+.2f} ms",
             f"{o8:.2f}", f"{o8 / d:.2f}x"]]


def bench_smart(n: int, work: Path, jobs: int) -> tuple[list[list[str]], int]:
    """A mid-DAG edit, its revert (restore), a comment-only edit and an output-preserving
    edit (early cutoff), on n generated nodes; the closure is chosen near 241 nodes."""
    import re

    proj = work / f"smart{n}"
    nodes = generate(n)
    write_odibi(nodes, proj)
    node, closure, _, edited = edit_target(nodes)
    cmd = odibi("-C", str(proj), "build", "-q", "-j", str(jobs))
    sh(*cmd)
    const = re.search(r"WHERE v > (\d+)\Z", node.sql).group(1)  # type: ignore[union-attr]
    _set_sql(proj, node, f"WHERE v > {const}", edited)
    edit = sh(*cmd)
    _set_sql(proj, node, edited, f"WHERE v > {const}")
    reverts = [sh(*cmd)]
    for _ in range(2):  # best of 3: edit again (itself a restore now), revert again
        _set_sql(proj, node, f"WHERE v > {const}", edited)
        sh(*cmd)
        _set_sql(proj, node, edited, f"WHERE v > {const}")
        reverts.append(sh(*cmd))
    revert = min(reverts)
    synced = sh(*cmd)  # nothing changed, but the views the revert left are repointed now
    _set_sql(proj, node, f"WHERE v > {const}", f"WHERE v > {const} -- a comment")
    comment = sh(*cmd)
    _set_sql(proj, node, f"WHERE v > {const} -- a comment", f"WHERE NOT (v <= {const})")
    cutoff = sh(*cmd)
    noop = best(3, *cmd)
    rows = [
        ["one mid-DAG SQL edit (its closure runs)", f"{closure:,} built", f"{edit:.2f}"],
        ["revert that edit", f"{closure:,} restored", f"{revert:.2f}"],
        ["the next build, nothing changed (repoints the views the revert left)", "0",
         f"{synced:.2f}"],
        ["comment-only edit", "0", f"{comment:.2f}"],
        ["equivalent rewrite of the WHERE", f"1 built, {closure - 1:,} cut off", f"{cutoff:.2f}"],
        ["no-op, for comparison", "0", f"{noop:.2f}"],
    ]
    return rows, closure


def bench_binding(n: int, work: Path, jobs: int) -> tuple[list[list[str]], int]:
    """What binding every SQL node to its inputs' columns costs: each command with and
    without it (`--no-bind`), in this same run. `validate` cold: the schemas not yet
    cached (every node bound by DuckDB, the source's header read); warm: all cached.
    Builds: a cold build, and a mid-DAG edit whose closure runs (4 different edits,
    alternating with and without binding)."""
    import sqlite3

    proj = work / f"bind{n}"
    nodes = generate(n)
    write_odibi(nodes, proj)
    build = odibi("-C", str(proj), "build", "-q", "-j", str(jobs))
    cold: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for binding in (False, True):
            shutil.rmtree(proj / ".odibi", ignore_errors=True)
            (proj / "odibi.lock").unlink(missing_ok=True)
            cold[binding].append(sh(*build, *([] if binding else ["--no-bind"])))

    def forget() -> None:
        con = sqlite3.connect(proj / ".odibi" / "state.db")
        with con:
            con.execute("DELETE FROM schema_cache")
        con.close()

    validate = odibi("-C", str(proj), "validate")
    plain = best(3, *validate, "--no-bind")
    unbound = []
    for _ in range(3):
        forget()
        unbound.append(sh(*validate))
    warm = best(3, *validate)
    node, closure, where, _ = edit_target(nodes)
    edits: dict[bool, list[float]] = {True: [], False: []}
    current = where
    for i, k in enumerate((2, 3, 5, 7)):  # each edit new: its closure runs every time
        _set_sql(proj, node, current, f"{where} AND id % {k} = 0")
        current = f"{where} AND id % {k} = 0"
        binding = i % 2 == 1
        edits[binding].append(sh(*build, *([] if binding else ["--no-bind"])))
    _set_sql(proj, node, current, where)

    def row(label: str, without: float, with_: float) -> list[str]:
        return [label, f"{without:.2f}", f"{with_:.2f}", f"{with_ - without:+.2f}",
                f"{(with_ / without - 1) * 100:+.0f}%"]

    return [
        row("`odibi validate`, no schema cached", plain, min(unbound)),
        row("`odibi validate`, schemas cached", plain, warm),
        row(f"cold build `-j {jobs}`", min(cold[False]), min(cold[True])),
        row(f"one mid-DAG SQL edit, built ({closure:,} nodes run)", min(edits[False]),
            min(edits[True])),
    ], closure


def bench_heavy(rows_n: int, work: Path) -> list[list[str]]:
    proj = work / "heavy"
    src = proj / "data" / "src.parquet"
    write_heavy_source(src, rows_n)
    (proj / "odibi.yaml").write_text(heavy_yaml())
    script = work / "direct.py"
    script.write_text(DIRECT)
    plan = work / "heavy.json"
    plan.write_text(json.dumps([("src", f"SELECT * FROM read_parquet('{src}')")] + HEAVY_SQL))
    direct, digested, ours = [], [], []
    for _ in range(3):
        for times, extra in ((direct, ()), (digested, ("--digests",))):
            db = work / "heavy_direct.duckdb"
            for p in (db, Path(str(db) + ".wal")):
                if p.exists():
                    p.unlink()
            times.append(sh(PY, str(script), str(db), str(plan), *extra))
        shutil.rmtree(proj / ".odibi", ignore_errors=True)
        ours.append(sh(*odibi("-C", str(proj), "build", "-q", "-j", "1")))
    d, dd, o = min(direct), min(digested), min(ours)
    return [[f"{rows_n:,}", str(len(HEAVY_SQL)), f"{d:.2f}", f"{dd:.2f} ({(dd / d - 1) * 100:+.1f}%)",
             f"{o:.2f}", f"{(o / d - 1) * 100:+.1f}%"]]


def bench_heavy_cutoff(rows_n: int, work: Path) -> list[list[str]]:
    """On the built heavy project: rewrite `clean`'s WHERE to an equivalent one. With
    early cutoff only `clean` runs; the baseline is the same edit with `clean` and its
    dependants all re-executed (`--force clean+`: what a tool without cutoff does)."""
    proj = work / "heavy"
    yaml = proj / "odibi.yaml"
    text = yaml.read_text()
    cmd = odibi("-C", str(proj), "build", "--json", "-j", "1")
    took = {}
    # (rewrites no DuckDB version folds back into the original: 1.5 parses
    # `NOT (v < 0)` as `v >= 0`, which odibi then rightly calls a reformat)
    for label, where in [("cut", "WHERE v >= 0 AND id IS NOT NULL"),
                         ("cut", "WHERE v >= 0 AND v = v")]:
        yaml.write_text(text.replace("WHERE v >= 0", where, 1))
        t = time.perf_counter()
        r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        took.setdefault(label, []).append(time.perf_counter() - t)
        report = json.loads(r.stdout)
        outcomes = sorted(v["outcome"] for v in report["nodes"].values() if v.get("outcome"))
        if outcomes != ["built"] + ["cut off"] * (len(HEAVY_SQL) - 1):
            raise SystemExit(f"expected 1 built, {len(HEAVY_SQL) - 1} cut off: {outcomes}")
    forced = [sh(*odibi("-C", str(proj), "build", "-q", "-j", "1", "--force", "clean+"))
              for _ in range(2)]
    yaml.write_text(text)
    cut, full = min(took["cut"]), min(forced)
    return [[f"{rows_n:,}", f"1 built, {len(HEAVY_SQL) - 1} cut off", f"{cut:.2f}",
             f"{len(HEAVY_SQL)} built", f"{full:.2f}", f"{full - cut:.2f}"]]


RULES = [
    "row_count > 0", "not_null(id, k)", "unique(id)", "all(v >= 0 and v <= 100)",
    "accepted_values(status, ['paid', 'open', 'void'])", "null_count(v) <= 0.01 * row_count",
    "max(v) <= 100", "distinct_count(k) == 1000", "avg(v) between 0 and 100",
    "has_columns(id, k, v, status)",
]

RULES_SCRIPT = textwrap.dedent("""
    import json, sys, time, duckdb
    from odibi.engines.duckdb_engine import DuckDBSession
    from odibi.expr.check import Scope, compile_rules
    from odibi.expr.parse import parse_rule
    from odibi.rules import run_rules
    n, rules = int(sys.argv[1]), json.loads(sys.argv[2])
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT range AS id, range % 1000 AS k, "
                f"(random() * 100)::DOUBLE AS v, ['paid', 'open', 'void'][range % 3 + 1] AS status "
                f"FROM range({n})")
    session = DuckDBSession(con.cursor())
    scope = Scope({"t": "t"}, "t")
    together = compile_rules([(r, parse_rule(r)) for r in rules], scope)
    apart = [compile_rules([(r, parse_rule(r))], scope) for r in rules]
    def timed(f):
        best = None
        for _ in range(3):
            t = time.perf_counter(); f(); took = time.perf_counter() - t
            best = took if best is None else min(best, took)
        return best
    assert all(r.ok for r in run_rules(session, together, {"t": "t"}))
    one = timed(lambda: run_rules(session, together, {"t": "t"}))
    ten = timed(lambda: [run_rules(session, p, {"t": "t"}) for p in apart])
    scan = timed(lambda: con.execute("SELECT count(DISTINCT id), max(v) FROM t").fetchall())
    print(json.dumps([one, ten, scan, len(together.passes())]))
""")


def bench_rules(rows_n: int) -> list[list[str]]:
    """Ten rules over one table: odibi's compiled rule set (one query per dataset) against
    the same rules run one query each, and a single scan doing the costliest measure."""
    r = subprocess.run([PY, "-c", RULES_SCRIPT, str(rows_n), json.dumps(RULES)], env=ENV,
                       capture_output=True, text=True, check=True)
    one, ten, scan, queries = json.loads(r.stdout.strip().splitlines()[-1])
    return [[f"{rows_n:,}", str(len(RULES)), str(queries), f"{one:.2f}", f"{ten:.2f}",
             f"{ten / one:.1f}x", f"{scan:.2f}"]]


def _unit_test_project(dest: Path, cases: int, python_cases: int) -> Path:
    """A project of 20 SQL nodes (and a Python node) over one source, and `cases` unit
    tests of a few rows each, `python_cases` of them on the Python node."""
    sql_nodes = 20
    nodes = ["  - name: raw\n    read: {connection: raw, path: raw.csv}"]
    for i in range(sql_nodes):
        nodes.append(f"  - name: n{i}\n    sql: SELECT id, k, v * {i + 1} AS v FROM raw "
                     f"WHERE v > {i}\n    validate: [unique(id)]")
    nodes.append("  - name: py\n    python: transforms.t:double")
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "raw.csv").write_text("id,k,v\n" + "".join(f"{i},{i % 3},{i}\n"
                                                                 for i in range(100)))
    (dest / "transforms").mkdir()
    (dest / "transforms" / "__init__.py").write_text("")
    (dest / "transforms" / "t.py").write_text(
        "def double(raw):\n    out = raw.copy()\n    out['v'] = out['v'] * 2\n    return out\n")
    (dest / "odibi.yaml").write_text("project: unit\nconnections:\n  raw: {type: local, "
                                     "base_path: data}\nnodes:\n" + "\n".join(nodes) + "\n")
    lines = ["tests:"]
    for c in range(cases):
        rows = [(j, j % 3, float(j + c % 7)) for j in range(5)]
        given = ", ".join(f"{{id: {a}, k: {b}, v: {v}}}" for a, b, v in rows)
        if c < python_cases:
            node, want = "py", [(a, b, v * 2) for a, b, v in rows]
        else:
            i = c % sql_nodes
            node, want = f"n{i}", [(a, b, v * (i + 1)) for a, b, v in rows if v > i]
        expect = ", ".join(f"{{id: {a}, k: {b}, v: {v}}}" for a, b, v in want)
        lines += [f"  - name: case_{c}", f"    node: {node}",
                  f"    given: {{raw: {{rows: [{given}]}}}}", f"    expect: {{rows: [{expect}]}}"]
    (dest / "tests").mkdir()
    (dest / "tests" / "test_bench.yaml").write_text("\n".join(lines) + "\n")
    return dest


def bench_unit_tests(cases: int, work: Path) -> list[list[str]]:
    """`odibi test` on `cases` cases, whole process, best of 3; against `odibi validate` on
    the same project (loading it: what every command pays before running anything)."""
    out = []
    for python_cases in (0, cases // 10):
        proj = _unit_test_project(work / f"unit_{cases}_{python_cases}", cases, python_cases)
        validate = best(3, *odibi("-C", str(proj), "validate", "--no-bind"))
        run = best(3, *odibi("-C", str(proj), "test", "-q"))
        kind = "SQL" if not python_cases else f"{cases - python_cases} SQL, {python_cases} Python"
        out.append([f"{cases} ({kind})", f"{validate:.2f}", f"{run:.2f}",
                    f"{(run - validate) / cases * 1000:.1f} ms"])
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def machine() -> str:
    import duckdb

    return (f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"DuckDB {duckdb.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, for everyday use")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--incumbents", action=argparse.BooleanOptionalAction,
                    help="dbt and SQLMesh side by side at 1,000 nodes (default: when they are "
                         f"installed, {incumbents.INSTALL}, and not --quick)")
    ap.add_argument("--incumbents-python", metavar="PYTHON",
                    help="run the side by side with this interpreter (a venv with "
                         f"{incumbents.INSTALL}), and everything else with this one: "
                         "the incumbents pin DuckDB < 2, odibi's own numbers should not")
    ap.add_argument("--spark", action=argparse.BooleanOptionalAction,
                    help="odibi on Spark (bench/spark_bench.py; default: when pyspark is "
                         "installed and not --quick)")
    args = ap.parse_args()
    spark = spark_bench.wanted(args.spark, args.quick)
    side = args.incumbents_python is not None or incumbents.wanted(args.incumbents, args.quick)
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    heavy_rows = 2_000_000 if args.quick else 10_000_000
    jobs = 8
    work = Path(tempfile.mkdtemp(prefix="odibi-bench-"))
    try:
        side_doc = incumbents.skipped(args.quick)
        if side:
            print("side by side with dbt and SQLMesh (1,000 nodes) ...", flush=True)
            if args.incumbents_python:
                subprocess.run([args.incumbents_python, str(HERE / "incumbents.py"), "1000",
                                "--jobs", str(jobs), "--out", str(work / "side.md")],
                               env=ENV, check=True)
                side_doc = (work / "side.md").read_text()
            else:
                tools, facts = incumbents.side_by_side(1000, work / "side", jobs, ENV)
                side_doc = incumbents.section(tools, facts, jobs, table)
        print("load ...", flush=True)
        load_rows = bench_load(sizes, work)
        print("no-op and explain ...", flush=True)
        noop_rows, _ = bench_noop(sizes, work, jobs)
        print("edits, reverts, cutoff ...", flush=True)
        smart_rows, closure = bench_smart(1000, work, jobs)
        print("parallel waits ...", flush=True)
        parallel_rows = bench_parallel(work, jobs)
        print("column binding ...", flush=True)
        bind_rows, bind_closure = bench_binding(1000, work, jobs)
        print("tiny nodes ...", flush=True)
        tiny_rows = bench_tiny_nodes(1000, work)
        print("heavy data ...", flush=True)
        heavy_rows_out = bench_heavy(heavy_rows, work)
        cutoff_rows = bench_heavy_cutoff(heavy_rows, work)
        print("rules ...", flush=True)
        rules_rows = bench_rules(heavy_rows)
        print("unit tests ...", flush=True)
        unit_rows = bench_unit_tests(200, work)
        spark_doc = (spark_bench.run(heavy_rows, work / "spark") if spark
                     else spark_bench.skipped())
        help_time = best(5, *odibi("--help"))
        startup = best(5, PY, "-c", "pass")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = f"""# Benchmarks

Written by `python bench/run.py{' --quick' if args.quick else ''}{' --incumbents-python PYTHON' if args.incumbents_python else ' --incumbents' if side else ''}` on {datetime.date.today()}:
{machine()}. Every ratio compares two numbers measured in this same run. Commands run as
separate processes (`python -m odibi`), wall-clock seconds, best of 2-5 runs.

{side_doc}

## Loading a project (YAML -> model -> dependency graph)

Generated layered DAGs of SQL nodes (`bench/generate.py`: width 50, each node reading 1-3
nodes of the layer above). *Model*: YAML -> the checked, frozen project model, cold.
*+ SQL, cold*: and the dependency graph, every SQL statement parsed by DuckDB (its import
included), no `.odibi/`. *Cached*: the same with the parses reused from `.odibi/state.db`
(keyed by content digests). Baseline: PyYAML's C loader reading the same files into plain
dicts, nothing else.

{table(["nodes", "model, cold (s)", "model + SQL, cold (s)", "model + SQL, cached (s)", "YAML C loader alone (s)", "model / YAML", "cached / YAML"], load_rows)}

## No-op build and explain

After a full build, `odibi build -j {jobs}` and `odibi explain` with nothing changed, whole
process. Baseline: a Python process that blake3-hashes every file of the project (the least
any tool must do to know nothing changed).

{table(["nodes", "cold build (s)", "no-op build (s)", "explain (s)", "hash-everything floor (s)", "no-op / floor"], noop_rows)}

`odibi --help`: {help_time:.3f} s (bare `python -c pass`: {startup:.3f} s).

## Edits, reverts and early cutoff (1,000 nodes, `-j {jobs}`)

One generated filter node whose downstream closure is {closure:,} nodes (itself included)
is edited, then the edit is reverted (best of 3 edit/revert rounds), then comes a build
with nothing changed, then a comment is added, then its WHERE is rewritten to an
equivalent one. Each row is one whole `odibi build` process. A revert that exports
nothing leaves the warehouse closed; the next build (here the one with nothing changed)
opens it and repoints the {closure:,} views first, so whoever reads the warehouse directly
sees what odibi.lock says.

{table(["change", "what runs", "seconds"], smart_rows)}

## Parallelism (`-j {jobs}`)

Python nodes that each sleep (standing in for I/O), so they overlap even on 2 cores. The
span is from the first node's start to the last node's end in the build's `--profile`
trace (a cold build, the median of three); the lower bound is max(critical path, total
work / {jobs}). A Python node holds its slot only while its function runs: loading its
inputs and committing its output happen off the slot (README, "Running"). The whole
command (Python start-up, imports, pandas) is the last column.

{table(["DAG", "lower bound (s)", "span (s)", "over the bound", "whole command (s)"], parallel_rows)}

## Column binding (1,000 nodes)

Every SQL node bound to its inputs' columns before anything runs (README, "Column
binding"): `odibi validate` binds them all; a build binds the ones it will run, so a typo
stops it before any work. Each command with and without binding (`--no-bind`), whole
processes, best of 2-3, in this same run. Without binding, `validate` still loads the
project and checks every SQL parse and reference (from the caches). Cold `validate`: no
schema cached yet (DuckDB imported, the source's header read, 1,000
statements bound); warm: every schema cached by its SQL and its inputs' schemas (DuckDB
not even imported). The edit: {bind_closure:,} nodes run, one of them bound anew (the
others' inputs have the columns they had: cached).

{table(["command", "without binding (s)", "with binding (s)", "binding costs (s)", "overhead"], bind_rows)}

## Per-node overhead on tiny SQL nodes

A cold build of 1,000 tiny generated SQL nodes with one worker (`-j 1`), against the same
statements run one after another by DuckDB's Python API in one process (`CREATE TABLE AS`).
The difference per node is odibi's bookkeeping: fingerprints, a transaction per node, the
view, the output digest, the state record.

{table(["nodes", "DuckDB direct (s)", "odibi -j 1 (s)", "ratio", "odibi overhead per node", "odibi -j 8 (s)", "ratio"], tiny_rows)}

## Heavy data

A {heavy_rows:,}-row parquet source through {len(HEAVY_SQL)} SQL nodes (filter, aggregate,
window, join, daily rollup), `-j 1`, against the same statements in DuckDB directly (best
of 3). The middle column is DuckDB directly plus the one query per table that odibi's
output digest costs (`SELECT sum(hash(t))`, what early cutoff and the lock's `output`
are made of): most of odibi's overhead at this size.

{table(["rows", "SQL nodes", "DuckDB direct (s)", "direct + output digests (s)", "odibi (s)", "overhead"], heavy_rows_out)}

Early cutoff on the same project: `clean`'s WHERE rewritten to an equivalent one (the
rows come out the same). odibi runs `clean`, finds its output digest unchanged and cuts
off the {len(HEAVY_SQL) - 1} nodes below it; the baseline is that edit with everything
below re-executed (`--force clean+`, what a tool without cutoff does). Whole commands, `-j 1`.

{table(["rows", "with cutoff", "seconds", "without", "seconds", "saved (s)"], cutoff_rows)}

## Rules: one pass per rule set

Ten rules (contracts / validations) over one {heavy_rows:,}-row table in DuckDB:
{", ".join(f"`{r}`" for r in RULES)}. odibi compiles the set into one query per dataset;
the baseline runs the same rules one query each. For scale, a single scan computing only
the costliest measure (`count(DISTINCT id)`, `max(v)`). Best of 3, in one process.

{table(["rows", "rules", "queries", "odibi, rule set (s)", "one query per rule (s)", "saved", "one scan, costliest measure (s)"], rules_rows)}

## Unit tests (`odibi test`)

200 generated cases of five fixture rows each over 20 SQL nodes (each with a validation),
then the same with a tenth of them on a Python node (pandas is imported for those). Whole
`odibi test` processes, best of 3; every case runs its node's SQL or function, its rules
and the comparison, all on one in-memory DuckDB. For scale, `odibi validate` on the same
project, without column binding (`--no-bind`: start-up and loading, which every command
pays). Target: under 5 s for 200 cases.

{table(["cases", "odibi validate --no-bind (s)", "odibi test (s)", "per case, beyond loading"], unit_rows)}

{spark_doc}"""
    Path(args.out).write_text(doc)
    print(doc)


if __name__ == "__main__":
    main()
