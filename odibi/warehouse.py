"""The project's warehouse as the commands see it: opening its engine, inspecting what it
holds against the build records, reading built outputs, and applying deferred restores.

No engine is named here (`odibi.engines.open_engine` picks it), and nothing is imported
or connected unless the warehouse must be looked into: `inspect` compares the engine's
`stamp()` (file stamps) with the one recorded when odibi last closed it, and reads the
catalog only when they differ (someone changed it by hand, or it is gone).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from odibi.engines import open_engine, warehouse_stamp
from odibi.engines.base import (Catalog, Engine, EngineOptions, Relation, WarehouseDamaged,
                                WarehouseUnavailable)
from odibi.errors import UsageError
from odibi.ids import NodeId, OutputRef
from odibi.paths import shown
from odibi.resolve import Resolved
from odibi.state import State, Trace


def env_redactions(resolved: Resolved, environ: Mapping[str, str] = os.environ
                   ) -> dict[str, str]:
    """{value: '${env:NAME}'} for each environment variable a node uses, longest value
    first: error messages show the placeholder, never the value (DESIGN §1). Values shorter
    than 3 characters are left alone: replacing them would garble any message."""
    names = {n for node in resolved.project.nodes.values() for n in node.env_used}
    pairs = {environ[n]: f"${{env:{n}}}" for n in sorted(names)
             if len(environ.get(n, "")) >= 3}
    return dict(sorted(pairs.items(), key=lambda kv: -len(kv[0])))


def engine_for(resolved: Resolved, *, read_only: bool = False, lazy: bool = True,
               options: EngineOptions | None = None,
               on_open: Callable[[Engine], None] | None = None) -> Engine:
    """The project's engine, lazy by default (nothing imported or connected until it is
    used); its errors name no secret (`env_redactions`)."""
    project = resolved.project
    options = options or EngineOptions(python_path=project.python_path,
                                       redact=env_redactions(resolved))
    return open_engine(project.root, replace(options, read_only=read_only, lazy=lazy),
                       on_open, project.build_target, f"odibi {project.name}")


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the warehouse holds of the recorded outputs. `stored`: the versions it holds,
    when its catalog was read (None: it was not, because nothing changed it since odibi
    closed it, or another process holds it)."""

    missing: frozenset[NodeId] = frozenset()  # recorded, but its version is gone
    not_current: frozenset[NodeId] = frozenset()  # held, but the node names another one
    stored: frozenset[OutputRef] | None = None
    warnings: tuple[str, ...] = ()


def inspect(resolved: Resolved, traces: Mapping[NodeId, Trace], state: State) -> Inspection:
    """Compare the warehouse with the build records."""
    project = resolved.project
    built = [n for n in project.nodes if n in traces]
    stamp = warehouse_stamp(project.root, project.build_target)  # (imports no engine)
    if stamp is None:
        said: tuple[str, ...] = ()
        if built and state.meta("warehouse") is not None:
            said = (f"the warehouse {shown(_looking(resolved).where, project.root)} is "
                    f"missing: the "
                    f"{len(built)} nodes stored in it are rebuilt",)
        return Inspection(frozenset(built), frozenset(), frozenset(), said)
    if stamp == state.meta("warehouse"):
        return Inspection()
    catalog, said = _catalog(_looking(resolved), state.writable)
    if catalog is None:
        return Inspection(warnings=said)
    missing = frozenset(n for n in built if traces[n].stored not in catalog.stored)
    if missing and not said:  # (a damaged warehouse was reported already)
        some = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
        are = "outputs are" if len(missing) > 1 else "output is"
        said = (f"{len(missing)} stored {are} missing from the warehouse ({some}): rebuilt",)
    pending = state.records.pending_restores()  # made current when a build next opens it
    not_current = frozenset(n for n in built if n not in missing and n not in pending
                            and catalog.current.get(n) != traces[n].stored)
    return Inspection(missing, not_current, catalog.stored, said)


def _catalog(engine: Engine, writable: bool) -> tuple[Catalog | None, tuple[str, ...]]:
    """The warehouse's catalog, or None when another process holds it. A damaged
    warehouse holds nothing: a build moves it aside."""
    try:
        return engine.catalog(), ()
    except WarehouseDamaged as e:
        if not writable:
            return Catalog(frozenset(), {}), (
                f"the warehouse {engine.where.name} is not {e.kind}; treating its outputs "
                "as missing",)
        aside = engine.set_aside()
        return Catalog(frozenset(), {}), (
            f"the warehouse was not {e.kind}; moved it to {aside} and rebuilding what it "
            "held",)
    except WarehouseUnavailable:
        return None, ("the warehouse is in use by another process; assuming the outputs "
                      "odibi recorded are still there",)
    finally:
        engine.close()


@contextmanager
def built_outputs(resolved: Resolved, traces: Mapping[NodeId, Trace], names: Sequence[NodeId]
                  ) -> Iterator[tuple[Engine, dict[NodeId, Relation]]]:
    """The engine opened read-only, with what holds each node's current output: the
    version the build state points at (after a build that only restored, the warehouse
    catches up only when a build next opens it), else the node's current one. A node that
    was never built is a UsageError saying to build it; so is a busy warehouse."""
    engine = engine_for(resolved, read_only=True)
    if not engine.exists:
        raise UsageError(f"'{names[0]}' has not been built yet", hint=f"odibi build {names[0]}")
    try:
        engine.open()
    except WarehouseUnavailable:
        raise UsageError("the warehouse is in use by a running build; try again when it "
                         "finishes") from None
    try:
        catalog = engine.catalog()
        found: dict[NodeId, Relation] = {}
        for n in names:
            trace = traces.get(n)
            if trace is not None and trace.stored in catalog.stored:
                found[n] = trace.stored  # type: ignore[assignment]
            elif n in catalog.current:
                found[n] = n
            else:
                raise UsageError(f"'{n}' has not been built yet", hint=f"odibi build {n}")
        yield engine, found
    finally:
        engine.close()


def apply_deferred(state: State, engine: Engine) -> None:
    """Make current what the state says (the restores of a build that did not open the
    warehouse). Run as the warehouse opens, before any node reads a node by name."""
    pending = state.records.pending_restores()
    if not pending:
        return
    engine.restore({n: out for n, out in pending.items() if out is not None})
    state.records.restores_applied(pending)


def open_for_restores(resolved: Resolved, state: State) -> bool:
    """Open the warehouse only to apply deferred restores (nothing else to run), so that
    whoever reads it directly sees what odibi.lock says. False when it is busy (the next
    build that opens it applies them)."""
    try:
        engine = engine_for(resolved, lazy=False, on_open=lambda e: apply_deferred(state, e))
    except WarehouseUnavailable:
        return False
    engine.close()
    return True


def keep_stamp(resolved: Resolved, state: State) -> None:
    """Remember the warehouse as odibi leaves it (`inspect` then skips its catalog)."""
    state.set_meta("warehouse", warehouse_stamp(resolved.project.root,
                                                resolved.project.build_target))


def _looking(resolved: Resolved) -> Engine:
    """The engine, only to look at the warehouse (its stamp, its catalog): no user SQL
    runs, so no options are worked out (a no-op build pays for none)."""
    project = resolved.project
    return open_engine(project.root, EngineOptions(read_only=True, lazy=True), None,
                       project.build_target)

