"""odibi side by side with dbt (dbt-core + dbt-duckdb) and SQLMesh, measured in one run.

The same generated pipeline (`generate.py`) is written three times: as an odibi project, a
dbt-duckdb project and a SQLMesh project, each node with the same SQL text (its inputs
referenced the way each tool wants: a bare name, `{{ ref('x') }}`, `bench.x`), every
node materialised as a table, 8 threads. Each scenario is one whole command per tool, run
as its user would type it (`COMMANDS` below lists them), wall-clock seconds.

The incumbents are optional (`pip install '.[bench]'`); `bench/run.py --incumbents` runs
this part, in the interpreter that has them, so all three tools use the same DuckDB.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__:
    from .generate import GenNode, edit_target, generate, set_sql, source_csv, write_odibi
else:
    from generate import GenNode, edit_target, generate, set_sql, source_csv, write_odibi

PINS = {"dbt-core": "1.10.23", "dbt-duckdb": "1.10.1", "sqlmesh": "0.236.4"}
SCHEMA = "bench"  # SQLMesh model names need a schema: bench.<node>
SOURCE = "read_csv('data/src.csv')"  # what odibi's `read: {format: csv}` node runs
ROWS = 1000  # rows of the generated source
SECOND_SOURCE_SEED = 1  # the "source data change" rewrites data/src.csv from another seed


def missing() -> list[str]:
    """The incumbent packages this interpreter lacks."""
    modules = {"dbt-core": "dbt.cli.main", "dbt-duckdb": "dbt.adapters.duckdb",
               "sqlmesh": "sqlmesh"}
    out = []
    for package, module in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(package)
    return out


INSTALL = "pip install -e '.[bench]'"


def wanted(flag: bool | None, quick: bool) -> bool:
    """`--incumbents` runs them (and fails without them), `--no-incumbents` skips them; by
    default they run when installed, except with `--quick`."""
    if flag is None:
        return not quick and not missing()
    if flag and missing():
        raise SystemExit(f"--incumbents: missing {', '.join(missing())}: {INSTALL}")
    return flag


def versions() -> str:
    from importlib.metadata import version

    import duckdb

    names = ["dbt-core", "dbt-duckdb", "sqlmesh", "odibi"]
    return ", ".join(f"{n} {version(n)}" for n in names) + f", DuckDB {duckdb.__version__}"


# -- the same pipeline, written for each tool ------------------------------------------------
def with_refs(node: GenNode, ref: Callable[[str], str]) -> str:
    """The node's SQL with each of its inputs (a bare name in odibi) written as `ref(name)`."""
    names = "|".join(re.escape(x) for x in sorted(node.inputs, key=len, reverse=True))
    return re.sub(rf"\b(?:{names})\b", lambda m: ref(m.group(0)), node.sql)


def _source(dest: Path, rows: int) -> None:
    (dest / "data").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "src.csv").write_text(source_csv(rows))


def write_dbt(nodes: list[GenNode], dest: Path, rows: int = ROWS, threads: int = 8) -> Path:
    """A dbt-duckdb project: every model a table in `bench.duckdb`, `src` a model reading the
    csv with DuckDB's read_csv (as odibi's read node does; a dbt seed would load it row by
    row through Python instead), profiles.yml in the project (dbt looks in the working
    directory), anonymous usage statistics off (no network)."""
    _source(dest, rows)
    models = dest / "models"
    models.mkdir(parents=True, exist_ok=True)
    (dest / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n"
        "model-paths: [models]\n"
        "flags:\n  send_anonymous_usage_stats: false\n"
        "models:\n  bench:\n    +materialized: table\n")
    (dest / "profiles.yml").write_text(
        "bench:\n  target: dev\n  outputs:\n    dev:\n"
        f"      type: duckdb\n      path: bench.duckdb\n      threads: {threads}\n")
    (models / "src.sql").write_text(f"SELECT * FROM {SOURCE}\n")
    for node in nodes:
        sql = with_refs(node, lambda x: "{{ ref('" + x + "') }}")
        (models / f"{node.name}.sql").write_text(sql + "\n")
    return dest


