"""Which halting checks guard which exports (write, audit, publish).

A node's `write:` waits for every check with `on_fail: halt` that reads the node, directly
or through other nodes, unless the check also reads a read node that reads that very
export: such a check audits the file itself, which must be written first (waiting for it
would be a cycle). The planner asks only for nodes whose exports a build will write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from odibi.config.model import ReadSpec
from odibi.graph import ancestors
from odibi.ids import NodeId, OnFail
from odibi.resolve import Resolved


class ExportGuards(Mapping[NodeId, tuple[NodeId, ...]]):
    """Node with a `write:` -> the halting checks its exports wait for (`export_guards`),
    worked out on first use: a build that exports nothing never asks."""

    def __init__(self, resolved: Resolved) -> None:
        self.resolved = resolved
        self._found: dict[NodeId, tuple[NodeId, ...]] | None = None

    def _all(self) -> dict[NodeId, tuple[NodeId, ...]]:
        if self._found is None:
            self._found = export_guards(self.resolved)
        return self._found

    def __getitem__(self, name: NodeId) -> tuple[NodeId, ...]:
        return self._all()[name]

    def __iter__(self) -> Iterator[NodeId]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def export_guards(resolved: Resolved) -> dict[NodeId, tuple[NodeId, ...]]:
    """One walk upstream from each halting check; guards in name order. A check guards
    each writer among its ancestors, unless a read of that writer's export is among them
    too (a reconciliation of the node with its file: it needs the file written)."""
    project, graph = resolved.project, resolved.graph
    out: dict[NodeId, list[NodeId]] = {}
    for name in sorted(project.checks):
        if project.checks[name].on_fail is not OnFail.HALT:
            continue
        seen = ancestors(graph, [graph.index[name]])
        for i in sorted(seen):  # (in build order)
            u = graph.names[i]
            node = project.nodes.get(u)
            if node is not None and node.writes and not any(
                    graph.index[r] in seen and isinstance(project.nodes[r].producer, ReadSpec)
                    for r in graph.downstream(u) if r in project.nodes):
                out.setdefault(u, []).append(name)
    return {n: tuple(g) for n, g in out.items()}
