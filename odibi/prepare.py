"""Preparing a build: every node's fingerprint parts, and what the last builds left behind
(their records, their failures, the outputs and exported files as they are now), as one
frozen `Prepared` value that planning and running read.

Cheap when nothing changed: sources are hashed only when their stat changed, exported
files likewise, and the warehouse is looked into only when it changed since odibi last
closed it (`odibi.warehouse.inspect`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from odibi.fingerprint import (FileDigests, OwnParts, chain, export_changed, exported_paths,
                               own_parts)
from odibi.ids import Digest, NodeId, OutputRef
from odibi.lockfile import lock_name, read_entries
from odibi.paths import shown
from odibi.planner import OutputCheck
from odibi.resolve import Resolved
from odibi.state import State, Trace
from odibi.warehouse import Inspection, inspect


@dataclass(frozen=True, slots=True)
class Prepared:
    resolved: Resolved
    own: Mapping[NodeId, OwnParts]
    traces: Mapping[NodeId, Trace]
    failures: Mapping[NodeId, Digest]
    outputs: Mapping[NodeId, OutputCheck]  # nodes whose recorded outputs are not as built
    warnings: tuple[str, ...]
    restamped: Mapping[NodeId, Trace] = field(default_factory=dict)  # exports touched, same bytes
    stored: Mapping[tuple[NodeId, Digest], Trace] = field(default_factory=dict)


def prepare(resolved: Resolved, state: State) -> Prepared:
    """Fingerprint every node and look at what the last builds left behind."""
    own, files = fingerprint_all(resolved, state)
    traces = state.records.traces()
    seen = inspect(resolved, traces, state)
    outputs, restamped = _check_exports(resolved, traces, files, seen)
    failures = {n: f for n, (f, _) in state.records.failures().items()}
    return Prepared(resolved, own, traces, failures, outputs,
                    (*state.warnings, *seen.warnings), restamped,
                    StoredVersions(state, seen.stored))


def fingerprint_all(resolved: Resolved, state: State) -> tuple[dict[NodeId, OwnParts],
                                                                 FileDigests]:
    """Every node's own fingerprint parts (source files hashed only when their stat changed).
    Callers that need every source to exist call `check_sources` first."""
    files = FileDigests(state.caches.file_stamps())
    exported = exported_paths(resolved)
    own = {n: own_parts(resolved, n, files, exported) for n in resolved.graph.names}
    if files.changed:
        state.caches.put_file_stamps(files.changed)
    return own, files


class StoredVersions(Mapping[tuple[NodeId, Digest], Trace]):
    """Earlier outputs still in the warehouse, looked up one (node, fingerprint) at a time:
    only nodes about to be rebuilt are asked about. When the warehouse was changed outside
    odibi, only versions its catalog still holds count."""

    def __init__(self, state: State, stored: frozenset[OutputRef] | None) -> None:
        self.state = state
        self.stored = stored
        self.cache: dict[tuple[NodeId, Digest], Trace | None] = {}

    def __getitem__(self, key: tuple[NodeId, Digest]) -> Trace:
        if key not in self.cache:
            trace = self.state.records.version(*key) if self.state.available else None
            if trace is not None and self.stored is not None and trace.stored not in self.stored:
                trace = None
            self.cache[key] = trace
        found = self.cache[key]
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[tuple[NodeId, Digest]]:
        return iter(k for k, v in self.cache.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for v in self.cache.values() if v is not None)


def _check_exports(resolved: Resolved, traces: Mapping[NodeId, Trace], files: FileDigests,
                   seen: Inspection
                   ) -> tuple[dict[NodeId, OutputCheck], dict[NodeId, Trace]]:
    """(the nodes whose outputs are not as recorded, the records of exports touched without
    their bytes changing, with their new stamps)."""
    root = resolved.project.root
    out: dict[NodeId, OutputCheck] = {}
    restamped: dict[NodeId, Trace] = {}
    for n in resolved.project.nodes:
        trace = traces.get(n)
        if trace is None:
            continue
        gone, changed, stamps = [], [], []
        for e in trace.exports:
            path = root / e.path  # relative to the root (absolute if outside it)
            status = export_changed(str(path), e.size, e.mtime_ns, e.digest, files)
            if status == "missing":
                gone.append(shown(path, root))
            elif status == "modified":
                changed.append(shown(path, root))
            elif isinstance(status, tuple):
                e = replace(e, size=status[0], mtime_ns=status[1])
            stamps.append(e)
        if tuple(stamps) != trace.exports:
            restamped[n] = replace(trace, exports=tuple(stamps))
        missing, not_current = n in seen.missing, n in seen.not_current
        if missing or not_current or gone or changed:
            out[n] = OutputCheck(missing, not_current, tuple(gone), tuple(changed))
    return out, restamped


def modified_since_lock(resolved: Resolved, own: Mapping[NodeId, OwnParts], which: str
                        ) -> tuple[frozenset[NodeId], str | None]:
    """`state:new`: nodes odibi.lock does not list. `state:modified`: those, and nodes whose
    own parts (logic, config, vars, sources) differ from what the lock recorded; a change
    upstream does not count (select `state:modified+` for what a change affects)."""
    project = resolved.project
    locked, problem = read_entries(project.root, lock_name(project.build_target.key))
    chosen = set()
    for n, parts in own.items():
        entry = locked.get(n)
        if entry is None:
            chosen.add(n)
        elif which == "modified" and chain(parts.digest, entry.upstream) != entry.fingerprint:
            chosen.add(n)
    return frozenset(chosen), problem


def source_display_names(prepared: Prepared) -> dict[str, str]:
    """"raw:orders.csv" -> "data/orders.csv" (paths as the user sees them)."""
    p = prepared.resolved.project
    roots = {c.name: shown(c.root, p.root) for c in p.connections.values()}
    names = {}
    for own in prepared.own.values():
        for key in own.sources:
            conn, _, rel = key.partition(":")
            names[key] = f"{roots.get(conn, conn)}/{rel}"
    return names