def write_sqlmesh(nodes: list[GenNode], dest: Path, rows: int = ROWS,
                  threads: int = 8) -> Path:
    """A SQLMesh project: one DuckDB gateway (`bench.duckdb`, `concurrent_tasks` the thread
    count), every model `kind FULL` (a table rebuilt whole, like an odibi SQL node) named
    `bench.<node>`, `bench.src` reading the csv."""
    _source(dest, rows)
    models = dest / "models"
    models.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(
        "gateways:\n  local:\n    connection:\n      type: duckdb\n"
        f"      database: bench.duckdb\n      concurrent_tasks: {threads}\n"
        "default_gateway: local\nmodel_defaults:\n  dialect: duckdb\n")

    def model(name: str, sql: str) -> None:
        (models / f"{name}.sql").write_text(
            f"MODEL (\n  name {SCHEMA}.{name},\n  kind FULL\n);\n\n{sql}\n")

    model("src", f"SELECT * FROM {SOURCE}")
    for node in nodes:
        model(node.name, with_refs(node, lambda x: f"{SCHEMA}.{x}"))
    return dest


# -- running whole commands ----------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    output: str


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> Run:
    """One command: wall time, the max RSS of its process (`wait4`) and its output."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)} in {cwd}\n{text[-4000:]}")
    return Run(took, usage.ru_maxrss / 1024, text)  # ru_maxrss: KiB on Linux


@dataclass
class Tool:
    """One tool's project and the command each scenario runs in it."""

    name: str
    root: Path
    env: dict[str, str]
    commands: dict[str, list[str]]
    model_file: Callable[[Path, GenNode], Path] | None  # None: odibi (YAML)
    what_ran: Callable[[Path, str], str]
    after: Callable[[Path, list[str]], None] = lambda root, argv: None
    times: dict[str, float] = field(default_factory=dict)
    ran: dict[str, str] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)

    def measure(self, scenario: str, repeat: int = 1) -> None:
        best = None
        for _ in range(repeat):
            r = run(self.commands[scenario], self.root, self.env)
            self.after(self.root, self.commands[scenario])
            if best is None or r.seconds < best.seconds:
                best = r
        assert best is not None
        self.times[scenario] = best.seconds
        self.rss[scenario] = best.max_rss_mb
        self.ran[scenario] = "" if scenario == "help" else self.what_ran(self.root, best.output)

    def edit(self, node: GenNode, old: str, new: str) -> None:
        if self.model_file is None:
            set_sql(self.root, node, old, new)
            return
        path = self.model_file(self.root, node)
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{old!r} not in {path}")
        path.write_text(text.replace(old, new, 1))


def _odibi_ran(root: Path, output: str) -> str:
    lines = output.strip().splitlines()  # last: "done: 241 built, ... (0.71s)"
    return re.sub(r"^(done|nothing to do): | \([\d.]+s\)$", "", lines[-1]) if lines else ""


def _dbt_ran(root: Path, output: str) -> str:
    m = re.search(r"Done\. PASS=(\d+)", output)
    if m:
        return f"{int(m.group(1)):,} run"
    if "does not match any enabled nodes" in output:
        return "0 selected"
    listed = [x for x in output.splitlines() if x.startswith("bench.")]  # dbt ls
    return f"{len(listed):,} selected" if listed else ""


def _sqlmesh_ran(root: Path, output: str) -> str:
    batches = re.findall(r"Executing model batches[^\n]*?(\d+)/(\d+)", output)
    if batches:
        return f"{int(batches[-1][1]):,} run"
    if "Models needing backfill" in output:  # plan --explain: "* `bench.x`: [full refresh]"
        listed = output.split("Models needing backfill", 1)[1].split("Explained plan")[0]
        more = re.findall(r"\.\.\.\. (\d+) more \.\.\.\.", listed)  # a long list is cut
        return f"{len(re.findall(r'^[*-] `bench', listed, re.M)) + sum(map(int, more)):,} to run"
    if "Virtual layer updated" in output:
        return "0 run, virtual layer updated"
    return "0 run" if "No changes to plan" in output else ""


def _save_manifest(root: Path, argv: list[str]) -> None:
    """What a dbt user of state selection keeps: the manifest of what was last run."""
    if "run" not in argv:
        return
    state = root / "state"
    state.mkdir(exist_ok=True)
    manifest = root / "target" / "manifest.json"
    if manifest.exists():
        shutil.copy2(manifest, state / "manifest.json")


SCENARIOS = [  # key, label, repeat (best of)
    ("help", "`--help`", 3),
    ("cold", "cold full build", 1),
    ("noop", "no-op build", 2),
    ("decide", "no-op decision (explain / ls / plan)", 2),
    ("comment", "comment-only edit", 1),
    ("plan", "what one mid-DAG SQL edit will run (explain / ls / plan)", 2),
    ("edit", "that edit, built", 1),
    ("revert", "revert that edit", 1),
    ("data", "source data change (data/src.csv rewritten)", 1),
]


