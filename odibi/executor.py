"""The scheduler: Plan x Engine x jobs -> RunResult.

As in ninja, one thread (the caller's) owns all state: it fills free slots (`-j N`) from
the ready queue (longest remaining path first, from remembered durations), waits for one
message from the workers (`odibi.jobs`), records results, releases the node's dependants,
and repeats. Workers only run `run_job(job, session)` on their own engine session.

A node's outcome is committed in order: its output (the engine's transaction, exports
included), then its state record; a node counts as built only once that record is
written. Exports that halting checks guard (`PlannedStep.export_waits`) are written
apart, by an export task that runs once the node is recorded (with its exports marked
`held`) and every guard has passed: a guard that fails, or never runs, holds them back
(`RunResult.held`), and the next build writes them once the guards pass (`odibi.holds`).
Dependants in the warehouse do not wait for the export; a read node that reads the
exported file does. A failure is a value, not an exception: its dependants are `blocked` and
independent branches go on (`--keep-going`), or nothing new starts and running queries
are interrupted (`--fail-fast`, a halting check, or `cancel` being set, as Ctrl-C does).
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import assert_never

from odibi.engines.base import Engine, EngineError
from odibi.events import NodeBlocked, NodeFinished, NodeStarted, Reporter
from odibi.graph import Graph
from odibi.holds import ExportTasks, HeldExport, HoldCause, held_exports, split
from odibi.ids import Digest, NodeId, Outcome
from odibi.jobs import (Computed, Job, Message, Pool, Prepared, PythonCall, StepResult,
                        Ticket, Unstarted, export_outputs, prepares, run_job)
from odibi.planner import Plan, Reason, Status
from odibi.state import Export, State, Trace

__all__ = ["Job", "PythonCall", "RunOptions", "RunResult", "StepResult", "critical_path",
           "execute", "run_job"]


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
    size: int = 0  # slots: nodes computing at once
    running: set[NodeId] = field(default_factory=set)  # on a worker
    computing: set[NodeId] = field(default_factory=set)  # holding a slot
    committing: set[NodeId] = field(default_factory=set)  # function returned, on a worker
    prepared: dict[NodeId, Ticket] = field(default_factory=dict)  # waiting for a slot
    began: set[NodeId] = field(default_factory=set)  # NodeStarted emitted
    queued: set[NodeId] = field(default_factory=set)  # pushed onto `ready` (once each)
    tasks: ExportTasks = field(default_factory=ExportTasks)  # guarded exports (odibi.holds)
    after: dict[NodeId, list[NodeId]] = field(default_factory=dict)  # waits outside the graph

    def run(self, engine: Engine) -> RunResult:
        started = time.time()
        waiting = self._waiting()
        ready: list[tuple[float, NodeId]] = []
        if self._restore_without_warehouse(engine):
            return RunResult(self.results, self.blocked, started, time.time(), (),
                             self.cancel.is_set(), self.halted)
        engine.open()  # before any node runs (it applies views an earlier build deferred)
        self._restore_batch(engine, waiting, ready)
        for n, deps in sorted(waiting.items(), key=lambda item: self._rank(item[0])):
            if not deps and n not in self.results and n not in self.queued \
                    and not self._cut_off(n, waiting, ready):
                self._push(n, ready)
        python = sum(1 for n, j in self.jobs.items() if prepares(j) and n not in self.results)
        if python:
            engine.prepare_python()
        self.size = max(1, min(self.options.jobs, len(self.jobs) - len(self.results) or 1))
        if len(self.results) == len(self.jobs):
            self.size = 0  # everything was restored together: no worker needed
        # `size` slots: as many nodes compute at once. Python nodes load their inputs
        # before and commit their output after holding a slot (`Hooks`): spare workers
        # for that.
        pool = Pool(engine, self.size + min(self.size, python))
        try:
            while (ready and not self.stop) or self.running:
                self._fill(ready, pool)
                if not self.running:
                    break
                message = self._next(pool)
                if message is not None:
                    self._receive(message, waiting, ready, pool)
        finally:
            self._call_off()
            pool.close()
        held = self._held(waiting)
        waited = {key for key, _ in held.values()}
        not_started = tuple(n for n in self.jobs if n not in self.results and n not in self.tasks
                            and n not in self.blocked and n not in waited)
        return RunResult(self.results, self.blocked, started, time.time(), not_started,
                         self.cancel.is_set(), self.halted,
                         {n: h for n, (_, h) in held.items()})

    def _push(self, n: NodeId, ready: list[tuple[float, NodeId]]) -> None:
        if n not in self.queued:
            self.queued.add(n)
            heapq.heappush(ready, (-self.priority.get(n, 0.0), n))

    def _waiting(self) -> dict[NodeId, set[NodeId]]:
        """What each job waits for: the upstream jobs whose output it reads, and for
        guarded exports (`export_waits`), the node and its guards; a read node that
        reads a guarded export waits for its export task. Waits that are not edges of
        the graph are kept in `after` (dependency -> dependants)."""
        waiting = {n: {u for u in self.graph.upstream(n) if u in self.jobs
                       and _must_wait(self.jobs[n], self.jobs[u])}
                   for n in self.jobs if n not in self.tasks}
        extra: dict[NodeId, set[NodeId]] = {}
        for n, job in self.jobs.items():
            if n in self.tasks:
                extra[n] = {self.tasks.node[n], *job.step.export_waits}
            elif job.step.status is Status.REEXPORT and job.step.export_waits:
                extra[n] = set(job.step.export_waits)
            if job.read is not None:
                extra.setdefault(n, set()).update(
                    self.tasks.task[u] for u in self.graph.upstream(n) if u in self.tasks.task)
        for n, deps in extra.items():
            waiting.setdefault(n, set()).update(deps)
            for d in deps:
                self.after.setdefault(d, []).append(n)
        return waiting

    def _rank(self, n: NodeId) -> tuple[int, int]:
        """Build order, an export task right after its node."""
        node = self.tasks.node.get(n, n)
        return (self.graph.index[node], n in self.tasks)

    def _held(self, waiting: dict[NodeId, set[NodeId]]
              ) -> dict[NodeId, tuple[NodeId, HeldExport]]:
        """Guarded exports that were not written. What reads those files is blocked by the
        check that held them (or by what blocked that check), if one did."""
        held = held_exports(self.jobs, self.tasks, self.results, self.blocked)
        for node, (key, h) in held.items():
            cause = h.check if h.cause is HoldCause.CHECK_FAILED else h.because
            if cause is None:
                continue
            readers = list(self.after.get(key, ()))
            if key == node:  # a held re-export: the read nodes of the graph read its files
                readers += [c for c in self.graph.downstream(node)
                            if c in waiting and node in waiting[c]]
            self._block_readers(readers, cause, waiting)
        return held

    def _block_readers(self, readers: list[NodeId], cause: NodeId,
                       waiting: dict[NodeId, set[NodeId]]) -> None:
        """Read nodes waiting for files that will not be written are blocked by `cause`,
        and so is what depends on them."""
        for r in readers:
            if r in waiting and r not in self.results and r not in self.blocked:
                self.blocked[r] = cause
                self.reporter.emit(NodeBlocked(r, cause))
                self._block(r, cause, waiting)

    def _fill(self, ready: list[tuple[float, NodeId]], pool: Pool) -> None:
        """Start ready jobs, highest priority first, while slots and workers are free. A
        job that `prepares` goes to a worker without a slot, and comes back (`Prepared`)
        to wait in `ready` for one."""
        while ready and not self.stop:
            n = ready[0][1]
            if n in self.prepared:
                if len(self.computing) >= self.size:
                    return
                heapq.heappop(ready)
                self._grant(n)
                continue
            if len(self.running) >= len(pool.threads):
                # no worker for it; one waiting with its own worker may take a free slot
                waiting = [item for item in ready if item[1] in self.prepared]
                if not waiting or len(self.computing) >= self.size:
                    return
                ready.remove(min(waiting))
                heapq.heapify(ready)
                self._grant(min(waiting)[1])
                continue
            job = self.jobs[n]
            if not prepares(job):
                if len(self.computing) >= self.size:
                    return
                self.computing.add(n)
                self._started(n)
            heapq.heappop(ready)
            self.running.add(n)
            pool.todo.put(job)

    def _grant(self, n: NodeId) -> None:
        self.computing.add(n)
        self._started(n)
        self.prepared.pop(n).decide(True)

    def _started(self, n: NodeId) -> None:
        if n in self.tasks:  # an export task: part of its node, which has said why it runs
            self.began.add(n)
            return
        if n not in self.began:
            self.began.add(n)
            step = self.jobs[n].step
            self.reporter.emit(NodeStarted(n, step.status, step.headline,
                                           tuple(r.summary() for r in step.reasons),
                                           len(self.computing) - 1, time.time()))

    def _receive(self, message: Message, waiting: dict[NodeId, set[NodeId]],
                 ready: list[tuple[float, NodeId]], pool: Pool) -> None:
        match message:
            case Prepared(node, ticket):
                if self.stop:
                    ticket.decide(False)
                else:
                    self.prepared[node] = ticket
                    # back in the queue (it was taken off it to load its inputs)
                    heapq.heappush(ready, (-self.priority.get(node, 0.0), node))
            case Computed(node):
                self.computing.discard(node)
                self.committing.add(node)
            case Unstarted(node):
                self.running.discard(node)
                self.computing.discard(node)
                self.committing.discard(node)
            case StepResult():
                node = message.node
                self.running.discard(node)
                self.computing.discard(node)
                self.committing.discard(node)
                if node not in self.began:
                    if message.outcome is Outcome.INTERRUPTED:
                        return  # stopped while loading its inputs: it never started
                    self._started(node)  # it failed before it got a slot
                self._finish(message, waiting, ready, pool)
            case _:
                assert_never(message)

    def _stop(self, pool: Pool) -> None:
        """Start nothing new; interrupt what runs; call off jobs waiting for a slot."""
        self.stop = True
        # a Python node whose function returned is only committing its result: let it
        pool.interrupt(spare=frozenset(self.committing))
        self._call_off()

    def _call_off(self) -> None:
        for ticket in self.prepared.values():
            ticket.decide(False)
        self.prepared.clear()

    def _next(self, pool: Pool) -> Message | None:
        """The next message; on the way, notice a cancel (Ctrl-C): stop starting nodes and
        interrupt the running ones (their results still come back, and finished ones
        are recorded)."""
        if self.cancel.is_set() and not self.stop:
            self._stop(pool)
        try:
            return pool.done.get(timeout=0.1)
        except queue.Empty:
            return None

    def _finish(self, result: StepResult, waiting: dict[NodeId, set[NodeId]],
                ready: list[tuple[float, NodeId]], pool: Pool) -> None:
        name = result.node
        if name in self.tasks:
            self._exported(result, waiting, ready, pool)
            return
        job = self.jobs[name]
        self.results[name] = result
        # the record first, then the word: a node reported done is durably done
        if result.outcome is Outcome.FAILED and result.internal is None:
            if job.step.status not in (Status.REVALIDATE, Status.REEXPORT):
                # a rule (or an export) that fails on the stored output is no reason to
                # recompute it: the next build tries again (its trace is as it was)
                self.state.records.record_failure(name, job.step.fingerprint, result.error or "failed")
            if result.halt:
                self.halted = name
        elif result.outcome not in (Outcome.FAILED, Outcome.INTERRUPTED):
            self.state.records.record(name, self._trace(job, result))
        self.reporter.emit(NodeFinished(name, result.outcome, result.seconds, result.worker,
                                        result.info.rows if result.info else None,
                                        result.error or result.note, result.attempts))
        if result.outcome in (Outcome.INTERRUPTED, Outcome.FAILED):
            self.tasks.drop(name)  # its output was not committed: no export
        if result.outcome is Outcome.INTERRUPTED:
            return  # not a failure of the node: it runs again next time
        if result.outcome is Outcome.FAILED:
            self._block(name, name, waiting)
            if self.options.fail_fast or result.halt:
                self._stop(pool)
            return
        self._release(name, waiting, ready)

    def _exported(self, result: StepResult, waiting: dict[NodeId, set[NodeId]],
                  ready: list[tuple[float, NodeId]], pool: Pool) -> None:
        """An export task's result: the node's record gets its exports (no longer held).
        A failed export fails the node: its output stays committed, its exports held,
        its failure recorded (the next build builds it again, as before guards existed),
        and the reads of those files are blocked."""
        task = result.node
        name = self.tasks.node[task]
        if result.outcome is Outcome.INTERRUPTED:
            return  # held: the next build writes them
        if result.outcome is Outcome.EXPORTED:
            trace = self.state.records.recorded[name]  # recorded when the node finished
            self.state.records.record(name, replace(trace, exports=result.exports, held=()))
            self.tasks.done.add(task)
            self.results[name] = replace(self.results[name], exports=result.exports)
            self._release(task, waiting, ready)
            return
        error = f"export failed: {result.error}"
        self.tasks.dropped.add(task)
        self.state.records.record_failure(name, self.jobs[task].step.fingerprint, error)
        self.results[name] = replace(self.results[name], outcome=Outcome.FAILED, error=error,
                                     internal=result.internal)
        self.reporter.emit(NodeFinished(name, Outcome.FAILED, result.seconds, result.worker,
                                        None, error, result.attempts))
        self._block_readers(list(self.after.get(task, ())), name, waiting)
        if self.options.fail_fast:
            self._stop(pool)

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
        if len(batch) < 2 or not engine.capabilities.transactions:
            return  # (without transactions, one by one: each restore is then safe alone)
        session = engine.session()
        started = time.time()
        self._restores_started(batch, started)
        try:
            session.begin()
            exports = {}
            for n in batch:
                out = self.jobs[n].stored.stored  # type: ignore[union-attr]
                if out is not None:  # a check's stored verdict has no output
                    exports[n] = export_outputs(self.jobs[n], out, session)
                    session.make_current(n, out)
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
        if engine.is_open or not engine.capabilities.views or not self.jobs or any(
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
        self.state.records.record_many(traces, deferred=repoint)
        for n in batch:
            self.reporter.emit(NodeFinished(n, Outcome.RESTORED, finished - started, 0))
            waiting.pop(n, None)
        for n in batch:
            self._release(n, waiting, ready)

    def _release(self, name: NodeId, waiting: dict[NodeId, set[NodeId]],
                 ready: list[tuple[float, NodeId]]) -> None:
        children = self.graph.downstream(name) if name in self.graph.index else ()
        for child in (*children, *self.after.get(name, ())):
            deps = waiting.get(child)
            if deps is not None and name in deps:
                deps.discard(name)
                if not deps and child not in self.blocked and \
                        not self._cut_off(child, waiting, ready):
                    self._push(child, ready)

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
        self.state.records.record(name, trace)
        now = time.time()
        self.results[name] = StepResult(name, Outcome.CUT_OFF, now, now, -1)
        self.reporter.emit(NodeFinished(name, Outcome.CUT_OFF, 0.0, -1))
        task = self.tasks.drop(name)
        if task is not None:  # its output and exports stand as they were
            waiting.pop(task, None)
            self._release(task, waiting, ready)
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
                         parts=step.own.as_trace_parts(step.upstream), stored=None, output=None,
                         rows=None, schema=(),
                         inputs={u: d for u in step.upstream
                                 if (d := self.outputs.get(u)) is not None},
                         write_key=step.own.write_key, validate_key=step.own.validate_key,
                         contracts_key=step.own.contracts_key, note=result.note)
        before = self.state_traces.get(step.node)
        # exports held for their guards: the files are still those odibi last wrote
        exports = result.exports if not job.held else (before.exports if before else ())
        base = job.stored if result.outcome is Outcome.RESTORED else (
            before if result.outcome in (Outcome.EXPORTED, Outcome.REVALIDATED) else None)
        if base is not None:
            self.outputs[step.node] = base.output
            return replace(base, exports=exports, write_key=step.own.write_key,
                           validate_key=step.own.validate_key,
                           contracts_key=step.own.contracts_key, sql_text=step.own.sql_text,
                           text_digest=step.own.text_digest, held=job.held)
        info = result.info
        assert info is not None
        self.outputs[step.node] = info.digest
        return Trace(
            fingerprint=step.fingerprint, kind=step.kind.value,
            parts=step.own.as_trace_parts(step.upstream), stored=job.output, output=info.digest,
            rows=info.rows, schema=info.schema,
            inputs={u: d for u in step.upstream if (d := self.outputs.get(u)) is not None},
            exports=exports, write_key=step.own.write_key,
            validate_key=step.own.validate_key, contracts_key=step.own.contracts_key,
            sql_text=step.own.sql_text, text_digest=step.own.text_digest, held=job.held)


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
    jobs, tasks = split(jobs)
    priority = critical_path(graph, jobs, durations or {})
    priority.update({t: priority.get(n, 0.0) for n, t in tasks.task.items()})
    loop = _Loop(plan, jobs, graph, state, reporter, options, outputs, priority, traces,
                 cancel or threading.Event(), tasks=tasks)
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
