"""Putting the pieces together for the commands: load -> fingerprint -> plan -> execute.

Each step is a free function over frozen values, composed by the CLI:

    state    = open_state(root, writable)
    resolved = load(root, overrides, state)          # YAML and SQL parses come from caches
    prepared = prepare(resolved, state)              # fingerprints, traces, output checks
    plan     = make_plan(prepared, selection, forced)
    result   = run(prepared, plan, state, ...)       # only when something must run
    finish(prepared, state, ...)                     # odibi.lock from the state

A no-op build touches neither DuckDB nor pandas: the warehouse is only opened when a node
must run, or when its file changed since odibi last closed it (then its catalog is read
to find tables dropped by hand).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.config.load import VarOverride, load_project
from odibi.config.model import PythonSpec, ReadSpec, SqlSpec
from odibi.config.ytree import CACHE_VERSION, read_bytes
from odibi.engines.base import Engine, EngineError
from odibi.errors import UsageError
from odibi.events import Reporter, Warning_
from odibi.fingerprint import (
    FileDigests,
    OwnParts,
    Stamp,
    chain,
    export_changed,
    export_path,
    exported_paths,
    own_parts,
    same_file,
    stamp_file,
)
from odibi.guards import ExportGuards
from odibi.hashing import digest_bytes, digest_parts, digest_text
from odibi.ids import Digest, NodeId, OnFail
from odibi.lockfile import LOCK_FILE, read_entries, render, write_if_changed
from odibi.paths import shown
from odibi.planner import (
    OutputCheck,
    Plan,
    PlanInputs,
    PlannedStep,
    PlanOptions,
    Reason,
    Status,
    plan,
)
from odibi.resolve import Resolved, resolve
from odibi.state import State, Trace

if TYPE_CHECKING:  # the executor (threads, engines) is imported only when a node runs
    from odibi.executor import Job, PythonCall, RunOptions, RunResult

WAREHOUSE = "warehouse.duckdb"


def open_state(root: Path, *, writable: bool) -> State:
    return State(root, create=writable)


@dataclass(frozen=True, slots=True)
class _LoadedFrom:
    """What a cached project was loaded from; it is reused only if all of it is the same."""

    version: str
    overrides: str
    patterns: tuple[str, ...]
    files: Mapping[str, Digest]  # project-relative YAML file -> content digest
    modules: Mapping[str, Digest]  # Python transform module file -> content digest
    sql_files: Mapping[str, Stamp] = field(default_factory=dict)  # project-relative .sql files


CachedProject = tuple[_LoadedFrom, Resolved]


def load(root: Path, overrides: list[VarOverride], state: State | None) -> Resolved:
    """Load and resolve the project (see `load_fresh`), remembering it in a writable
    state for the next command."""
    resolved, entry = load_fresh(root, overrides, state)
    if entry is not None and state is not None and (state.writable or state.holding):
        remember(state, entry)
    return resolved


def remember(state: State, entry: CachedProject) -> None:
    state.caches.put_project(str(entry[1].project.root), entry[0], entry[1])


def load_fresh(root: Path, overrides: list[VarOverride], state: State | None
               ) -> tuple[Resolved, CachedProject | None]:
    """Load and resolve the project. When nothing it was made from changed (YAML files,
    the files the pipeline globs match, the .sql files nodes name, Python transform modules,
    --var overrides), the last resolved project is reused from the state; otherwise
    unchanged YAML files and SQL texts still come from the state's parse caches, and the
    result is returned with what to cache. A project that uses `${env:...}` is never
    cached whole: its values would be written to disk."""
    usable = state is not None and state.available
    caching = usable or (state is not None and state.holding)
    root = root.resolve()
    wanted = _overrides_key(overrides)
    if usable:
        hit = _cached_project(root, wanted, state)  # type: ignore[arg-type]
        if hit is not None:
            return hit, None
    digests: dict[str, Digest] = {}
    sql_files: dict[str, Stamp] = {}
    uses_env = [False]

    def read_sql(path: Path) -> bytes:
        data, stamp = stamp_file(path, read_bytes)  # many small files: stat, not hash, later
        sql_files[path.relative_to(root).as_posix()] = stamp
        uses_env[0] = uses_env[0] or b"${env:" in data or b"${ env:" in data
        return data

    def read(path: Path) -> tuple[Any, bytes]:
        data = read_bytes(path)
        digests[path.relative_to(root).as_posix()] = digest_bytes(data)
        uses_env[0] = uses_env[0] or b"${env:" in data or b"${ env:" in data
        if not caching:
            return _parse(data, path), data
        key = digest_parts(CACHE_VERSION, digest_bytes(data))
        value = state.caches.get_yaml(str(path), key)  # type: ignore[union-attr]
        if value is None:
            value = _parse(data, path)
            state.caches.put_yaml(str(path), key, value)  # type: ignore[union-attr]
        return value, data

    project = load_project(root, overrides, read_file=read, read_sql=read_sql)
    resolved = resolve(project, state.caches if caching else None)
    if uses_env[0]:
        return resolved, None
    modules = {str(fn.file): digest_bytes(fn.file.read_bytes())
               for fn in resolved.python.values()}
    made = _LoadedFrom(_cache_version(), wanted, project.pipeline_patterns, digests, modules,
                       sql_files)
    return resolved, (made, resolved)


_CODE: list[str] = []


def _cache_version() -> str:
    """What a cached project was made by: the cache format and odibi's own code (size and
    mtime of its modules), so that an upgraded odibi never reuses a project another
    version resolved."""
    if not _CODE:
        package = Path(__file__).parent
        stamps = []
        for path in sorted(package.rglob("*.py")):
            st = path.stat()
            stamps.append((path.relative_to(package).as_posix(), st.st_size, st.st_mtime_ns))
        _CODE.append(digest_parts(CACHE_VERSION, json.dumps(stamps)))
    return _CODE[0]


def _overrides_key(overrides: list[VarOverride]) -> str:
    return json.dumps(sorted((o.name, repr(o.value)) for o in overrides))


def _cached_project(root: Path, overrides: str, state: State) -> Resolved | None:
    def fresh(made: Any) -> bool:
        if not isinstance(made, _LoadedFrom) or made.version != _cache_version() \
                or made.overrides != overrides:
            return False
        from odibi.config.load import PROJECT_FILE, pipeline_files

        files = [PROJECT_FILE, *pipeline_files(root, made.patterns)]
        if files != list(made.files):
            return False
        try:
            return all(digest_bytes((root / rel).read_bytes()) == made.files[rel]
                       for rel in files) and \
                all(same_file(root / rel, st) for rel, st in made.sql_files.items()) and \
                all(digest_bytes(Path(p).read_bytes()) == d for p, d in made.modules.items())
        except OSError:
            return False

    resolved = state.caches.get_project(str(root), fresh)
    return resolved if isinstance(resolved, Resolved) else None


def _parse(data: bytes, path: Path) -> Any:
    from odibi.config.yaml_load import parse_yaml_bytes  # PyYAML only on a cache miss

    return parse_yaml_bytes(data, str(path))


@dataclass(frozen=True, slots=True)
class Prepared:
    resolved: Resolved
    own: Mapping[NodeId, OwnParts]
    traces: Mapping[NodeId, Trace]
    failures: Mapping[NodeId, Digest]
    outputs: Mapping[NodeId, OutputCheck]
    warnings: tuple[str, ...]
    restamped: Mapping[NodeId, Trace] = field(default_factory=dict)  # exports touched, same bytes
    stored: Mapping[tuple[NodeId, Digest], Trace] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.resolved.project.root / ".odibi" / WAREHOUSE


def env_redactions(resolved: Resolved, environ: Mapping[str, str] = os.environ
                   ) -> dict[str, str]:
    """{value: '${env:NAME}'} for each environment variable a node uses, longest value
    first: error messages show the placeholder, never the value (DESIGN §1). Values shorter
    than 3 characters are left alone: replacing them would garble any message."""
    names = {n for node in resolved.project.nodes.values() for n in node.env_used}
    pairs = {environ[n]: f"${{env:{n}}}" for n in sorted(names)
             if len(environ.get(n, "")) >= 3}
    return dict(sorted(pairs.items(), key=lambda kv: -len(kv[0])))


def warehouse_stamp(path: Path) -> str | None:
    """Size/mtime/inode of the warehouse file and its WAL: if it is what odibi recorded when
    it last closed the warehouse, nothing was changed by hand since."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    wal = Path(str(path) + ".wal")
    w = os.stat(wal) if wal.exists() else None
    return json.dumps([st.st_size, st.st_mtime_ns, st.st_ino,
                       [w.st_size, w.st_mtime_ns] if w else None])


