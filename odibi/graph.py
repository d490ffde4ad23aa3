"""The dependency graph: an immutable DAG of NodeIds.

Nodes are numbered in a deterministic topological order (Kahn's algorithm, ties broken by
name), so index order *is* a valid build order and `names[i]` never depends on the order
of files on disk. Edges are stored both ways as tuples of indices.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from odibi.errors import CycleError
from odibi.ids import NodeId
from odibi.pickling import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True)
class Graph:
    names: tuple[NodeId, ...]  # topological order
    index: Mapping[NodeId, int]
    parents: tuple[tuple[int, ...], ...]  # indices, each sorted
    children: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    def upstream(self, name: NodeId) -> tuple[NodeId, ...]:
        return tuple(self.names[i] for i in self.parents[self.index[name]])

    def downstream(self, name: NodeId) -> tuple[NodeId, ...]:
        return tuple(self.names[i] for i in self.children[self.index[name]])

    def ordered(self, names: Iterable[NodeId]) -> list[NodeId]:
        """`names` in topological order."""
        return [self.names[i] for i in sorted(self.index[n] for n in names)]


def build_graph(deps: Mapping[NodeId, Iterable[NodeId]]) -> Graph:
    """`deps` maps every node to its dependencies (all of which must be keys).
    Raises CycleError with the cycle as a path."""
    names = sorted(deps)
    pos = {n: i for i, n in enumerate(names)}
    parents_of = [sorted({pos[d] for d in deps[n]}) for n in names]
    children_of: list[list[int]] = [[] for _ in names]
    for i, ps in enumerate(parents_of):
        for p in ps:
            children_of[p].append(i)
    indegree = [len(ps) for ps in parents_of]
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in children_of[i]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(names):
        raise CycleError(tuple(names[i] for i in _find_cycle(parents_of, indegree)))
    new = {old: k for k, old in enumerate(order)}
    return Graph(
        names=tuple(NodeId(names[i]) for i in order),
        index={NodeId(names[i]): k for k, i in enumerate(order)},
        parents=tuple(tuple(sorted(new[p] for p in parents_of[i])) for i in order),
        children=tuple(tuple(sorted(new[c] for c in children_of[i])) for i in order),
    )


def _find_cycle(parents_of: list[list[int]], indegree: list[int]) -> list[int]:
    """A cycle among the nodes Kahn's algorithm could not order, as a path a -> ... -> a
    following dependency order (each node is a dependency of the next)."""
    stuck = {i for i, d in enumerate(indegree) if d > 0}
    start = min(stuck)
    # walk backwards along parents that are stuck until a node repeats
    path: list[int] = []
    seen: dict[int, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(p for p in parents_of[node] if p in stuck)
    cycle = path[seen[node]:] + [node]
    cycle.reverse()  # dependency first: a -> b means b depends on a
    return cycle


def ancestors(graph: Graph, start: Iterable[int], depth: int | None = None) -> set[int]:
    """Indices reachable upstream from `start` within `depth` steps (excluding start
    unless reached again)."""
    return _reach(graph.parents, start, depth)


def descendants(graph: Graph, start: Iterable[int], depth: int | None = None) -> set[int]:
    return _reach(graph.children, start, depth)


def _reach(edges: tuple[tuple[int, ...], ...], start: Iterable[int], depth: int | None) -> set[int]:
    seen: set[int] = set()
    frontier = list(start)
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        nxt: list[int] = []
        for i in frontier:
            for j in edges[i]:
                if j not in seen:
                    seen.add(j)
                    nxt.append(j)
        frontier = nxt
    return seen