def _scenarios(cli: list[str], cold: list[str], build: list[str], decide: list[str],
               data: list[str]) -> dict[str, list[str]]:
    """Each scenario's command: `build` after every edit (and for the no-op), `decide` to
    ask what would run."""
    return {"help": [*cli, "--help"], "cold": cold, "noop": build, "decide": decide,
            "comment": build, "plan": decide, "edit": build, "revert": build, "data": data}


def _model_file(root: Path, node: GenNode) -> Path:
    return root / "models" / f"{node.name}.sql"


def tools(work: Path, nodes: list[GenNode], jobs: int, odibi_env: dict[str, str]) -> list[Tool]:
    bin_dir = Path(sys.executable).parent
    odibi = [sys.executable, "-m", "odibi"]
    dbt = [str(bin_dir / "dbt")]
    sqlmesh = [str(bin_dir / "sqlmesh")]
    env = {k: v for k, v in odibi_env.items() if k != "PYTHONPATH"}
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    odibi_build = [*odibi, "build", "-j", str(jobs)]
    dbt_state = ["-s", "state:modified+", "--state", "state"]
    apply = [*sqlmesh, "plan", "--auto-apply", "--no-prompts"]
    return [
        Tool("odibi", write_odibi(nodes, work / "odibi", ROWS), odibi_env,
             _scenarios(odibi, odibi_build, odibi_build, [*odibi, "explain"], odibi_build),
             None, _odibi_ran),
        Tool("dbt", write_dbt(nodes, work / "dbt", ROWS, jobs), env,
             _scenarios(dbt, [*dbt, "run"], [*dbt, "run", *dbt_state], [*dbt, "ls", *dbt_state],
                        [*dbt, "run"]),
             _model_file, _dbt_ran, _save_manifest),
        Tool("SQLMesh", write_sqlmesh(nodes, work / "sqlmesh", ROWS, jobs), env,
             _scenarios(sqlmesh, apply, apply,
                        [*sqlmesh, "plan", "--explain"],  # the plan, shown, not applied
                        [*sqlmesh, "plan", "--restate-model", f"{SCHEMA}.src", "--auto-apply",
                         "--no-prompts"]),
             _model_file, _sqlmesh_ran),
    ]


def _results_agree(ts: list[Tool], names: list[str]) -> None:
    """The three warehouses hold the same rows for `names` (count and column sums)."""
    import duckdb

    where = {"odibi": (".odibi/warehouse.duckdb", "main"), "dbt": ("bench.duckdb", "main"),
             "SQLMesh": ("bench.duckdb", f"bench.{SCHEMA}")}
    seen = {}
    for t in ts:
        db, schema = where[t.name]
        con = duckdb.connect(str(t.root / db), read_only=True)
        try:
            seen[t.name] = [con.execute(f'SELECT count(*), sum(id), sum(k), sum(v) '
                                        f'FROM {schema}."{n}"').fetchone() for n in names]
        finally:
            con.close()
    if len({repr(v) for v in seen.values()}) != 1:
        raise SystemExit(f"the tools disagree on {names}: {seen}")


def side_by_side(n: int, work: Path, jobs: int, odibi_env: dict[str, str],
                 log: Callable[[str], None] = print) -> tuple[list[Tool], dict[str, str]]:
    """Every scenario for every tool on the same generated `n`-node pipeline; returns the
    tools (with their times) and facts for the write-up."""
    nodes = generate(n)
    node, closure, where, edited = edit_target(nodes)
    ts = tools(work, nodes, jobs, odibi_env)
    t0 = time.perf_counter()
    for key, label, repeat in SCENARIOS:
        for t in ts:
            if key == "comment":
                t.edit(node, where, f"{where} -- a comment")
            elif key == "plan":
                t.edit(node, where, edited)
            elif key == "revert":
                t.edit(node, edited, where)
            elif key == "data":
                (t.root / "data" / "src.csv").write_text(source_csv(ROWS, SECOND_SOURCE_SEED))
            t.measure(key, repeat)
            log(f"  {n:,} nodes, {label}: {t.name} {t.times[key]:.2f} s ({t.ran[key]})")
        if key in ("cold", "data"):
            _results_agree(ts, [x.name for x in nodes[-3:]])
    facts = {"node": node.name, "closure": f"{closure:,}", "where": where, "edited": edited,
             "seconds": f"{time.perf_counter() - t0:.0f}", "nodes": f"{n:,}"}
    return ts, facts


# -- the write-up ----------------------------------------------------------------------------------
def _ratio(other: float, ours: float) -> str:
    return f"{other / ours:.1f}x" if ours > 0 else "-"


