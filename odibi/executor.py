"""The scheduler: Plan x Engine x jobs -> RunResult.

As in ninja, one thread (the caller's) owns all state: it fills free worker slots from
the ready queue (longest remaining path first, from remembered durations), waits for one
result, records it, releases the node's dependants, and repeats. Workers only run
`run_job(job, session)` on their own engine session and send back a `StepResult` value.
A node's outcome is committed in order: its output (the engine's transaction, exports
included), then its durable state record; a node counts as built only once that record
is written. A failure is a value, not an exception: its dependants are reported
`blocked` and independent branches go on (`--keep-going`), or nothing new starts
(`--fail-fast`).
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from odibi.config.model import Connection, Node, ReadSpec, Retry, WriteSpec
from odibi.engines.base import Engine, EngineError, Session, TableInfo
from odibi.engines.duckdb_engine import load_function
from odibi.events import NodeBlocked, NodeFinished, NodeStarted, Reporter
from odibi.errors import ConfigError
from odibi.fingerprint import RealFileSystem, list_sources
from odibi.graph import Graph
from odibi.ids import Digest, NodeId, Outcome
from odibi.paths import shown
from odibi.planner import Plan, PlannedStep, Status
from odibi.state import Export, State, Trace


@dataclass(frozen=True, slots=True)
class PythonCall:
    module: str
    function: str
    file: Path
    python_path: tuple[Path, ...]
    inputs: Mapping[str, NodeId]  # parameter -> node


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a worker needs to run one node: plain values, no shared state."""

    step: PlannedStep
    table: str  # the store table this fingerprint's output goes to
    read: ReadSpec | None = None
    connection: Connection | None = None  # read: its files are listed when the job runs,
    node: Node | None = None  # after any upstream that writes them
    sql: str | None = None
    python: PythonCall | None = None
    writes: tuple[tuple[WriteSpec, Path], ...] = ()
    retry: Retry = Retry()
    timeout: float | None = None
    root: Path | None = None  # the project root, exports are recorded relative to it
    stored: Trace | None = None  # RESTORE: the stored version to point at
    cutoff: Trace | None = None  # the trace it can keep if its inputs come out unchanged


