"""The scheduler: Plan x Engine x jobs -> RunResult.

As in ninja, one thread (the caller's) owns all state: it fills free slots (`-j N`,
`Slots`) from the ready queue (`Queue`: longest remaining path first, from remembered
durations; `odibi.schedule`), hands each job out to the first free worker (`odibi.pool`),
waits for one message, records results, releases the job's dependants, and repeats.
Workers only run `run_job(job, session)` (`odibi.worker`) on their own engine session,
and share nothing with this thread but their messages.

A node's outcome is committed in order: its output (the engine's transaction, exports
included), then its state record (`odibi.recording`); a node counts as built only once
that record is written. Exports that halting checks guard (`PlannedStep.export_waits`) are
written apart, by an export task that runs once the node is recorded (with its exports
marked `held`) and every guard has passed: a guard that fails, or never runs, holds them
back (`RunResult.held`), and the next build writes them once the guards pass
(`odibi.holds`). Dependants in the warehouse do not wait for the export; a read node
that reads the exported file does. A failure is a value, not an exception: its
dependants are `blocked` and independent branches go on (`--keep-going`), or nothing new
starts and running queries are interrupted (`--fail-fast`, a halting check, or `cancel`
being set, as Ctrl-C does).

What differs between engines is asked of `engine.capabilities`: restores that wait on
no computation are made together, in one transaction, only with `transactions`; a build
that only restores leaves the warehouse closed and defers them only with `views`; an
engine without `interrupt` lets running jobs finish when the build stops (they are
recorded as they finish), and fails a job that overran its timeout at its next step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import assert_never

from odibi.engines.base import Engine, EngineError
from odibi.events import NodeBlocked, NodeFinished, NodeStarted, Reporter
from odibi.graph import Graph
from odibi.holds import ExportTasks, HeldExport, HoldCause, held_exports, split
from odibi.ids import Digest, NodeId, Outcome
from odibi.jobs import (Build, CheckRule, Job, Reexport, Restore, RestoreVerdict, Revalidate,
                        StepResult, prepares)
from odibi.planner import Reason
from odibi.pool import Computed, Message, Pool, Prepared, Unstarted
from odibi.recording import CutOff, StoredVersion, produced, trace_of
from odibi.schedule import Queue, Slots, critical_path
from odibi.state import Export, State, Trace
from odibi.worker import restore_together

__all__ = ["RunOptions", "RunResult", "execute"]


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
    held: Mapping[NodeId, HeldExport] = field(default_factory=dict)  # exports not written

    @property
    def failed(self) -> list[NodeId]:
        return [n for n, r in self.results.items() if r.outcome is Outcome.FAILED]

    @property
    def internal(self) -> list[StepResult]:
        return [r for r in self.results.values() if r.internal]

    @property
    def ok(self) -> bool:
        return (not self.failed and not self.blocked and not self.not_started
                and not self.held and not self.cancelled
                and not any(r.outcome is Outcome.INTERRUPTED for r in self.results.values()))


def execute(jobs: Mapping[NodeId, Job], graph: Graph, engine: Engine, state: State,
            traces: Mapping[NodeId, Trace], reporter: Reporter, options: RunOptions,
            durations: Mapping[NodeId, float] | None = None, root: Path | None = None,
            cancel: threading.Event | None = None) -> RunResult:
    """Run `jobs` (the plan's steps that run) with `options.jobs` workers; exports are
    recorded relative to `root`. Setting `cancel` (Ctrl-C) stops scheduling and
    interrupts the running nodes."""
    jobs, tasks = split(jobs)
    priority = critical_path(graph, jobs, durations or {})
    priority.update({t: priority.get(n, 0.0) for n, t in tasks.task.items()})
    loop = _Loop(jobs, graph, tasks, state, reporter, options, root,
                 cancel or threading.Event(), Queue(graph, jobs, tasks, priority),
                 before=traces, outputs={n: t.output for n, t in traces.items()})
    return loop.run(engine)


# -- the scheduling loop (in the caller's thread) --------------------------------------------
@dataclass(eq=False)
class _Loop:
    jobs: Mapping[NodeId, Job]
    graph: Graph
    tasks: ExportTasks  # guarded exports (odibi.holds)
    state: State
    reporter: Reporter
    options: RunOptions
    root: Path | None
    cancel: threading.Event
    queue: Queue
    before: Mapping[NodeId, Trace]  # each node's record when the build began
    outputs: dict[NodeId, Digest | None]  # current output digest per node (for records)
    results: dict[NodeId, StepResult] = field(default_factory=dict)
    blocked: dict[NodeId, NodeId] = field(default_factory=dict)
    halted: NodeId | None = None  # the check that stopped the build
    stop: bool = False
    slots: Slots = field(default_factory=lambda: Slots(0))
    pool: Pool = field(init=False)
    prepared: set[NodeId] = field(default_factory=set)  # inputs loaded, waiting for a slot
    committing: set[NodeId] = field(default_factory=set)  # function returned, on a worker
    began: set[NodeId] = field(default_factory=set)  # NodeStarted emitted

    def run(self, engine: Engine) -> RunResult:
        started = time.time()
        if self._restore_without_warehouse(engine):
            return self._result(started, (), {})
        engine.open()  # before any node runs (it applies restores an earlier build deferred)
        self._restore_batch(engine)
        for n in self.queue.unwaited(self.tasks):  # in build order
            if n not in self.results and n not in self.queue.queued and not self._cut_off(n):
                self.queue.push(n)
        self.pool = self._workers(engine)
        try:
            self._drive()
        finally:
            self.pool.close()  # (calls off whatever still waits for a slot)
        held = self._held()
        waited = {key for key, _ in held.values()}
        not_started = tuple(n for n in self.jobs if n not in self.results and n not in self.tasks
                            and n not in self.blocked and n not in waited)
        return self._result(started, not_started, {n: h for n, (_, h) in held.items()})

    def _workers(self, engine: Engine) -> Pool:
        """Slots and workers for what is left to run: `-j` slots (as many nodes compute at
        once) and, since Python nodes load their inputs before and commit their output
        after holding a slot (`Hooks`), spare workers for those."""
        python = sum(1 for n, j in self.jobs.items() if prepares(j) and n not in self.results)
        if python:
            engine.prepare_python()
        size = max(1, min(self.options.jobs, len(self.jobs) - len(self.results) or 1))
        if len(self.results) == len(self.jobs):
            size = 0  # everything was restored together: no worker needed
        self.slots = Slots(size)
        return Pool(engine, size + min(size, python), self.root)

    def _result(self, started: float, not_started: tuple[NodeId, ...],
                held: Mapping[NodeId, HeldExport]) -> RunResult:
        return RunResult(self.results, self.blocked, started, time.time(), not_started,
                         self.cancel.is_set(), self.halted, held)

    def _drive(self) -> None:
        """Start what may start, wait for one message, take it in; until nothing runs and
        nothing more may start."""
        while (self.queue.ready and not self.stop) or self.pool.handed:
            self._fill()
            if not self.pool.handed:
                break
            if self.cancel.is_set() and not self.stop:  # Ctrl-C: stop, interrupt what runs
                self._stop()  # (their results still come back; finished ones are recorded)
            message = self.pool.next(timeout=0.1)
            if message is not None:
                self._receive(message)

    def _held(self) -> dict[NodeId, tuple[NodeId, HeldExport]]:
        """Guarded exports that were not written. What reads those files is blocked by the
        check that held them (or by what blocked that check), if one did."""
        held = held_exports(self.jobs, self.tasks, self.results, self.blocked, self.root)
        waiting = self.queue.waiting
        for node, (key, h) in held.items():
            cause = h.check if h.cause is HoldCause.CHECK_FAILED else h.because
            if cause is None:
                continue
            readers = list(self.queue.after.get(key, ()))
            if key == node:  # a held re-export: the read nodes of the graph read its files
                readers += [c for c in self.graph.downstream(node)
                            if c in waiting and node in waiting[c]]
            self._block_readers(readers, cause)
        return held

    def _block_readers(self, readers: list[NodeId], cause: NodeId) -> None:
        """Read nodes waiting for files that will not be written are blocked by `cause`,
        and so is what depends on them."""
        self._block_from(reversed(readers), cause)

    def _fill(self) -> None:
        """Start ready jobs, highest priority first, while slots and workers are free. A
        job that `prepares` goes to a worker without a slot, and comes back (`Prepared`)
        to wait in the queue for one."""
        queue = self.queue
        while queue.ready and not self.stop:
            n = queue.first()
            if n in self.prepared:
                if self.slots.full:
                    return
                queue.pop()
                self._grant(n)
                continue
            if not self.pool.idle:
                # no worker for it; one waiting with its own worker may take a free slot
                waiting = None if self.slots.full else queue.pop_first_of(self.prepared)
                if waiting is None:
                    return
                self._grant(waiting)
                continue
            job = self.jobs[n]
            if not prepares(job):
                if self.slots.full:
                    return
                self.slots.take(n)
                self._started(n)
            queue.pop()
            self.pool.start(job)

    def _grant(self, n: NodeId) -> None:
        self.slots.take(n)
        self._started(n)
        self.prepared.remove(n)
        self.pool.answer(n, True)

    def _started(self, n: NodeId) -> None:
        if n in self.tasks:  # an export task: part of its node, which has said why it runs
            self.began.add(n)
            return
        if n not in self.began:
            self.began.add(n)
            self._announce(n, len(self.slots) - 1, time.time())

    def _announce(self, n: NodeId, slot: int, at: float) -> None:
        step = self.jobs[n].step
        self.reporter.emit(NodeStarted(n, step.status, step.headline,
                                       tuple(r.summary() for r in step.reasons), slot, at))

    def _receive(self, message: Message) -> None:
        match message:
            case Prepared(node):
                if self.stop:
                    self.pool.answer(node, False)
                else:
                    self.prepared.add(node)
                    # back in the queue (it was taken off it to load its inputs)
                    self.queue.push_again(node)
            case Computed(node):
                self.slots.release(node)
                self.committing.add(node)
            case Unstarted(node):
                self.slots.release(node)
                self.committing.discard(node)
            case StepResult():
                node = message.node
                self.slots.release(node)
                self.committing.discard(node)
                if node not in self.began:
                    if message.outcome is Outcome.INTERRUPTED:
                        return  # stopped while loading its inputs: it never started
                    self._started(node)  # it failed before it got a slot
                self._finish(message)
            case _:
                assert_never(message)

    def _stop(self) -> None:
        """Start nothing new; interrupt what runs; call off jobs waiting for a slot."""
        self.stop = True
        # a Python node whose function returned is only committing its result: let it
        self.pool.stop(spare=frozenset(self.committing))
        self._call_off()

    def _call_off(self) -> None:
        for n in self.prepared:
            self.pool.answer(n, False)
        self.prepared.clear()

    def _finish(self, result: StepResult) -> None:
        name = result.node
        if name in self.tasks:
            self._exported(result)
            return
        job = self.jobs[name]
        self.results[name] = result
        # the record first, then the word: a node reported done is durably done
        if result.outcome is Outcome.FAILED and result.internal is None:
            if not isinstance(job, (Revalidate, Reexport)):
                # a rule (or an export) that fails on the stored output is no reason to
                # recompute it: the next build tries again (its trace is as it was)
                self.state.records.record_failure(name, job.step.fingerprint,
                                                  result.error or "failed")
            if result.halt:
                self.halted = name
        elif result.outcome not in (Outcome.FAILED, Outcome.INTERRUPTED):
            self._record(job, result)
        self.reporter.emit(NodeFinished(name, result.outcome, result.seconds, result.worker,
                                        result.info.rows if result.info else None,
                                        result.error or result.note, result.attempts))
        if result.outcome in (Outcome.INTERRUPTED, Outcome.FAILED):
            self.tasks.drop(name)  # its output was not committed: no export
        if result.outcome is Outcome.INTERRUPTED:
            return  # not a failure of the node: it runs again next time
        if result.outcome is Outcome.FAILED:
            self._block(name, name)
            if self.options.fail_fast or result.halt:
                self._stop()
            return
        self._release(name)

    def _exported(self, result: StepResult) -> None:
        """An export task's result: the node's record gets its exports (no longer held).
        A failed export fails the node: its output stays committed, its exports held,
        its failure recorded (the next build builds it again, as before guards existed),
        and the reads of those files are blocked."""
        task = result.node
        name = self.tasks.node[task]
        if result.outcome is Outcome.INTERRUPTED:
            return  # held: the next build writes them
        if result.outcome is Outcome.EXPORTED:
            recorded = self.state.records.recorded[name]  # recorded when the node finished
            self.state.records.record(name, trace_of(self.jobs[task].step, StoredVersion(
                recorded, result.exports, ())))
            self.tasks.done.add(task)
            self.results[name] = replace(self.results[name], exports=result.exports)
            self._release(task)
            return
        error = f"export failed: {result.error}"
        self.tasks.dropped.add(task)
        self.state.records.record_failure(name, self.jobs[task].step.fingerprint, error)
        self.results[name] = replace(self.results[name], outcome=Outcome.FAILED, error=error,
                                     internal=result.internal)
        self.reporter.emit(NodeFinished(name, Outcome.FAILED, result.seconds, result.worker,
                                        None, error, result.attempts))
        self._block_readers(list(self.queue.after.get(task, ())), name)
        if self.options.fail_fast:
            self._stop()

    def _restore_batch(self, engine: Engine) -> None:
        """Restores that wait on no computation are done together, up front: one warehouse
        transaction makes every version current, then one state transaction records them
        (a revert of a change with hundreds of dependants is a few hundred swaps, not
        hundreds of scheduled jobs). If anything in it fails, they run as ordinary jobs
        instead."""
        batch: list[Restore | RestoreVerdict] = []
        chosen: set[NodeId] = set()
        for n in self.graph.names:
            job = self.jobs.get(n)
            if isinstance(job, (Restore, RestoreVerdict)) and self.queue.waiting[n] <= chosen:
                batch.append(job)
                chosen.add(n)
        if len(batch) < 2 or not engine.capabilities.transactions:
            return  # (without transactions, one by one: each restore is then safe alone)
        started = time.time()
        names = [job.key for job in batch]
        for n in names:  # (if the batch fails, they run as jobs: announced once, here)
            self.began.add(n)
            self._announce(n, 0, started)
        session = engine.session()
        try:
            exports = restore_together(batch, session, self.root)
        except (EngineError, OSError):
            return
        finally:
            session.close()
        self._restores_finished(names, started, exports, deferred=False)

    def _restore_without_warehouse(self, engine: Engine) -> bool:
        """A build that only restores versions the warehouse holds, and exports nothing,
        need not open the warehouse: the restores are recorded in the state, to be made
        current when the warehouse is next opened (`state.records.pending_restores`).
        `odibi show` reads the version the state points at."""
        if engine.is_open or not engine.capabilities.views or not self.jobs or any(
                not isinstance(j, (Restore, RestoreVerdict))
                or (isinstance(j, Restore) and j.writes)
                or any(r.reason is Reason.OUTPUT_MISSING for r in j.step.reasons)
                for j in self.jobs.values()):
            return False  # (an output dropped by hand is put back now)
        batch = [n for n in self.graph.names if n in self.jobs]
        started = time.time()
        for n in batch:
            self._announce(n, 0, started)
        self._restores_finished(batch, started, {}, deferred=True)
        return True

    def _restores_finished(self, batch: list[NodeId], started: float,
                           exports: Mapping[NodeId, tuple[Export, ...]], *,
                           deferred: bool) -> None:
        finished = time.time()
        traces: list[tuple[str, Trace]] = []
        for n in batch:
            result = StepResult(n, Outcome.RESTORED, started, finished, 0,
                                exports=exports.get(n, ()))
            self.results[n] = result
            traces.append((n, self._record(self.jobs[n], result, save=False)))
        self.state.records.record_many(traces, deferred=deferred)
        for n in batch:
            self.reporter.emit(NodeFinished(n, Outcome.RESTORED, finished - started, 0))
            self.queue.waiting.pop(n, None)
        for n in batch:
            self._release(n)

    def _release(self, name: NodeId) -> None:
        for child in self.queue.release(name):
            if child not in self.blocked and not self._cut_off(child):
                self.queue.push(child)

    def _cut_off(self, name: NodeId) -> bool:
        """Early cutoff: a node planned only because its upstream changed is not run when
        every upstream output came out as it was when the node was last built. Its record
        moves to the new fingerprint; its output (and its digest) stand."""
        match self.jobs[name]:
            case Build(cutoff=Trace() as old) | CheckRule(cutoff=Trace() as old):
                pass
            case _:
                return False
        if any(self.outputs.get(u) != old.inputs.get(u) for u in self.graph.upstream(name)):
            return False
        self.state.records.record(name, trace_of(self.jobs[name].step, CutOff(old)))
        now = time.time()
        self.results[name] = StepResult(name, Outcome.CUT_OFF, now, now, -1)
        self.reporter.emit(NodeFinished(name, Outcome.CUT_OFF, 0.0, -1))
        task = self.tasks.drop(name)
        if task is not None:  # its output and exports stand as they were
            self.queue.waiting.pop(task, None)
            self._release(task)
        self._release(name)
        return True

    def _block(self, failed: NodeId, cause: NodeId) -> None:
        self._block_from(self.graph.downstream(failed), cause)

    def _block_from(self, start: Iterable[NodeId], cause: NodeId) -> None:
        """`start` and what depends on them (depth first, the last of `start` first) are
        blocked by `cause`, but for what already ran or was blocked."""
        stack = list(start)
        while stack:
            n = stack.pop()
            if n in self.queue.waiting and n not in self.blocked and n not in self.results:
                self.blocked[n] = cause
                self.reporter.emit(NodeBlocked(n, cause))
                stack.extend(self.graph.downstream(n))

    def _record(self, job: Job, result: StepResult, *, save: bool = True) -> Trace:
        """The node's record once `job` succeeded (saved in the state unless not `save`);
        its output digest is what its dependants' records name from now on."""
        trace = trace_of(job.step, produced(job, result, self.before, self.outputs))
        self.outputs[job.step.node] = trace.output
        if save:
            self.state.records.record(job.step.node, trace)
        return trace
