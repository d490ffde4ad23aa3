"""Jobs, and the workers that run them.

A `Job` is everything a worker needs to run one node: plain, frozen values, no shared
state. `run_job` runs it on one engine session (its contracts, its transform, its
validations, its exports, in one transaction; retries and timeout around that) and gives
back a `StepResult` value; a failure is a value, never an exception thrown through the
scheduler, and a bug in odibi is kept apart from the user's failures
(`StepResult.internal`).

The workers (`Pool`) are threads with a session each. They talk to the scheduler, which
owns every decision, only by messages on one queue (`Message`): a Python node that
builds says when its inputs are loaded (`Prepared`: it then waits for a `-j` slot) and
when its function returned (`Computed`: the slot is free while the worker commits).
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from odibi.config.model import Connection, Node, ReadSpec, Retry, WriteSpec
from odibi.engines.base import (Engine, EngineError, EngineInterrupted, Location, Relation,
                                Session, TableInfo)
from odibi.engines.transforms import TimedOut, call, load_function
from odibi.errors import ConfigError
from odibi.expr.check import RulePlan
from odibi.fingerprint import RealFileSystem, list_sources
from odibi.ids import NodeId, Outcome, OutputRef
from odibi.paths import shown
from odibi.planner import PlannedStep, Reason, Status
from odibi.rules import run_rules
from odibi.rulesets import NodeRules
from odibi.state import Export, Trace


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
    output: OutputRef | None  # the version a build stores (None: a check)
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
    relations: Mapping[str, Relation] = field(default_factory=dict)  # what its rules read
    check: RulePlan | None = None  # a check node: its rule
    halt: bool = False  # a check whose failure stops the build
    held: tuple[NodeId, ...] = ()  # its exports are written apart, once these checks pass
    task: NodeId | None = None  # the scheduler's name for it, when not its node's (exports)

    @property
    def key(self) -> NodeId:
        """What the scheduler calls this job, and its results."""
        return self.task if self.task is not None else self.step.node


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




# -- running one job (in a worker thread) ---------------------------------------------------
class NotStarted(Exception):  # noqa: N818 - a signal, not an error
    """The build stopped (a failure with --fail-fast, a halt, Ctrl-C) before the job got
    a slot: nothing of it ran."""


class Hooks:
    """A running job's line to its build: one per job, used by its worker only.

    A Python node that builds loads its function and inputs before it holds one of the
    build's `-j` slots, waits for one (`wait_slot`), and frees it as soon as its function
    returns (`computed`): loading DataFrames and storing, digesting and committing the
    result are odibi's bookkeeping, which would otherwise sit between every two of the
    user's waits. Every other job holds its slot throughout. These defaults grant the slot
    at once (a job run on its own, as `odibi test` does). `modules` (transform file ->
    source digest) reads each module's source once per build."""

    def __init__(self, modules: dict[Path, str] | None = None) -> None:
        self.modules = modules
        self.granted: float | None = None  # when the job first got its slot

    def wait_slot(self) -> None:
        """Return once the job holds a slot; raise NotStarted if it never will."""
        if self.granted is None:
            self.granted = time.time()

    def computed(self) -> None:
        """The function returned: the slot is free again."""


def prepares(job: Job) -> bool:
    """Whether the job loads its inputs before it takes a slot (`Hooks`)."""
    return (job.python is not None and job.step.status is Status.REBUILD
            and job.stored is None and job.check is None)


def run_job(job: Job, session: Session, worker: int, hooks: Hooks | None = None) -> StepResult:
    """Run one node, with its retries and timeout. Never raises, but for NotStarted (only
    a build's hooks raise it). A job that `prepares` starts its clock (and its timeout)
    when it gets its slot."""
    hooks = hooks or Hooks()
    started = time.time()
    attempts = 0
    while True:
        attempts += 1
        timer = _Timer(job.timeout, session, armed=not prepares(job))
        try:
            if job.check is not None and job.stored is None:
                return _run_check(job, session, started, worker)
            outcome, info, exports = _attempt(job, session, timer, hooks)
            return StepResult(job.key, outcome, hooks.granted or started, time.time(),
                              worker, info=info, exports=exports, attempts=attempts)
        except RulesFailed as e:  # the data broke a rule: retrying would not help
            return StepResult(job.key, Outcome.FAILED, hooks.granted or started,
                              time.time(), worker, error=str(e), attempts=attempts)
        except EngineInterrupted:
            if not timer.fired:
                return StepResult(job.key, Outcome.INTERRUPTED, hooks.granted or started,
                                  time.time(), worker, error="interrupted", attempts=attempts)
            error = f"timed out after {job.timeout:g}s"
        except EngineError as e:  # the node's work failed: SQL, data, the user's Python
            error = str(e)
        except NotStarted:
            raise
        except Exception as e:  # noqa: BLE001 - a bug in odibi: kept apart, with its traceback
            return StepResult(job.key, Outcome.FAILED, hooks.granted or started,
                              time.time(), worker, error=f"internal error: {e!r}",
                              attempts=attempts, internal="".join(traceback.format_exception(e)))
        finally:
            timer.cancel()
            session.rollback()
        if attempts >= job.retry.attempts:
            return StepResult(job.key, Outcome.FAILED, hooks.granted or started,
                              time.time(), worker, error=error, attempts=attempts)
        time.sleep(job.retry.backoff * (2 ** (attempts - 1)))


