"""Guarded exports in the scheduler (write, audit, publish).

A node that computes (or restores) an output whose exports halting checks guard
(`PlannedStep.export_waits`) gives its writes to an *export task*, scheduled apart: the
task waits for the node and for each guard, and a read node that reads one of those
files waits for the task. The node is recorded first, with its exports `held` (the
files still as odibi last wrote them); the task, once it has written them, records them
written. A task that never runs leaves them held, and the next build writes them once
the guards pass: no data a failing check caught leaves odibi, and none is forgotten.

A re-export that only waits for guards (nothing to compute) is its node's own job, held
the same way. `ExportTasks` belongs to the scheduler's thread, like the rest of its state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from odibi.ids import NodeId, Outcome, Status
from odibi.jobs import Build, Job, Reexport, Restore, StepResult
from odibi.paths import shown


class HoldCause(Enum):
    CHECK_FAILED = "failed"  # a guard failed
    CHECK_BLOCKED = "blocked"  # a guard could not run: something it reads failed
    CHECK_LEFT_OUT = "left out"  # a guard is not part of this build (excluded, blocked)
    STOPPED = "stopped"  # the build stopped (Ctrl-C, --fail-fast) before a guard ran


@dataclass(frozen=True, slots=True)
class HeldExport:
    """A node's exports that were not written, and why."""

    paths: tuple[str, ...]  # as the user sees them (relative to the project root)
    cause: HoldCause
    check: NodeId | None  # the guard that held them (STOPPED: the first that did not run)
    because: NodeId | None = None  # CHECK_BLOCKED: the failed node that blocked the check


def task_of(node: NodeId) -> NodeId:
    """An export task's name in the scheduler: never a node's (names are identifiers)."""
    return NodeId(f"{node}:export")


@dataclass
class ExportTasks:
    task: dict[NodeId, NodeId] = field(default_factory=dict)  # node -> its export task
    node: dict[NodeId, NodeId] = field(default_factory=dict)  # export task -> its node
    done: set[NodeId] = field(default_factory=set)  # tasks that wrote their files
    dropped: set[NodeId] = field(default_factory=set)  # nothing to write after all

    def __contains__(self, key: object) -> bool:
        return key in self.node

    def drop(self, node: NodeId) -> NodeId | None:
        """The node's output was not committed, or stands as it was: no export."""
        task = self.task.get(node)
        if task is not None:
            self.dropped.add(task)
        return task


def split(jobs: Mapping[NodeId, Job]) -> tuple[dict[NodeId, Job], ExportTasks]:
    """Give each guarded export of a node that computes or restores to an export task: a
    `Reexport` of the output the node's job makes current."""
    out = dict(jobs)
    tasks = ExportTasks()
    for n, job in jobs.items():
        match job:
            case Build() | Restore() if job.writes and job.step.export_waits:
                task = task_of(n)
                out[n] = replace(job, writes=(), held=job.step.export_waits)
                out[task] = Reexport(replace(job.step, status=Status.REEXPORT), task,
                                     job.output, job.writes, job.retry, job.timeout)
                tasks.task[n], tasks.node[task] = task, n
    return out, tasks


def held_exports(jobs: Mapping[NodeId, Job], tasks: ExportTasks,
                 results: Mapping[NodeId, StepResult], blocked: Mapping[NodeId, NodeId],
                 root: Path | None) -> dict[NodeId, tuple[NodeId, HeldExport]]:
    """node -> (the job that did not write them, its held exports): export tasks whose
    node committed its output, and re-exports waiting for guards, that did not run.
    Paths are shown relative to `root`."""
    out = {}
    for key, job in jobs.items():
        if not isinstance(job, Reexport):
            continue
        node = _unwritten(key, job, tasks, results, blocked)
        if node is None:
            continue
        paths = tuple(shown(dest, root) if root else str(dest) for _, dest in job.writes)
        cause, check, because = _cause(job.step.export_waits, jobs, results, blocked)
        out[node] = (key, HeldExport(paths, cause, check, because))
    return out


def _unwritten(key: NodeId, job: Reexport, tasks: ExportTasks,
               results: Mapping[NodeId, StepResult], blocked: Mapping[NodeId, NodeId]
               ) -> NodeId | None:
    """The node whose exports `job` did not write, if it did not."""
    if key in tasks:
        node = tasks.node[key]
        committed = results.get(node)
        if key in tasks.done or key in tasks.dropped or committed is None \
                or committed.outcome not in (Outcome.BUILT, Outcome.RESTORED):
            return None
        return node
    if not job.step.export_waits or key in results or key in blocked:
        return None
    return key


def _cause(guards: tuple[NodeId, ...], jobs: Mapping[NodeId, Job],
           results: Mapping[NodeId, StepResult], blocked: Mapping[NodeId, NodeId]
           ) -> tuple[HoldCause, NodeId | None, NodeId | None]:
    for c in guards:
        r = results.get(c)
        if r is not None and r.outcome is Outcome.FAILED:
            return HoldCause.CHECK_FAILED, c, None
    for c in guards:
        if c in blocked:
            return HoldCause.CHECK_BLOCKED, c, blocked[c]
        if c not in jobs:
            return HoldCause.CHECK_LEFT_OUT, c, None
    waiting = next((c for c in guards if c not in results), None)
    return HoldCause.STOPPED, waiting, None