def fingerprint_all(resolved: Resolved, state: State) -> tuple[dict[NodeId, OwnParts],
                                                                 FileDigests]:
    """Every node's own fingerprint parts (source files hashed only when their stat changed).
    Callers that need every source to exist call `check_sources` first."""
    files = FileDigests(state.caches.file_stamps())
    exported = exported_paths(resolved)
    own = {n: own_parts(resolved, n, files, exported) for n in resolved.graph.names}
    if files.changed:
        state.caches.put_file_stamps(files.changed)
    return own, files


def modified_since_lock(resolved: Resolved, own: Mapping[NodeId, OwnParts], which: str
                        ) -> tuple[frozenset[NodeId], str | None]:
    """`state:new`: nodes odibi.lock does not list. `state:modified`: those, and nodes whose
    own parts (logic, config, vars, sources) differ from what the lock recorded; a change
    upstream does not count (select `state:modified+` for what a change affects)."""
    locked, problem = read_entries(resolved.project.root)
    chosen = set()
    for n, parts in own.items():
        entry = locked.get(n)
        if entry is None:
            chosen.add(n)
        elif which == "modified" and chain(parts.digest, entry.upstream) != entry.fingerprint:
            chosen.add(n)
    return frozenset(chosen), problem


def prepare(resolved: Resolved, state: State, engine: Engine | None = None) -> Prepared:
    """Fingerprint every node and look at what the last builds left behind."""
    own, files = fingerprint_all(resolved, state)
    traces = state.records.traces()
    warnings = list(state.warnings)
    restamped: dict[NodeId, Trace] = {}
    tables: list[frozenset[str] | None] = [None]
    outputs = _check_outputs(resolved, traces, state, engine, files, warnings, restamped, tables)
    failures = {n: f for n, (f, _) in state.records.failures().items()}
    return Prepared(resolved, own, traces, failures, outputs, tuple(warnings), restamped,
                    StoredVersions(state, tables[0]))