class _Timer:
    """Interrupts the session's running query when a node's timeout passes."""

    def __init__(self, seconds: float | None, session: Session, *, armed: bool = True) -> None:
        self.fired = False
        self.seconds = seconds
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire, args=(session,))
            self._timer.daemon = True
            if armed:
                self._timer.start()

    def arm(self) -> None:
        if self._timer is not None and not self._timer.is_alive():
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
    failed = [r for r in run_rules(session, job.check, job.relations) if not r.ok]
    node = job.step.node
    if not failed:
        return StepResult(node, Outcome.PASSED, started, time.time(), worker)
    message = "; ".join(r.describe() for r in failed)
    if job.halt:
        return StepResult(node, Outcome.FAILED, started, time.time(), worker,
                          error=message, halt=True)
    return StepResult(node, Outcome.WARNED, started, time.time(), worker, note=message)


def _attempt(job: Job, session: Session, timer: _Timer, hooks: Hooks
             ) -> tuple[Outcome, TableInfo | None, tuple[Export, ...]]:
    if job.step.status is Status.REEXPORT:
        if any(r.reason in _RULES_CHANGED for r in job.step.reasons):
            _revalidate(job, session)  # changed rules hold before the files are rewritten
        assert job.output is not None  # the version it exports: its current one
        return Outcome.EXPORTED, None, export_outputs(job, job.output, session)
    if job.step.status is Status.REVALIDATE:
        return Outcome.REVALIDATED, None, _revalidate(job, session)
    if job.stored is not None:
        return Outcome.RESTORED, None, _restore(job, session)
    info, exports = _build(job, session, timer, hooks)
    return Outcome.BUILT, info, exports


_RULES_CHANGED = (Reason.CONTRACTS_CHANGED, Reason.VALIDATE_CHANGED)


def _revalidate(job: Job, session: Session) -> tuple[Export, ...]:
    """Only the rules changed: run them on the stored output (and inputs), no compute."""
    rules = job.rules or NodeRules()
    own = {job.step.node: job.relations[job.step.node]}
    contracts_on = own if job.read is not None else job.relations
    _check_rules(session, rules.contracts, contracts_on, "contract failed")
    _check_rules(session, rules.validate, own, "validation failed")
    return ()


def _build(job: Job, session: Session, timer: _Timer, hooks: Hooks
           ) -> tuple[TableInfo, tuple[Export, ...]]:
    name = job.step.node
    out = job.output
    assert out is not None
    rules = job.rules or NodeRules()
    if job.read is None:  # pre-conditions on the inputs, before the transform runs
        _check_rules(session, rules.contracts, job.relations, "contract failed")
    if job.read is not None:
        assert job.connection is not None and job.node is not None
        session.begin()
        try:
            files = list_sources(job.connection, job.read, job.node)
        except ConfigError as e:
            raise EngineError(e.message) from None
        rows = session.read(out, [Location.file(f) for f in files], job.read)
        # a read node's contracts hold for the data read, before anything uses it
        _check_rules(session, rules.contracts, {name: out}, "contract failed")
    elif job.sql is not None:
        session.begin()
        rows = session.run_sql(out, job.sql)
    else:  # no transaction is held while the user's function runs: its inputs are final
        assert job.python is not None
        c = job.python
        fn = load_function(c.module, c.function, c.file, c.python_path, hooks.modules)
        frames = session.frames(c.inputs)
        hooks.wait_slot()
        timer.arm()
        try:
            frame = call(fn, frames, timer.seconds)
        except TimedOut:
            timer.fired = True
            raise EngineInterrupted("timed out") from None
        hooks.computed()
        session.begin()
        rows = session.create_from_frame(out, frame)
    # post-conditions: a failing output is never committed nor exported
    _check_rules(session, rules.validate, {name: out}, "validation failed")
    info = session.describe(out, rows)
    exports = export_outputs(job, out, session)
    # current last: without transactions, a failure above leaves the node as it was
    # (earlier versions stay stored, for restores)
    session.make_current(name, out)
    session.commit()
    return info, exports


