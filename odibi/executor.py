"""The scheduler: Plan x Engine x jobs -> RunResult.

As in ninja, one thread (the caller's) owns all state: it fills free worker slots from
the ready queue (longest remaining path first, from remembered durations), waits for one
result, records it, releases the node's dependants, and repeats. Workers only run
`run_job(job, session)` on their own engine session and send back a `StepResult` value.

A node's outcome is committed in order: its output (the engine's transaction, exports
included), then its state record; a node counts as built only once that record is
written. A failure is a value, not an exception: its dependants are `blocked` and
independent branches go on (`--keep-going`), or nothing new starts and running queries
are interrupted (`--fail-fast`, a halting check, or `cancel` being set, as Ctrl-C does).
A bug in odibi itself is kept apart from the user's failures (`StepResult.internal`).
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
from odibi.engines.base import Engine, EngineError, EngineInterrupted, Session, TableInfo
from odibi.engines.transforms import TimedOut, call, load_function
from odibi.expr.check import RulePlan
from odibi.rules import run_rules
from odibi.rulesets import NodeRules
from odibi.errors import ConfigError
from odibi.events import NodeBlocked, NodeFinished, NodeStarted, Reporter
from odibi.fingerprint import RealFileSystem, list_sources
from odibi.graph import Graph
from odibi.ids import Digest, NodeId, Outcome
from odibi.paths import shown
from odibi.planner import Plan, PlannedStep, Reason, Status
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
    rules: NodeRules | None = None  # its contracts and validations
    tables: Mapping[str, str] = field(default_factory=dict)  # dataset -> how SQL reads it
    check: RulePlan | None = None  # a check node: its rule
    halt: bool = False  # a check whose failure stops the build


@dataclass(frozen=True, slots=True)
class StepResult:
    node: NodeId
    outcome: Outcome
    started: float
    finished: float
    worker: int  # the worker that ran it (-1: decided by the scheduler, nothing ran)
    info: TableInfo | None = None
    exports: tuple[Export, ...] = ()
    error: str | None = None
    attempts: int = 1
    internal: str | None = None  # a traceback: odibi, not the node, failed
    halt: bool = False  # stop the whole build (a halting check failed)
    note: str | None = None  # what a check that only warns found

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
    not_started: tuple[NodeId, ...] = ()  # left out: --fail-fast, a halt, an interrupt
    cancelled: bool = False  # stopped by `cancel` (Ctrl-C)
    halted: NodeId | None = None  # a halting check failed and stopped the build

    @property
    def failed(self) -> list[NodeId]:
        return [n for n, r in self.results.items() if r.outcome is Outcome.FAILED]

    @property
    def internal(self) -> list[StepResult]:
        return [r for r in self.results.values() if r.internal]

    @property
    def ok(self) -> bool:
        return (not self.failed and not self.blocked and not self.not_started
                and not self.cancelled and not any(r.outcome is Outcome.INTERRUPTED
                                                   for r in self.results.values()))


# -- running one job (in a worker thread) ---------------------------------------------------
def run_job(job: Job, session: Session, worker: int) -> StepResult:
    """Run one node, with its retries and timeout. Never raises."""
    started = time.time()
    attempts = 0
    while True:
        attempts += 1
        timer = _Timer(job.timeout, session)
        try:
            if job.check is not None and job.stored is None:
                return _run_check(job, session, started, worker)
            outcome, info, exports = _attempt(job, session, timer)
            return StepResult(job.step.node, outcome, started, time.time(), worker, info=info,
                              exports=exports, attempts=attempts)
        except RulesFailed as e:  # the data broke a rule: retrying would not help
            return StepResult(job.step.node, Outcome.FAILED, started, time.time(), worker,
                              error=str(e), attempts=attempts)
        except EngineInterrupted:
            if not timer.fired:
                return StepResult(job.step.node, Outcome.INTERRUPTED, started, time.time(),
                                  worker, error="interrupted", attempts=attempts)
            error = f"timed out after {job.timeout:g}s"
        except EngineError as e:  # the node's work failed: SQL, data, the user's Python
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a bug in odibi: kept apart, with its traceback
            return StepResult(job.step.node, Outcome.FAILED, started, time.time(), worker,
                              error=f"internal error: {e!r}", attempts=attempts,
                              internal="".join(traceback.format_exception(e)))
        finally:
            timer.cancel()
            session.rollback()
        if attempts >= job.retry.attempts:
            return StepResult(job.step.node, Outcome.FAILED, started, time.time(), worker,
                              error=error, attempts=attempts)
        time.sleep(job.retry.backoff * (2 ** (attempts - 1)))


class _Timer:
    """Interrupts the session's running query when a node's timeout passes."""

    def __init__(self, seconds: float | None, session: Session) -> None:
        self.fired = False
        self.seconds = seconds
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire, args=(session,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, session: Session) -> None:
        self.fired = True
        session.interrupt()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class RulesFailed(EngineError):
    """A contract or validation did not hold."""


def _check_rules(session: Session, plan: RulePlan | None, tables: Mapping[str, str],
                 what: str) -> None:
    if plan is None:
        return
    failed = [r for r in run_rules(session, plan, tables) if not r.ok]
    if failed:
        raise RulesFailed(f"{what}: " + "; ".join(r.describe() for r in failed))


def _run_check(job: Job, session: Session, started: float, worker: int) -> StepResult:
    assert job.check is not None
    failed = [r for r in run_rules(session, job.check, job.tables) if not r.ok]
    node = job.step.node
    if not failed:
        return StepResult(node, Outcome.PASSED, started, time.time(), worker)
    message = "; ".join(r.describe() for r in failed)
    if job.halt:
        return StepResult(node, Outcome.FAILED, started, time.time(), worker,
                          error=message, halt=True)
    return StepResult(node, Outcome.WARNED, started, time.time(), worker, note=message)


def _attempt(job: Job, session: Session, timer: _Timer
             ) -> tuple[Outcome, TableInfo | None, tuple[Export, ...]]:
    if job.step.status is Status.REEXPORT:
        return Outcome.EXPORTED, None, _export(job, session)
    if job.step.status is Status.REVALIDATE:
        return Outcome.REVALIDATED, None, _revalidate(job, session)
    if job.stored is not None:
        return Outcome.RESTORED, None, _restore(job, session)
    info, exports = _build(job, session, timer)
    return Outcome.BUILT, info, exports


def _revalidate(job: Job, session: Session) -> tuple[Export, ...]:
    """Only the rules changed: run them on the stored output (and inputs), no compute."""
    rules = job.rules or NodeRules()
    own = {job.step.node: job.tables[job.step.node]}
    contracts_on = own if job.read is not None else job.tables
    _check_rules(session, rules.contracts, contracts_on, "contract failed")
    _check_rules(session, rules.validate, own, "validation failed")
    return ()


def _build(job: Job, session: Session, timer: _Timer) -> tuple[TableInfo, tuple[Export, ...]]:
    name = job.step.node
    rules = job.rules or NodeRules()
    if job.read is None:  # pre-conditions on the inputs, before the transform runs
        _check_rules(session, rules.contracts, job.tables, "contract failed")
    session.begin()
    if job.read is not None:
        assert job.connection is not None and job.node is not None
        try:
            files = list_sources(job.connection, job.read, job.node)
        except ConfigError as e:
            raise EngineError(e.message) from None
        rows = session.read(job.table, files, job.read)
        # a read node's contracts hold for the data read, before anything uses it
        _check_rules(session, rules.contracts, {name: job.table}, "contract failed")
    elif job.sql is not None:
        rows = session.run_sql(job.table, job.sql)
    else:
        assert job.python is not None
        c = job.python
        fn = load_function(c.module, c.function, c.file, c.python_path)
        frames = session.frames(c.inputs)
        try:
            frame = call(fn, frames, timer.seconds)
        except TimedOut:
            timer.fired = True
            raise EngineInterrupted("timed out") from None
        rows = session.create_from_frame(job.table, frame)
    # post-conditions: a failing output is never committed nor exported
    _check_rules(session, rules.validate, {name: job.table}, "validation failed")
    info = session.describe(job.table, rows)
    session.publish(name, job.table)  # earlier versions stay in the store, for restores
    exports = _export(job, session)
    session.commit()
    return info, exports


def _restore(job: Job, session: Session) -> tuple[Export, ...]:
    assert job.stored is not None
    session.begin()
    if job.stored.table:  # a check's stored verdict has no table: recording it is all
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
        if st is None:
            raise EngineError(f"{dest} vanished right after it was written")
        out.append(Export(shown(dest, job.root) if job.root else str(dest), st[0], st[1],
                          fs.hash(str(dest))))
    return tuple(out)


# -- the workers -----------------------------------------------------------------------------
class _Pool:
    """N worker threads, each with its own engine session (created here, in the scheduling
    thread, so that the scheduler can interrupt whatever a worker is running). Joined on
    exit, whatever happened."""

    def __init__(self, engine: Engine, size: int) -> None:
        self.todo: queue.Queue[Job | None] = queue.Queue()
        self.done: queue.Queue[StepResult] = queue.Queue()
        self.sessions = [engine.session() for _ in range(size)]
        self.running: dict[NodeId, int] = {}  # node -> worker running it (written by workers)
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True,
                                         name=f"odibi-worker-{i}") for i in range(size)]
        for t in self.threads:
            t.start()

    def _work(self, index: int) -> None:
        session = self.sessions[index]
        while True:
            job = self.todo.get()
            if job is None:
                return
            self.running[job.step.node] = index
            try:
                result = run_job(job, session, index)
            except BaseException as e:  # noqa: BLE001 - never lose a result
                result = StepResult(job.step.node, Outcome.FAILED, time.time(), time.time(),
                                    index, error=f"internal error: {e!r}",
                                    internal="".join(traceback.format_exception(e)))
            self.running.pop(job.step.node, None)
            self.done.put(result)

    def interrupt(self) -> None:
        for index in list(self.running.values()):
            self.sessions[index].interrupt()

    def close(self, grace: float = 30.0) -> None:
        for _ in self.threads:
            self.todo.put(None)
        deadline = time.time() + grace
        for t in self.threads:
            t.join(max(0.0, deadline - time.time()))
        for s in self.sessions:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - a session still busy in an abandoned call
                pass


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
    cancel: threading.Event
    halted: NodeId | None = None  # the check that stopped the build
    results: dict[NodeId, StepResult] = field(default_factory=dict)
    blocked: dict[NodeId, NodeId] = field(default_factory=dict)
    stop: bool = False

    def run(self, engine: Engine) -> RunResult:
        started = time.time()
        waiting = {n: {u for u in self.graph.upstream(n) if u in self.jobs
                       and _must_wait(self.jobs[n], self.jobs[u])} for n in self.jobs}
        ready: list[tuple[float, NodeId]] = []
        if self._restore_without_warehouse(engine):
            return RunResult(self.results, self.blocked, started, time.time(), (),
                             self.cancel.is_set(), self.halted)
        engine.open()  # before any node runs (it applies views an earlier build deferred)
        self._restore_batch(engine, waiting, ready)
        for n, deps in sorted(waiting.items(), key=lambda item: self.graph.index[item[0]]):
            if not deps and n not in self.results and not self._cut_off(n, waiting, ready):
                heapq.heappush(ready, (-self.priority.get(n, 0.0), n))
        if any(j.python is not None for j in self.jobs.values()):
            engine.prepare_python()
        size = max(1, min(self.options.jobs, len(self.jobs) - len(self.results) or 1))
        if len(self.results) == len(self.jobs):
            size = 0  # everything was restored together: no worker needed
        pool = _Pool(engine, size)
        running: set[NodeId] = set()
        try:
            while (ready and not self.stop) or running:
                while ready and len(running) < size and not self.stop:
                    _, n = heapq.heappop(ready)
                    job = self.jobs[n]
                    running.add(n)
                    self.reporter.emit(NodeStarted(
                        n, job.step.status, job.step.headline,
                        tuple(r.summary() for r in job.step.reasons), len(running) - 1,
                        time.time()))
                    pool.todo.put(job)
                if not running:
                    break
                result = self._next(pool)
                if result is None:
                    continue
                running.discard(result.node)
                self._finish(result, waiting, ready, pool)
        finally:
            pool.close()
        not_started = tuple(n for n in self.jobs if n not in self.results
                            and n not in self.blocked)
        return RunResult(self.results, self.blocked, started, time.time(), not_started,
                         self.cancel.is_set(), self.halted)

    def _next(self, pool: _Pool) -> StepResult | None:
        """The next result; on the way, notice a cancel (Ctrl-C): stop starting nodes and
        interrupt the running ones (their results still come back, and finished ones
        are recorded)."""
        try:
            return pool.done.get(timeout=0.1)
        except queue.Empty:
            if self.cancel.is_set() and not self.stop:
                self.stop = True
                pool.interrupt()
            return None

    def _finish(self, result: StepResult, waiting: dict[NodeId, set[NodeId]],
                ready: list[tuple[float, NodeId]], pool: _Pool) -> None:
        name = result.node
        job = self.jobs[name]
        self.results[name] = result
        # the record first, then the word: a node reported done is durably done
        if result.outcome is Outcome.FAILED and result.internal is None:
            if job.step.status is not Status.REVALIDATE:
                # a rule that fails on the stored output is no reason to recompute it: the
                # next build revalidates again (its trace still has the old rule keys)
                self.state.record_failure(name, job.step.fingerprint, result.error or "failed")
            if result.halt:
                self.halted = name
        elif result.outcome not in (Outcome.FAILED, Outcome.INTERRUPTED):
            self.state.record(name, self._trace(job, result))
        self.reporter.emit(NodeFinished(name, result.outcome, result.seconds, result.worker,
                                        result.info.rows if result.info else None,
                                        result.error or result.note, result.attempts))
        if result.outcome is Outcome.INTERRUPTED:
            return  # not a failure of the node: it runs again next time
        if result.outcome is Outcome.FAILED:
            self._block(name, name, waiting)
            if self.options.fail_fast or result.halt:
                self.stop = True
                pool.interrupt()
            return
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
        self._restores_started(batch, started)
        try:
            session.begin()
            for n in batch:
                table = self.jobs[n].stored.table  # type: ignore[union-attr]
                if table:  # a check's stored verdict has no table
                    session.publish(n, table)
            exports = {n: _export(self.jobs[n], session) for n in batch}
            session.commit()
        except (EngineError, OSError):
            session.rollback()
            return
        finally:
            session.close()
        self._restores_finished(batch, started, exports, waiting, ready, repoint=False)

    def _restore_without_warehouse(self, engine: Engine) -> bool:
        """A build that only restores versions the warehouse holds, and exports nothing,
        need not open the warehouse: the restores are recorded in the state, with their
        views marked to be repointed when the warehouse is next opened
        (`State.pending_views`). `odibi show` reads the version the state points at."""
        if engine.is_open or not self.jobs or any(
                j.stored is None or j.writes
                or any(r.reason is Reason.OUTPUT_MISSING for r in j.step.reasons)
                for j in self.jobs.values()):
            return False  # (a view dropped by hand is put back now)
        batch = [n for n in self.graph.names if n in self.jobs]
        started = time.time()
        self._restores_started(batch, started)
        self._restores_finished(batch, started, {}, {}, [], repoint=True)
        return True

    def _restores_started(self, batch: list[NodeId], started: float) -> None:
        for n in batch:
            step = self.jobs[n].step
            self.reporter.emit(NodeStarted(n, step.status, step.headline,
                                           tuple(r.summary() for r in step.reasons), 0, started))

    def _restores_finished(self, batch: list[NodeId], started: float,
                           exports: Mapping[NodeId, tuple[Export, ...]],
                           waiting: dict[NodeId, set[NodeId]],
                           ready: list[tuple[float, NodeId]], *, repoint: bool) -> None:
        finished = time.time()
        traces = []
        for n in batch:
            result = StepResult(n, Outcome.RESTORED, started, finished, 0,
                                exports=exports.get(n, ()))
            self.results[n] = result
            traces.append((n, self._trace(self.jobs[n], result)))
        self.state.record_many(traces, repoint=repoint)
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
        if result.outcome in (Outcome.PASSED, Outcome.WARNED):
            return Trace(fingerprint=step.fingerprint, kind=step.kind.value,
                         parts=step.own.as_trace_parts(step.upstream), table="", output=None,
                         rows=None, schema=(),
                         inputs={u: d for u in step.upstream
                                 if (d := self.outputs.get(u)) is not None},
                         write_key=step.own.write_key, validate_key=step.own.validate_key,
                         contracts_key=step.own.contracts_key, note=result.note)
        base = job.stored if result.outcome is Outcome.RESTORED else (
            self.state_traces.get(step.node)
            if result.outcome in (Outcome.EXPORTED, Outcome.REVALIDATED) else None)
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


def execute(plan: Plan, jobs: Mapping[NodeId, Job], graph: Graph, engine: Engine, state: State,
            traces: Mapping[NodeId, Trace], reporter: Reporter, options: RunOptions,
            durations: Mapping[NodeId, float] | None = None, root: Path | None = None,
            cancel: threading.Event | None = None) -> RunResult:
    """Run `jobs` (the plan's steps that run) with `options.jobs` workers. Setting
    `cancel` (Ctrl-C) stops scheduling and interrupts the running nodes."""
    outputs: dict[NodeId, Digest | None] = {n: t.output for n, t in traces.items()}
    if root is not None:
        jobs = {n: replace(j, root=root) for n, j in jobs.items()}
    loop = _Loop(plan, jobs, graph, state, reporter, options, outputs,
                 critical_path(graph, jobs, durations or {}), traces,
                 cancel or threading.Event())
    return loop.run(engine)


def critical_path(graph: Graph, jobs: Mapping[NodeId, Job],
                  durations: Mapping[NodeId, float]) -> dict[NodeId, float]:
    """Longest remaining path (in remembered seconds; the median of known ones, or 1, for
    a node never timed) from each job to the end of the build: the scheduler starts the
    longest first."""
    known = sorted(durations.values())
    default = known[len(known) // 2] if known else 1.0
    longest: dict[NodeId, float] = {}
    for name in reversed(graph.names):
        if name not in jobs:
            continue
        tail = max((longest[c] for c in graph.downstream(name) if c in longest), default=0.0)
        longest[name] = durations.get(name, default) + tail
    return longest