class StoredVersions(Mapping[tuple[NodeId, Digest], Trace]):
    """Earlier outputs still in the warehouse, looked up one (node, fingerprint) at a time:
    only nodes about to be rebuilt are asked about. When the warehouse was changed outside
    odibi, only versions whose table its catalog still holds count."""

    def __init__(self, state: State, tables: frozenset[str] | None) -> None:
        self.state = state
        self.tables = tables
        self.cache: dict[tuple[NodeId, Digest], Trace | None] = {}

    def __getitem__(self, key: tuple[NodeId, Digest]) -> Trace:
        if key not in self.cache:
            trace = self.state.records.version(*key) if self.state.available else None
            if trace is not None and self.tables is not None and trace.table not in self.tables:
                trace = None
            self.cache[key] = trace
        found = self.cache[key]
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(k for k, v in self.cache.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for v in self.cache.values() if v is not None)


def _check_outputs(resolved: Resolved, traces: Mapping[NodeId, Trace], state: State,
                   engine: Engine | None, files: FileDigests, warnings: list[str],
                   restamped: dict[NodeId, Trace], tables_out: list[frozenset[str] | None]
                   ) -> dict[NodeId, OutputCheck]:
    project = resolved.project
    built = [n for n in project.nodes if n in traces]
    path = project.root / ".odibi" / WAREHOUSE
    stamp = warehouse_stamp(path)
    missing: set[NodeId] = set()
    unviewed: set[NodeId] = set()
    if stamp is None:
        missing = set(built)
        tables_out[0] = frozenset()
        if built and state.meta("warehouse") is not None:
            warnings.append(f"the warehouse {shown(path, project.root)} is missing: the "
                            f"{len(built)} nodes stored in it are rebuilt")
    elif stamp != state.meta("warehouse"):
        said = len(warnings)
        present = _catalog(path, project.python_path, engine, warnings, state.writable)
        if present is not None:
            tables, views = present
            tables_out[0] = tables
            missing = {n for n in built if traces[n].table not in tables}
            if missing and len(warnings) == said:  # (a corrupt warehouse was reported)
                some = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
                are = "outputs are" if len(missing) > 1 else "output is"
                warnings.append(f"{len(missing)} stored {are} missing from the warehouse "
                                f"({some}): rebuilt")
            pending = state.records.pending_restores()  # repointed when a build next opens it
            unviewed = {n for n in built if n not in missing and n not in pending
                        and views.get(n) != traces[n].table}
    out: dict[NodeId, OutputCheck] = {}
    for n in built:
        gone, changed = [], []
        stamps = []
        for e in traces[n].exports:
            path = project.root / e.path  # relative to the root (absolute if outside it)
            status = export_changed(str(path), e.size, e.mtime_ns, e.digest, files)
            where = shown(path, project.root)
            if status == "missing":
                gone.append(where)
            elif status == "modified":
                changed.append(where)
            elif isinstance(status, tuple):
                e = replace(e, size=status[0], mtime_ns=status[1])
            stamps.append(e)
        if tuple(stamps) != traces[n].exports:
            restamped[n] = replace(traces[n], exports=tuple(stamps))
        if n in missing or n in unviewed or gone or changed:
            out[n] = OutputCheck(n in missing, n in unviewed, tuple(gone), tuple(changed))
    return out


