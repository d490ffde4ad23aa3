"""Running one job (`odibi.jobs`) on one engine session, in a worker thread.

`run_job` runs a job with its retries and its timeout and gives back a `StepResult`: a
failure is a value, never an exception thrown through the scheduler, and a bug in odibi
is kept apart from the user's failures (`StepResult.internal`). Each kind, in order:

    Build           [contracts on its inputs] -> begin -> read | SQL | Python ->
                    [a read node's contracts] -> validations -> describe -> exports ->
                    make current -> commit
    Restore         begin -> exports (from the stored version) -> make current -> commit
    RestoreVerdict  begin -> commit (recording the verdict again is all)
    Revalidate      contracts and validations on the current output; nothing written
    Reexport        [changed rules first] -> exports (from the current version)
    CheckRule       the rule: passed, warned (on_fail: warn) or failed (halting)

A failing rule fails the job at once (retrying would not help); an engine error is
retried as the node's `retry:` says; after any failure the session is rolled back.

Timeouts. A job's clock starts when it starts, a Python node's when it gets its slot
(`Hooks`). When it passes, an engine with `Capabilities.interrupt` interrupts the running
query in place. An engine without lets the running call finish; the job then fails as
timed out at its next step, before anything is made current, so a job that overran never
commits. A Python call that overruns is abandoned either way (Python cannot stop a
thread): the node fails and its worker goes on.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import assert_never

from odibi.config.model import Retry
from odibi.engines.base import (EngineError, EngineInterrupted, Location, Relation, Session,
                                TableInfo)
from odibi.engines.transforms import TimedOut, call, load_function
from odibi.errors import ConfigError
from odibi.expr.check import RulePlan
from odibi.fingerprint import RealFileSystem, list_sources
from odibi.ids import NodeId, NodeKind, Outcome, OutputRef
from odibi.jobs import (Build, CheckRule, Job, PythonCall, Read, Reexport, Restore,
                        RestoreVerdict, Revalidate, Sql, StepResult, Writes, prepares)
from odibi.paths import shown
from odibi.rules import run_rules
from odibi.trace import Export

__all__ = ["Hooks", "NotStarted", "RulesFailed", "export_outputs", "restore_together",
           "run_job"]


class NotStarted(Exception):  # noqa: N818 - a signal, not an error
    """The build stopped (a failure with --fail-fast, a halt, Ctrl-C) before the job got
    a slot: nothing of it ran."""


class RulesFailed(EngineError):
    """A contract or validation did not hold."""


class Hooks:
    """A running job's line to its build: one per job, used by its worker only.

    A Python node that builds loads its function and inputs before it holds one of the
    build's `-j` slots, waits for one (`wait_slot`), and frees it as soon as its function
    returns (`computed`): loading DataFrames and storing, digesting and committing the
    result are odibi's bookkeeping, which would otherwise sit between every two of the
    user's waits. Every other job holds its slot throughout. These defaults grant the slot
    at once (a job run on its own, as `odibi test` does).

    What the build tells the job: `root`, the project root its exports are recorded
    relative to (None: as absolute paths); `modules` (transform file -> source digest),
    so that each module's source is read once per build; `interrupt`, whether its engine
    interrupts a running query in place (`Capabilities.interrupt`)."""

    def __init__(self, modules: dict[Path, str] | None = None, root: Path | None = None,
                 interrupt: bool = True) -> None:
        self.modules = modules
        self.root = root
        self.interrupt = interrupt
        self.granted: float | None = None  # when the job first got its slot

    def wait_slot(self) -> None:
        """Return once the job holds a slot; raise NotStarted if it never will."""
        if self.granted is None:
            self.granted = time.time()

    def computed(self) -> None:
        """The function returned: the slot is free again."""


ONCE = Retry()  # a check runs once: its rule reads outputs that are already final


def run_job(job: Job, session: Session, worker: int, hooks: Hooks | None = None) -> StepResult:
    """Run one job, with its retries and timeout. Never raises, but for NotStarted (only
    a build's hooks raise it)."""
    tries = _Tries(job.key, session, worker, hooks or Hooks())
    match job:
        case Build():  # (one that `prepares` starts its clock when it gets its slot)
            return tries.run(partial(_build, job), job.retry, job.timeout,
                             armed=not prepares(job))
        case Restore():
            return tries.run(partial(_restore, job), job.retry, job.timeout)
        case RestoreVerdict():
            return tries.run(_restore_verdict, ONCE, None)
        case Revalidate():
            return tries.run(partial(_revalidate, job), job.retry, job.timeout)
        case Reexport():
            return tries.run(partial(_reexport, job), job.retry, job.timeout)
        case CheckRule():
            return tries.run(partial(_check, job), ONCE, None)
        case _:
            assert_never(job)


@dataclass(frozen=True, slots=True)
class _Done:
    """What one attempt of a job came to (a StepResult but for its clock)."""

    outcome: Outcome
    info: TableInfo | None = None
    exports: tuple[Export, ...] = ()
    error: str | None = None
    internal: str | None = None
    halt: bool = False
    note: str | None = None


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What an attempt works with."""

    session: Session
    timer: _Timer
    hooks: Hooks


class _Tries:
    """A job's attempts on one session, and the one place its StepResult is made."""

    def __init__(self, key: NodeId, session: Session, worker: int, hooks: Hooks) -> None:
        self.key, self.session, self.worker, self.hooks = key, session, worker, hooks
        self.started = time.time()

    def result(self, done: _Done, attempts: int) -> StepResult:
        """Started when the job got its slot (a Python node's), else when it started."""
        return StepResult(self.key, done.outcome, self.hooks.granted or self.started,
                          time.time(), self.worker, info=done.info, exports=done.exports,
                          error=done.error, attempts=attempts, internal=done.internal,
                          halt=done.halt, note=done.note)

    def run(self, attempt: Callable[[_Attempt], _Done], retry: Retry, timeout: float | None,
            *, armed: bool = True) -> StepResult:
        attempts = 0
        while True:
            attempts += 1
            timer = _Timer(timeout, self.session, in_place=self.hooks.interrupt, armed=armed)
            try:
                return self.result(attempt(_Attempt(self.session, timer, self.hooks)), attempts)
            except RulesFailed as e:  # the data broke a rule: retrying would not help
                return self.result(_Done(Outcome.FAILED, error=str(e)), attempts)
            except EngineInterrupted:
                if not timer.fired:
                    return self.result(_Done(Outcome.INTERRUPTED, error="interrupted"), attempts)
                error = f"timed out after {timeout:g}s"
            except EngineError as e:  # the node's work failed: SQL, data, the user's Python
                error = str(e)
            except NotStarted:
                raise
            except Exception as e:  # noqa: BLE001 - a bug in odibi: kept apart, with its traceback
                return self.result(_Done(Outcome.FAILED, error=f"internal error: {e!r}",
                                         internal="".join(traceback.format_exception(e))),
                                   attempts)
            finally:
                timer.cancel()
                self.session.rollback()
            if attempts >= retry.attempts:
                return self.result(_Done(Outcome.FAILED, error=error), attempts)
            time.sleep(retry.backoff * (2 ** (attempts - 1)))


class _Timer:
    """A job's timeout. When it passes, `fired` is set and, with `in_place`, the session's
    running query is interrupted; without, `check` raises from then on."""

    def __init__(self, seconds: float | None, session: Session, *, in_place: bool,
                 armed: bool = True) -> None:
        self.fired = False
        self.seconds = seconds
        self.in_place = in_place
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
        if self.in_place:
            session.interrupt()

    def check(self) -> None:
        """Between two steps: where the engine cannot interrupt in place, a job past its
        timeout goes no further."""
        if self.fired and not self.in_place:
            raise EngineInterrupted("timed out")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


# -- each kind of job ------------------------------------------------------------------------
def _build(job: Build, at: _Attempt) -> _Done:
    name, out, session = job.step.node, job.output, at.session
    if not isinstance(job.producer, Read):  # pre-conditions on the inputs, first
        _check_rules(session, job.rules.contracts, job.relations, "contract failed")
    match job.producer:
        case Read():
            rows = _read(job.producer, out, session)
            # a read node's contracts hold for the data read, before anything uses it
            _check_rules(session, job.rules.contracts, {name: out}, "contract failed")
        case Sql(text, inputs):
            session.begin()
            rows = session.run_sql(out, text, inputs)
        case PythonCall():
            frame = _call(job.producer, session, at)
            session.begin()
            rows = session.create_from_frame(out, frame)
        case _:
            assert_never(job.producer)
    # post-conditions: a failing output is never committed nor exported
    _check_rules(session, job.rules.validate, {name: out}, "validation failed")
    info = session.describe(out, rows)
    at.timer.check()  # (an engine that cannot interrupt: past its timeout, no export)
    exports = export_outputs(job.writes, out, session, at.hooks.root)
    # current last: without transactions, a failure above leaves the node as it was
    # (earlier versions stay stored, for restores)
    at.timer.check()
    session.make_current(name, out)
    session.commit()
    return _Done(Outcome.BUILT, info=info, exports=exports)


def _read(read: Read, out: OutputRef, session: Session) -> int:
    session.begin()
    try:
        files = list_sources(read.connection, read.spec, read.node)
    except ConfigError as e:
        raise EngineError(e.message) from None
    return session.read(out, [Location.file(f) for f in files], read.spec)


def _call(c: PythonCall, session: Session, at: _Attempt) -> object:
    """The user's function on its inputs. No transaction is held while it runs (its inputs
    are final); its slot is held only while it runs."""
    fn = load_function(c.module, c.function, c.file, c.python_path, at.hooks.modules)
    frames = session.frames(c.inputs, c.pandas)
    at.hooks.wait_slot()
    at.timer.arm()
    try:
        frame = call(fn, frames, at.timer.seconds)
    except TimedOut:
        at.timer.fired = True
        raise EngineInterrupted("timed out") from None
    at.hooks.computed()
    return frame


def _restore(job: Restore, at: _Attempt) -> _Done:
    at.session.begin()
    at.timer.check()
    exports = export_outputs(job.writes, job.output, at.session, at.hooks.root)
    at.timer.check()
    at.session.make_current(job.step.node, job.output)
    at.session.commit()
    return _Done(Outcome.RESTORED, exports=exports)


def restore_together(jobs: Sequence[Restore | RestoreVerdict], session: Session,
                     root: Path | None) -> dict[NodeId, tuple[Export, ...]]:
    """Several restores in one transaction: each version's exports rewritten, and every
    version made current, together (or, if anything fails, nothing: the error is raised
    after the rollback). The exports written, by node."""
    exports = {}
    session.begin()
    try:
        for job in jobs:
            if isinstance(job, Restore):  # (a check's verdict has no output)
                exports[job.key] = export_outputs(job.writes, job.output, session, root)
                session.make_current(job.key, job.output)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return exports


def _restore_verdict(at: _Attempt) -> _Done:
    at.session.begin()
    at.session.commit()
    return _Done(Outcome.RESTORED)


def _revalidate(job: Revalidate, at: _Attempt) -> _Done:
    """Only the rules changed: run them on the stored output (and inputs), no compute."""
    node = job.step.node
    own: dict[str, Relation] = {node: job.relations[node]}
    contracts_on = own if job.step.kind is NodeKind.READ else job.relations
    _check_rules(at.session, job.rules.contracts, contracts_on, "contract failed")
    _check_rules(at.session, job.rules.validate, own, "validation failed")
    at.timer.check()
    return _Done(Outcome.REVALIDATED)


def _reexport(job: Reexport, at: _Attempt) -> _Done:
    if job.revalidate is not None:  # changed rules hold before the files are rewritten
        _revalidate(job.revalidate, at)
    exports = export_outputs(job.writes, job.output, at.session, at.hooks.root)
    at.timer.check()
    return _Done(Outcome.EXPORTED, exports=exports)


def _check(job: CheckRule, at: _Attempt) -> _Done:
    failed = [r for r in run_rules(at.session, job.rule, job.relations) if not r.ok]
    if not failed:
        return _Done(Outcome.PASSED)
    message = "; ".join(r.describe() for r in failed)
    if job.halt:
        return _Done(Outcome.FAILED, error=message, halt=True)
    return _Done(Outcome.WARNED, note=message)


def _check_rules(session: Session, plan: RulePlan | None, tables: Mapping[str, Relation],
                 what: str) -> None:
    if plan is None:
        return
    failed = [r for r in run_rules(session, plan, tables) if not r.ok]
    if failed:
        raise RulesFailed(f"{what}: " + "; ".join(r.describe() for r in failed))


def export_outputs(writes: Writes, output: OutputRef, session: Session,
                   root: Path | None) -> tuple[Export, ...]:
    """Write the stored version `output` to each file of `writes`; recorded relative to
    `root` (None: as absolute paths)."""
    fs = RealFileSystem()
    out = []
    for write, dest in writes:
        # (a path ending in / is a directory of part files)
        session.export(output, write, Location(str(dest) + "/") if write.rendered_path
                       .endswith("/") else Location.file(dest))
        st = fs.stat(str(dest))
        if st is None:
            raise EngineError(f"{dest} vanished right after it was written")
        out.append(Export(shown(dest, root) if root else str(dest), st[0], st[1],
                          fs.hash(str(dest))))
    return tuple(out)
