"""Garbage collection of stored output versions (`odibi gc`).

Every build keeps the outputs it replaces (content-addressed by fingerprint) so that a
revert is a restore. `collect` drops what nothing points at any more: versions other than
each node's current one (keeping the `keep` most recent per node), everything of nodes no
longer in the project, and stored versions no record knows (left by a crash).

Order, for crash safety: the version records are forgotten first, then the versions are
dropped in one warehouse operation (`Engine.drop`). A crash in between leaves versions no
record points at (dropped by the next gc), never a record pointing at a missing version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from odibi.engines.base import Engine
from odibi.ids import NodeId, OutputRef
from odibi.state import State


@dataclass(frozen=True, slots=True)
class Collected:
    tables: tuple[str, ...]  # stored versions dropped, as the engine names them
    versions: int  # version records forgotten
    views: tuple[NodeId, ...]  # views of nodes no longer in the project
    freed_bytes: int  # warehouse blocks freed (reused by later builds)
    kept: int  # stored versions kept


def collect(state: State, engine: Engine, nodes: Iterable[NodeId], keep: int = 0,
            dry_run: bool = False) -> Collected:
    names = set(nodes)
    traces = state.records.traces()
    current = {t.stored for n, t in traces.items() if n in names}
    by_node: dict[NodeId, list[tuple[float, str, OutputRef | None]]] = defaultdict(list)
    for node, fp, table, built in state.records.versions():
        by_node[node].append((built, fp, table))
    keep_tables = set(current)
    forget: list[tuple[str, str]] = []
    for node, versions in by_node.items():
        versions.sort(reverse=True)  # newest first
        if node in names:
            # what a version is kept by: its stored output, or for a check (none, only a
            # recorded verdict) its fingerprint
            now = traces.get(node)
            now_key = (now.stored or now.fingerprint) if now else None
            older = list(dict.fromkeys(t or fp for _, fp, t in versions
                                       if (t or fp) != now_key))
            kept = {now_key, *older[:keep]}
            forget += [(node, fp) for _, fp, t in versions if (t or fp) not in kept]
            keep_tables |= {t for _, fp, t in versions if t and t in kept}
        else:
            forget += [(node, fp) for _, fp, _ in versions]
    catalog = engine.catalog()
    drop = sorted(t for t in catalog.stored if t not in keep_tables)
    gone_views = tuple(sorted(v for v in catalog.current if v not in names))
    dropped = tuple(sorted(engine.name_of(t) for t in drop))
    kept = len(catalog.stored) - len(drop)
    if dry_run:
        return Collected(dropped, len(forget), gone_views, 0, kept)
    before = engine.used_bytes()
    state.records.forget_versions(forget)
    state.records.forget([n for n in traces if n not in names])
    engine.drop(drop, gone_views)
    after = engine.used_bytes()
    return Collected(dropped, len(forget), gone_views, max(0, before - after), kept)