def _catalog(path: Path, python_path: tuple[Path, ...], engine: Engine | None,
             warnings: list[str], writable: bool
             ) -> tuple[frozenset[str], Mapping[NodeId, str]] | None:
    """The warehouse's (store tables, views), or None when another process holds it. A
    file that is not a DuckDB database holds nothing: a build moves it aside."""
    if engine is not None:
        return engine.outputs()
    from odibi.engines.duckdb_engine import DuckDBEngine

    try:
        ro = DuckDBEngine(path, python_path, read_only=True)
    except EngineError as e:
        if "not a valid DuckDB database" not in str(e):
            warnings.append("the warehouse is in use by another process; assuming the outputs "
                            "odibi recorded are still there")
            return None
        if not writable:
            warnings.append(f"the warehouse {path.name} is not a DuckDB database; "
                            "treating its outputs as missing")
            return frozenset(), {}
        import time

        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        for suffix in ("", ".wal"):
            if Path(str(path) + suffix).exists():
                os.replace(Path(str(path) + suffix), Path(str(aside) + suffix))
        warnings.append(f"the warehouse was not a DuckDB database; moved it to {aside.name} "
                        "and rebuilding what it held")
        return frozenset(), {}
    try:
        return ro.outputs()
    finally:
        ro.close()



@contextmanager
def built_outputs(resolved: Resolved, traces: Mapping[NodeId, Trace], names: Sequence[NodeId]
                  ) -> Iterator[tuple[Any, dict[NodeId, str]]]:
    """The warehouse opened read-only, with the table holding each node's current output:
    the version the build state points at (after a build that only restored, a node's
    view catches up only when a build next opens the warehouse), else its view. A node
    that was never built is a UsageError saying to build it; so is a busy warehouse."""
    path = resolved.project.root / ".odibi" / WAREHOUSE
    if not path.exists():
        raise UsageError(f"'{names[0]}' has not been built yet", hint=f"odibi build {names[0]}")
    from odibi.engines.duckdb_engine import DuckDBEngine

    try:
        engine = DuckDBEngine(path, resolved.project.python_path, read_only=True)
    except EngineError:
        raise UsageError("the warehouse is in use by a running build; try again when it "
                         "finishes") from None
    try:
        tables, views = engine.outputs()
        found = {}
        for n in names:
            trace = traces.get(n)
            table = trace.table if trace is not None and trace.table in tables else views.get(n)
            if table is None:
                raise UsageError(f"'{n}' has not been built yet", hint=f"odibi build {n}")
            found[n] = table
        yield engine, found
    finally:
        engine.close()