def _restore(job: Job, session: Session) -> tuple[Export, ...]:
    assert job.stored is not None
    session.begin()
    out = job.stored.stored
    exports = ()
    if out is not None:  # a check's stored verdict has no output: recording it is all
        exports = export_outputs(job, out, session)
        session.make_current(job.step.node, out)
    session.commit()
    return exports


def export_outputs(job: Job, output: OutputRef, session: Session) -> tuple[Export, ...]:
    """Write the stored version `output` to each of the job's exports."""
    fs = RealFileSystem()
    out = []
    for write, dest in job.writes:
        session.export(output, write, Location.file(dest))
        st = fs.stat(str(dest))
        if st is None:
            raise EngineError(f"{dest} vanished right after it was written")
        out.append(Export(shown(dest, job.root) if job.root else str(dest), st[0], st[1],
                          fs.hash(str(dest))))
    return tuple(out)


# -- the workers -----------------------------------------------------------------------------
class Ticket:
    """A prepared job's wait for a slot: the scheduler grants it or calls it off."""

    def __init__(self) -> None:
        self.go = False
        self._decided = threading.Event()

    def decide(self, go: bool) -> None:
        self.go = go
        self._decided.set()

    def wait(self) -> bool:
        self._decided.wait()
        return self.go


@dataclass(frozen=True, slots=True)
class Prepared:
    """A worker's word that a Python node has its inputs loaded and waits for a slot."""

    node: NodeId
    ticket: Ticket


@dataclass(frozen=True, slots=True)
class Computed:
    """A worker's word that a Python node's function returned: its slot is free (the
    worker goes on storing and committing the output, off the slot)."""

    node: NodeId


@dataclass(frozen=True, slots=True)
class Unstarted:
    """A worker's word that its job was called off before it got a slot."""

    node: NodeId


Message = StepResult | Prepared | Computed | Unstarted


class _PoolHooks(Hooks):
    """A job's hooks inside a build: slots come from the scheduler, by message."""

    def __init__(self, done: queue.Queue[Message], node: NodeId,
                 modules: dict[Path, str]) -> None:
        super().__init__(modules)
        self.done = done
        self.node = node

    def wait_slot(self) -> None:
        ticket = Ticket()
        self.done.put(Prepared(self.node, ticket))
        if not ticket.wait():
            raise NotStarted(self.node)
        if self.granted is None:
            self.granted = time.time()

    def computed(self) -> None:
        self.done.put(Computed(self.node))


class Pool:
    """Worker threads, each with its own engine session (created here, in the scheduling
    thread, so that the scheduler can interrupt whatever a worker is running). Joined on
    exit, whatever happened."""

    def __init__(self, engine: Engine, size: int) -> None:
        self.todo: queue.Queue[Job | None] = queue.Queue()
        self.done: queue.Queue[Message] = queue.Queue()
        self.sessions = [engine.session() for _ in range(size)]
        self.running: dict[NodeId, int] = {}  # node -> worker running it (written by workers)
        self.modules: dict[Path, str] = {}  # transform sources read in this build
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
            node = job.key
            self.running[node] = index
            result: Message
            try:
                result = run_job(job, session, index, _PoolHooks(self.done, node, self.modules))
            except NotStarted:
                result = Unstarted(node)
            except BaseException as e:  # noqa: BLE001 - never lose a result
                result = StepResult(node, Outcome.FAILED, time.time(), time.time(),
                                    index, error=f"internal error: {e!r}",
                                    internal="".join(traceback.format_exception(e)))
            self.running.pop(node, None)
            self.done.put(result)

    def interrupt(self, spare: frozenset[NodeId] = frozenset()) -> None:
        """Interrupt what the workers run, but for the nodes in `spare`."""
        for node, index in list(self.running.items()):
            if node not in spare:
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
