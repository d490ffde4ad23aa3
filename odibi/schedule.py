"""The scheduler's bookkeeping, in ninja's shape: what waits for what (`Queue`, ninja's
`Plan`), the `-j` slots (`Slots`, ninja's `Pool`), and which job to start first
(`critical_path`). Plain objects owned by the scheduling thread (`odibi.executor`); no
threads, no engine.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import assert_never

from odibi.graph import Graph
from odibi.holds import ExportTasks
from odibi.ids import NodeId, NodeKind
from odibi.jobs import (Build, CheckRule, Job, Read, Reexport, Restore, RestoreVerdict,
                        Revalidate)

__all__ = ["Queue", "Slots", "critical_path"]


class Queue:
    """What each job waits for, and the jobs whose waits are over (ninja's Plan).

    `waiting[n]`: the jobs n still waits for: the upstream jobs whose output it reads; for
    guarded exports (`export_waits`), the node and its guards; for a read node that reads
    a guarded export, its export task. `after` holds the waits that are not edges of the
    graph (dependency -> dependants). `ready` is a heap, the longest remaining path first
    (ties by name); a job is pushed once its waits are over, once (a Python job that loaded
    its inputs comes back once more, to wait there for a slot: `push_again`)."""

    def __init__(self, graph: Graph, jobs: Mapping[NodeId, Job], tasks: ExportTasks,
                 priority: Mapping[NodeId, float]) -> None:
        self.graph = graph
        self.priority = priority
        self.after: dict[NodeId, list[NodeId]] = {}
        self.waiting = self._waits(jobs, tasks)
        self.ready: list[tuple[float, NodeId]] = []
        self.queued: set[NodeId] = set()  # pushed onto `ready` (once each)

    def _waits(self, jobs: Mapping[NodeId, Job], tasks: ExportTasks
               ) -> dict[NodeId, set[NodeId]]:
        waiting = {n: {u for u in self.graph.upstream(n) if u in jobs
                       and _must_wait(jobs[n], jobs[u])}
                   for n in jobs if n not in tasks}
        for n, job in jobs.items():
            extra: set[NodeId] = set()
            if n in tasks:
                extra = {tasks.node[n], *job.step.export_waits}
            else:
                if isinstance(job, Reexport):
                    extra.update(job.step.export_waits)
                if _reads_files(job):
                    extra.update(tasks.task[u] for u in self.graph.upstream(n)
                                 if u in tasks.task)
            if extra:
                waiting.setdefault(n, set()).update(extra)
                for d in extra:
                    self.after.setdefault(d, []).append(n)
        return waiting

    def unwaited(self, tasks: ExportTasks) -> list[NodeId]:
        """The jobs that wait for nothing, in build order (an export task right after its
        node)."""
        def rank(n: NodeId) -> tuple[int, int]:
            return (self.graph.index[tasks.node.get(n, n)], n in tasks)
        return sorted((n for n, deps in self.waiting.items() if not deps), key=rank)

    def push(self, n: NodeId) -> None:
        if n not in self.queued:
            self.queued.add(n)
            self.push_again(n)

    def push_again(self, n: NodeId) -> None:
        heapq.heappush(self.ready, (-self.priority.get(n, 0.0), n))

    def first(self) -> NodeId:
        return self.ready[0][1]

    def pop(self) -> None:
        heapq.heappop(self.ready)

    def pop_first_of(self, among: set[NodeId]) -> NodeId | None:
        """The first ready job of `among`, taken off the queue."""
        found = [item for item in self.ready if item[1] in among]
        if not found:
            return None
        self.ready.remove(min(found))
        heapq.heapify(self.ready)
        return min(found)[1]

    def release(self, name: NodeId) -> Iterator[NodeId]:
        """`name` is done: its dependants no longer wait for it. Yields, as it goes, those
        with nothing left to wait for (the caller may release more before the next)."""
        children = self.graph.downstream(name) if name in self.graph.index else ()
        for child in (*children, *self.after.get(name, ())):
            deps = self.waiting.get(child)
            if deps is not None and name in deps:
                deps.discard(name)
                if not deps:
                    yield child


def _must_wait(job: Job, upstream: Job) -> bool:
    """A node waits for upstream nodes whose output changes; a read node also for one
    that re-exports, since it may read that very file."""
    match upstream:
        case Build() | Restore():
            return True
        case Reexport():
            return _reads_files(job)
        case RestoreVerdict() | Revalidate() | CheckRule():
            return False
        case _:
            assert_never(upstream)


def _reads_files(job: Job) -> bool:
    """Whether a job waits for the upstream exports it may read: a read node's, but for a
    restore (it reads nothing)."""
    match job:
        case Build(producer=Read()):
            return True
        case Revalidate() | Reexport():
            return job.step.kind is NodeKind.READ
        case _:
            return False


class Slots:
    """The `-j` slots (ninja's Pool): at most `capacity` jobs compute at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.holders: set[NodeId] = set()

    @property
    def full(self) -> bool:
        return len(self.holders) >= self.capacity

    def take(self, n: NodeId) -> None:
        self.holders.add(n)

    def release(self, n: NodeId) -> None:
        self.holders.discard(n)

    def __len__(self) -> int:
        return len(self.holders)


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