def sync_views(state: State, engine: Engine) -> None:
    """Point the warehouse's views where the state says (the restores of a build that did
    not open the warehouse). Run as the warehouse opens, before any node reads a view."""
    pending = state.records.pending_restores()
    if not pending:
        return
    engine.repoint({n: t for n, t in pending.items() if t})
    state.records.restores_applied(pending)


def source_display_names(prepared: Prepared) -> dict[str, str]:
    """"raw:orders.csv" -> "data/orders.csv" (paths as the user sees them)."""
    p = prepared.resolved.project
    roots = {c.name: shown(c.root, p.root) for c in p.connections.values()}
    names = {}
    for own in prepared.own.values():
        for key in own.sources:
            conn, _, rel = key.partition(":")
            names[key] = f"{roots.get(conn, conn)}/{rel}"
    return names


def make_plan(prepared: Prepared, selection: frozenset[NodeId],
              forced: frozenset[NodeId] = frozenset(), *, only: bool = False,
              excluded: frozenset[NodeId] = frozenset()) -> Plan:
    """The plan for the targets `selection` (see `planner.plan`); `forced` nodes rebuild
    even if up to date; `only`: just the selection, from its upstreams' last outputs;
    `excluded` nodes never run (what reads them uses their last outputs)."""
    p = prepared.resolved.project
    graph = prepared.resolved.graph
    source_names = source_display_names(prepared)
    inputs = PlanInputs(
        graph=graph, own=prepared.own, traces=prepared.traces,
        failures=prepared.failures, outputs=prepared.outputs,
        always_run=frozenset(n for n, node in p.nodes.items() if node.always_run),
        source_names=source_names, stored=prepared.stored,
        guards=ExportGuards(prepared.resolved))
    nodes = frozenset(n for n in selection if n in p.nodes or n in p.checks)
    return plan(inputs, PlanOptions(nodes, forced, only, excluded))


def make_jobs(prepared: Prepared, p: Plan, engine: Engine) -> dict[NodeId, Job]:
    from odibi.executor import Job

    resolved = prepared.resolved
    project = resolved.project
    jobs: dict[NodeId, Job] = {}
    for step in p.to_run():
        check = project.checks.get(step.node)
        if check is not None:
            job = Job(step=step, table="", check=resolved.checks[step.node],
                      halt=check.on_fail is OnFail.HALT, cutoff=_cutoff_candidate(prepared, step),
                      tables=_views(engine, resolved.checks[step.node].datasets))
            if step.status is Status.RESTORE:  # the verdict on these very inputs is known
                job = replace(job, stored=prepared.stored[(step.node, step.fingerprint)])
            jobs[step.node] = job
            continue
        node = project.nodes[step.node]
        writes = tuple((w, export_path(resolved, w)) for w in node.writes)
        rules = resolved.rules.get(step.node)
        inputs = _views(engine, resolved.deps(step.node))
        job = Job(step=step, table=engine.store_table(step.node, step.fingerprint),
                  writes=writes, retry=node.retry, timeout=node.timeout,
                  cutoff=_cutoff_candidate(prepared, step), rules=rules, tables=inputs)
        if step.status in (Status.REVALIDATE, Status.REEXPORT):  # (rules on what is stored)
            read = node.producer if isinstance(node.producer, ReadSpec) else None
            jobs[step.node] = replace(job, read=read,
                                      tables={**inputs, step.node: engine.view(step.node)})
            continue
        if step.status is Status.RESTORE:
            jobs[step.node] = replace(job, stored=prepared.stored[(step.node, step.fingerprint)])
            continue
        spec = node.producer
        if isinstance(spec, ReadSpec):
            job = replace(job, read=spec, connection=project.connections[spec.connection],
                          node=node)
        elif isinstance(spec, SqlSpec):
            job = replace(job, sql=spec.rendered)
        elif isinstance(spec, PythonSpec):
            job = replace(job, python=python_call(resolved, step.node))
        jobs[step.node] = job
    return jobs