@dataclass(frozen=True, slots=True)
class StepResult:
    node: NodeId
    outcome: Outcome
    started: float
    finished: float
    worker: int
    info: TableInfo | None = None
    exports: tuple[Export, ...] = ()
    error: str | None = None
    attempts: int = 1

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True, slots=True)
class RunOptions:
    jobs: int = 1
    fail_fast: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    results: Mapping[NodeId, StepResult]
    blocked: Mapping[NodeId, NodeId]  # node -> the failed node that blocked it
    started: float
    finished: float
    not_started: tuple[NodeId, ...] = ()  # left out by --fail-fast

    @property
    def failed(self) -> list[NodeId]:
        return [n for n, r in self.results.items() if r.outcome is Outcome.FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and not self.not_started


# -- running one job (in a worker thread) ---------------------------------------------------
def run_job(job: Job, session: Session, worker: int) -> StepResult:
    started = time.time()
    attempts = 0
    while True:
        attempts += 1
        try:
            if job.step.status is Status.REEXPORT:
                exports = _export(job, session)
                return StepResult(job.step.node, Outcome.EXPORTED, started, time.time(), worker,
                                  exports=exports, attempts=attempts)
            if job.stored is not None:
                exports = _restore(job, session)
                return StepResult(job.step.node, Outcome.RESTORED, started, time.time(), worker,
                                  exports=exports, attempts=attempts)
            info, exports = _build(job, session)
            return StepResult(job.step.node, Outcome.BUILT, started, time.time(), worker,
                              info=info, exports=exports, attempts=attempts)
        except EngineError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - the user's Python code failed: report it
            error = _python_error(e)
        finally:
            session.rollback()
        if attempts >= job.retry.attempts:
            return StepResult(job.step.node, Outcome.FAILED, started, time.time(), worker,
                              error=error, attempts=attempts)
        time.sleep(job.retry.backoff * (2 ** (attempts - 1)))


def _python_error(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    user = [f for f in frames if "/odibi/" not in f.filename.replace("\\", "/")]
    where = f" ({Path(user[-1].filename).name}:{user[-1].lineno})" if user else ""
    return f"{type(e).__name__}: {e}{where}"


def _build(job: Job, session: Session) -> tuple[TableInfo, tuple[Export, ...]]:
    name = job.step.node
    session.begin()
    if job.read is not None:
        assert job.connection is not None and job.node is not None
        try:
            files = list_sources(job.connection, job.read, job.node)
        except ConfigError as e:
            raise EngineError(e.message) from None
        rows = session.read(job.table, files, job.read)
    elif job.sql is not None:
        rows = session.run_sql(job.table, job.sql)
    else:
        assert job.python is not None
        call = job.python
        fn = load_function(call.module, call.function, call.file, call.python_path)
        rows = session.run_python(job.table, fn, call.inputs)
    info = session.describe(job.table, rows)
    session.publish(name, job.table)  # earlier versions stay in the store, for restores
    exports = _export(job, session)
    session.commit()
    return info, exports


def _restore(job: Job, session: Session) -> tuple[Export, ...]:
    assert job.stored is not None
    session.begin()
    session.publish(job.step.node, job.stored.table)
    exports = _export(job, session)
    session.commit()
    return exports


def _export(job: Job, session: Session) -> tuple[Export, ...]:
    fs = RealFileSystem()
    out = []
    for write, dest in job.writes:
        session.export(job.step.node, write, dest)
        st = fs.stat(str(dest))
        assert st is not None
        out.append(Export(shown(dest, job.root) if job.root else str(dest), st[0], st[1], fs.hash(str(dest))))
    return tuple(out)



# -- the scheduling loop (in the caller's thread) --------------------------------------------
@dataclass
class _Loop:
    plan: Plan
    jobs: Mapping[NodeId, Job]
    graph: Graph
    state: State
    reporter: Reporter
    options: RunOptions
    outputs: dict[NodeId, Digest | None]  # current output digest per node (for traces)
    priority: Mapping[NodeId, float]
    state_traces: Mapping[NodeId, Trace]
    results: dict[NodeId, StepResult] = field(default_factory=dict)
    blocked: dict[NodeId, NodeId] = field(default_factory=dict)
    stop: bool = False

    def run(self, engine: Engine) -> RunResult:
        started = time.time()
        runnable = {n for n in self.jobs}
        waiting = {n: {u for u in self.graph.upstream(n) if u in runnable
                       and _must_wait(self.jobs[n], self.jobs[u])} for n in runnable}
        ready: list[tuple[float, NodeId]] = []
        self._restore_batch(engine, waiting, ready)
        for n, deps in sorted(waiting.items(), key=lambda item: self.graph.index[item[0]]):
            if not deps and n not in self.results and not self._cut_off(n, waiting, ready):
                heapq.heappush(ready, (-self.priority.get(n, 0.0), n))
        todo: queue.Queue[tuple[Job, int] | None] = queue.Queue()
        done: queue.Queue[StepResult] = queue.Queue()
        workers = [threading.Thread(target=_worker, args=(engine, todo, done, i), daemon=True)
                   for i in range(max(1, min(self.options.jobs, len(runnable) or 1)))]
        for w in workers:
            w.start()
        free = list(range(len(workers)))
        running: set[NodeId] = set()
        try:
            while (ready and not self.stop) or running:
                while ready and free and not self.stop:
                    _, n = heapq.heappop(ready)
                    job = self.jobs[n]
                    slot = free.pop()
                    running.add(n)
                    self.reporter.emit(NodeStarted(
                        n, job.step.status, job.step.headline,
                        tuple(r.summary() for r in job.step.reasons), slot, time.time()))
                    todo.put((job, slot))
                if not running:
                    break
                result = done.get()
                running.discard(result.node)
                free.append(result.worker)
                self._finish(result, waiting, ready)
        finally:
            for _ in workers:
                todo.put(None)
        not_started = tuple(n for n in runnable if n not in self.results
                            and n not in self.blocked)
        return RunResult(self.results, self.blocked, started, time.time(), not_started)

    def _finish(self, result: StepResult, waiting: dict[NodeId, set[NodeId]],
                ready: list[tuple[float, NodeId]]) -> None:
        name = result.node
        job = self.jobs[name]
        self.results[name] = result
        self.reporter.emit(NodeFinished(name, result.outcome, result.seconds, result.worker,
                                        result.info.rows if result.info else None, result.error,
                                        result.attempts))
        if result.outcome is Outcome.FAILED:
            self.state.record_failure(name, job.step.fingerprint, result.error or "failed")
            self._block(name, name, waiting)
            if self.options.fail_fast:
                self.stop = True
            return
        self.state.record(name, self._trace(job, result))
        self._release(name, waiting, ready)

    def _restore_batch(self, engine: Engine, waiting: dict[NodeId, set[NodeId]],
                       ready: list[tuple[float, NodeId]]) -> None:
        """Restores that wait on no computation are done together, up front: one warehouse
        transaction repoints every view, then one state transaction records them (a revert
        of a change with hundreds of dependants is a few hundred view swaps, not hundreds
        of scheduled jobs). If anything in it fails, they run as ordinary jobs instead."""
        batch: list[NodeId] = []
        chosen: set[NodeId] = set()
        for n in self.graph.names:
            job = self.jobs.get(n)
            if job is not None and job.stored is not None and waiting[n] <= chosen:
                batch.append(n)
                chosen.add(n)
        if len(batch) < 2:
            return
        session = engine.session()
        started = time.time()
        for n in batch:
            step = self.jobs[n].step
            self.reporter.emit(NodeStarted(n, step.status, step.headline,
                                           tuple(r.summary() for r in step.reasons), 0, started))
        try:
            session.begin()
            for n in batch:
                session.publish(n, self.jobs[n].stored.table)  # type: ignore[union-attr]
            exports = {n: _export(self.jobs[n], session) for n in batch}
            session.commit()
        except (EngineError, OSError):
            session.rollback()
            return
        finally:
            session.close()
        finished = time.time()
        traces = []
        for n in batch:
            result = StepResult(n, Outcome.RESTORED, started, finished, 0, exports=exports[n])
            self.results[n] = result
            traces.append((n, self._trace(self.jobs[n], result)))
        self.state.record_many(traces)
        for n in batch:
            self.reporter.emit(NodeFinished(n, Outcome.RESTORED, finished - started, 0))
            waiting.pop(n, None)
        for n in batch:
            self._release(n, waiting, ready)

    def _release(self, name: NodeId, waiting: dict[NodeId, set[NodeId]],
                 ready: list[tuple[float, NodeId]]) -> None:
        for child in self.graph.downstream(name):
            deps = waiting.get(child)
            if deps is not None and name in deps:
                deps.discard(name)
                if not deps and child not in self.blocked and \
                        not self._cut_off(child, waiting, ready):
                    heapq.heappush(ready, (-self.priority.get(child, 0.0), child))

    def _cut_off(self, name: NodeId, waiting: dict[NodeId, set[NodeId]],
                 ready: list[tuple[float, NodeId]]) -> bool:
        """Early cutoff: a node planned only because its upstream changed is not run when
        every upstream output came out as it was when the node was last built. Its record
        moves to the new fingerprint; its output (and its digest) stand."""
        job = self.jobs[name]
        old = job.cutoff
        if old is None or any(self.outputs.get(u) != old.inputs.get(u)
                              for u in self.graph.upstream(name)):
            return False
        step = job.step
        trace = replace(old, fingerprint=step.fingerprint,
                        parts=step.own.as_trace_parts(step.upstream),
                        validate_key=step.own.validate_key, contracts_key=step.own.contracts_key,
                        sql_text=step.own.sql_text, text_digest=step.own.text_digest)
        self.state.record(name, trace)
        now = time.time()
        self.results[name] = StepResult(name, Outcome.CUT_OFF, now, now, -1)
        self.reporter.emit(NodeFinished(name, Outcome.CUT_OFF, 0.0, -1))
        self._release(name, waiting, ready)
        return True

    def _block(self, failed: NodeId, cause: NodeId, waiting: dict[NodeId, set[NodeId]]) -> None:
        stack = list(self.graph.downstream(failed))
        while stack:
            n = stack.pop()
            if n in waiting and n not in self.blocked and n not in self.results:
                self.blocked[n] = cause
                self.reporter.emit(NodeBlocked(n, cause))
                stack.extend(self.graph.downstream(n))

    def _trace(self, job: Job, result: StepResult) -> Trace:
        step = job.step
        base = job.stored if result.outcome is Outcome.RESTORED else (
            self.state_traces.get(step.node) if result.outcome is Outcome.EXPORTED else None)
        if base is not None:
            self.outputs[step.node] = base.output
            return replace(base, exports=result.exports, write_key=step.own.write_key,
                           validate_key=step.own.validate_key,
                           contracts_key=step.own.contracts_key, sql_text=step.own.sql_text,
                           text_digest=step.own.text_digest)
        info = result.info
        assert info is not None
        self.outputs[step.node] = info.digest
        return Trace(
            fingerprint=step.fingerprint, kind=step.kind.value,
            parts=step.own.as_trace_parts(step.upstream), table=job.table, output=info.digest,
            rows=info.rows, schema=info.schema,
            inputs={u: d for u in step.upstream if (d := self.outputs.get(u)) is not None},
            exports=result.exports, write_key=step.own.write_key,
            validate_key=step.own.validate_key, contracts_key=step.own.contracts_key,
            sql_text=step.own.sql_text, text_digest=step.own.text_digest)


def _must_wait(job: Job, upstream: Job) -> bool:
    """A node waits for upstream nodes whose output changes; a read node also for one
    that re-exports, since it may read that very file."""
    status = upstream.step.status
    return status in (Status.REBUILD, Status.RESTORE) or (
        status is Status.REEXPORT and job.read is not None)


def _worker(engine: Engine, todo: queue.Queue[tuple[Job, int] | None],
            done: queue.Queue[StepResult], index: int) -> None:
    session = engine.session()
    try:
        while True:
            item = todo.get()
            if item is None:
                return
            job, slot = item
            try:
                result = run_job(job, session, slot)
            except BaseException as e:  # noqa: BLE001 - never lose a result: report it
                result = StepResult(job.step.node, Outcome.FAILED, time.time(), time.time(),
                                    slot, error=f"internal error: {e!r}")
            done.put(result)
    finally:
        session.close()


def execute(plan: Plan, jobs: Mapping[NodeId, Job], graph: Graph, engine: Engine, state: State,
            traces: Mapping[NodeId, Trace], reporter: Reporter, options: RunOptions,
            durations: Mapping[NodeId, float] | None = None,
            root: Path | None = None) -> RunResult:
    """Run `jobs` (the plan's steps that run) with `options.jobs` workers."""
    outputs: dict[NodeId, Digest | None] = {n: t.output for n, t in traces.items()}
    if root is not None:
        jobs = {n: replace(j, root=root) for n, j in jobs.items()}
    loop = _Loop(plan, jobs, graph, state, reporter, options, outputs,
                 critical_path(graph, jobs, durations or {}), traces)
    return loop.run(engine)


def critical_path(graph: Graph, jobs: Mapping[NodeId, Job],
                  durations: Mapping[NodeId, float]) -> dict[NodeId, float]:
    """Longest remaining path (in remembered seconds; 1 for unknown) from each job to the
    end of the build: the scheduler starts the longest first."""
    longest: dict[NodeId, float] = {}
    for name in reversed(graph.names):
        if name not in jobs:
            continue
        tail = max((longest[c] for c in graph.downstream(name) if c in longest), default=0.0)
        longest[name] = durations.get(name, 1.0) + tail
    return longest