def rows(ts: list[Tool]) -> list[list[str]]:
    odibi, dbt, sqlmesh = ts
    out = []
    for key, label, _ in SCENARIOS:
        cells = [f"{t.times[key]:.2f}" + (f" ({t.ran[key]})" if t.ran[key] else "") for t in ts]
        out.append([label, *cells, _ratio(dbt.times[key], odibi.times[key]),
                    _ratio(sqlmesh.times[key], odibi.times[key])])
    for label, peak in (("peak memory of the cold build, MB (max RSS)", lambda t: t.rss["cold"]),
                        ("peak memory of any command above, MB", lambda t: max(t.rss.values()))):
        mem = [peak(t) for t in ts]
        out.append([label, *[f"{m:.0f}" for m in mem], _ratio(mem[1], mem[0]),
                    _ratio(mem[2], mem[0])])
    return out


def commands(ts: list[Tool]) -> list[list[str]]:
    def show(argv: list[str]) -> str:
        words = [Path(argv[0]).name, *argv[1:]]
        if words[:3] == [Path(sys.executable).name, "-m", "odibi"]:
            words = ["odibi", *words[3:]]
        return "`" + " ".join(words) + "`"

    return [[label, *[show(t.commands[key]) for t in ts]] for key, label, _ in SCENARIOS]


def section(ts: list[Tool], facts: dict[str, str], jobs: int, table) -> str:
    """The BENCHMARKS.md section (`table(header, rows)` formats a markdown table)."""
    return f"""## Side by side: odibi, dbt and SQLMesh ({facts['nodes']} nodes, {jobs} threads)

The same generated pipeline ({facts['nodes']} SQL nodes over one csv source, `bench/generate.py`)
written as an odibi, a dbt-duckdb and a SQLMesh project by `bench/incumbents.py`: the same
SQL text per node, every node a table, {jobs} threads (`-j {jobs}`; dbt `threads: {jobs}`;
SQLMesh `concurrent_tasks: {jobs}`), the source read by DuckDB's `read_csv` in each. All
three are installed in one virtualenv, on one DuckDB: {versions()}. Each cell is one whole command
(wall-clock seconds; `--help`, no-op and decision best of 2-3), in this order, each tool
on its own project; in parentheses, what ran. After the cold build and the source change,
the three warehouses are checked to hold the same rows. Ratios: the incumbent's time over
odibi's (higher is better for odibi). This part took {facts['seconds']} s.

The edit changes `{facts['node']}` (a filter whose downstream closure is {facts['closure']}
nodes, itself included) from `{facts['where']}` to `{facts['edited']}`: each tool is asked
what it will run, then builds it; the revert puts the line back. The comment-only edit,
made first, appends ` -- a comment` to that line (it stays for the edit and the revert).
The source change rewrites `data/src.csv` with other values (same size).

{table(["scenario", "odibi (s)", "dbt (s)", "SQLMesh (s)", "dbt / odibi", "SQLMesh / odibi"], rows(ts))}

The command each cell measured (run in the project directory; dbt's `state/` holds the
`manifest.json` of its previous run, copied there after each `dbt run`, untimed, as a
user of state selection keeps it; dbt has no way to notice a changed file behind a model,
so its user runs everything, and SQLMesh's restates the source and what is downstream):

{table(["scenario", "odibi", "dbt", "SQLMesh"], commands(ts))}
"""


def skipped(quick: bool) -> str:
    why = "`--quick`" if quick else (f"{', '.join(missing())} not installed" if missing()
                                     else "`--no-incumbents`")
    return f"""## Side by side: odibi, dbt and SQLMesh

Not measured in this run ({why}). In a virtualenv with the pinned incumbents
(`{INSTALL}`: {", ".join(f"{k} {v}" for k, v in PINS.items())}), `python bench/run.py`
runs them too (`--incumbents` insists on it).
"""


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="odibi vs dbt vs SQLMesh, one size, no write-up")
    ap.add_argument("nodes", type=int, nargs="?", default=100)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--out", help="write the BENCHMARKS.md section to this file "
                                  "(bench/run.py --incumbents-python does)")
    args = ap.parse_args()
    if missing():
        raise SystemExit(f"missing: {', '.join(missing())} (pip install '.[bench]')")
    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(repo)
    work = Path(tempfile.mkdtemp(prefix="odibi-incumbents-"))
    try:
        ts, facts = side_by_side(args.nodes, work, args.jobs, env)

        def table(header: list[str], body: list[list[str]]) -> str:
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])

        text = section(ts, facts, args.jobs, table)
        if args.out:
            Path(args.out).write_text(text)
        else:
            print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