def python_call(resolved: Resolved, name: NodeId) -> PythonCall:
    """How a worker calls a Python node's function: each parameter that is a node gets
    that node's output (a function taking **inputs also gets its `depends_on`). Shared
    by builds and `odibi test`, so that a test calls the function as a build does."""
    from odibi.executor import PythonCall

    fn = resolved.python[name]
    inputs = {p: NodeId(p) for p in fn.params if p in resolved.project.nodes}
    inputs.update({d: d for d in resolved.deps(name) if fn.var_keyword})
    return PythonCall(fn.module, fn.function, fn.file, resolved.project.python_path, inputs)


def _views(engine: Engine, names: Any) -> dict[str, str]:
    return {n: engine.view(n) for n in names}


_UPSTREAM_ONLY = (Reason.UPSTREAM_REBUILT, Reason.UPSTREAM_RERUN)


def _cutoff_candidate(prepared: Prepared, step: PlannedStep) -> Trace | None:
    """The trace a node may keep if its upstream outputs come out unchanged: only for a
    node rebuilt for no reason of its own, whose outputs and exports are in order."""
    old = prepared.traces.get(step.node)
    if (step.status is not Status.REBUILD or old is None or not step.reasons or old.held
            or any(r.reason not in _UPSTREAM_ONLY for r in step.reasons)
            or old.write_key != step.own.write_key or step.node in prepared.outputs
            or set(old.inputs) != set(prepared.resolved.graph.upstream(step.node))):
        return None
    return old


def run(prepared: Prepared, p: Plan, state: State, engine: Engine, reporter: Reporter,
        options: RunOptions, cancel: threading.Event | None = None) -> RunResult:
    from odibi.executor import execute

    jobs = make_jobs(prepared, p, engine)
    return execute(p, jobs, prepared.resolved.graph, engine, state, prepared.traces, reporter,
                   options, state.history.durations(), prepared.resolved.project.root, cancel)


def update_metadata(prepared: Prepared, p: Plan, state: State) -> int:
    """Record what changed without running anything: reformatted SQL (so the next explain
    is quiet), exports touched without their bytes changing."""
    count = 0
    for name, trace in prepared.restamped.items():
        step = p.by_name.get(name)
        if step is not None and step.status is Status.UP_TO_DATE:
            state.records.record(name, trace)
    for step in p.steps:
        trace = prepared.restamped.get(step.node) or prepared.traces.get(step.node)
        if trace is None:
            continue
        if step.status is Status.UP_TO_DATE and step.notes:
            state.records.record(step.node, replace(trace, sql_text=step.own.sql_text,
                                            text_digest=step.own.text_digest))
            count += 1
    return count


def finish(prepared: Prepared, state: State, reporter: Reporter, *, changed: bool,
           engine_closed: bool) -> None:
    """Write odibi.lock from the state, and remember the warehouse as odibi left it."""
    project = prepared.resolved.project
    if engine_closed:
        state.set_meta("warehouse", warehouse_stamp(prepared.warehouse))
    # A no-op need not even render the lock: nothing was recorded, the node set is the
    # same, and the file is as this state last wrote (or checked) it.
    stamp = _lock_stamp(project)
    if not changed and stamp is not None and state.meta("lock") == stamp:
        return
    traces = {**prepared.traces, **state.records.recorded}
    text = render(project.name, traces, [*project.nodes, *project.checks])
    written, problem = write_if_changed(project.root, text,
                                        ours=stamp is not None and state.meta("lock") == stamp)
    if problem:
        reporter.emit(Warning_(f"odibi.lock was unreadable ({problem}); rewrote it from the "
                               "build state"))
    state.set_meta("lock", _lock_stamp(project))


def _lock_stamp(project: Any) -> str | None:
    try:
        st = os.stat(project.root / LOCK_FILE)
    except OSError:
        return None
    names = digest_text("\n".join(sorted([*project.nodes, *project.checks])))
    return json.dumps([st.st_size, st.st_mtime_ns, st.st_ino, names])
