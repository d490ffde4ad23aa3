"""Opening a project for the commands that plan: load, check, fingerprint, select."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odibi.builder import Prepared, load, open_state, prepare
from odibi.buildlock import BuildLock
from odibi.cli.common import choose, state_hook
from odibi.cli.options import ProjectOptions, Selection
from odibi.cli.render import Out
from odibi.config.load import VarOverride
from odibi.errors import Span
from odibi.fingerprint import check_sources
from odibi.ids import NodeId
from odibi.state import State, state_dir


def plan_overrides(saved_vars: Mapping[str, Any]) -> tuple[VarOverride, ...]:
    """A saved plan's variables, as the --var overrides it was made with."""
    return tuple(VarOverride(k, v, Span("<plan>", 1, 1)) for k, v in saved_vars.items())


def _state_hook(prepared: Prepared, out: Out) -> Any:
    return state_hook(prepared.resolved, out, own=prepared.own)


def selection(prepared: Prepared, chosen: Selection, out: Out
              ) -> tuple[list[NodeId], frozenset[NodeId]]:
    """(the targets, in build order; the nodes --exclude leaves out of the build)."""
    return choose(prepared.resolved, chosen, out, state=_state_hook(prepared, out))


def forced(prepared: Prepared, force: str | None, out: Out,
           names: list[NodeId]) -> frozenset[NodeId]:
    """--force: the selected nodes (not the ancestors a build brings up to date with
    them: --force=+X forces those too), or those of --force=SELECTOR."""
    if force is None:
        return frozenset()
    if force == "*":
        return frozenset(names)
    from odibi.cli.common import select_index
    from odibi.select import parse_selector, select

    s = select(parse_selector(force), select_index(prepared.resolved, _state_hook(prepared, out)))
    return s.nodes


def open_prepared(project: ProjectOptions, out: Out, *, writable: bool, wait: bool = True,
                  command: str = "build") -> tuple[State, Prepared, BuildLock | None]:
    """Load, check and fingerprint the project. A build (writable) creates `.odibi/` only
    once the project has been found valid, so a mistake writes nothing; it then takes the
    project's build lock (waiting for another build, or failing when not `wait`) before it
    reads the state it will change. Read-only commands never wait."""
    root = project.root
    fresh = writable and not state_dir(root, project.build_target).is_dir()
    state = open_state(root, writable=writable and not fresh, target=project.build_target)
    if fresh:
        state.hold_caches()
    lock = None
    try:
        resolved = load(root, list(project.overrides), state, project.build_target)
        check_sources(resolved)
        if writable:
            lock = BuildLock(state_dir(root, project.build_target), command)
            lock.acquire(wait=wait,
                         on_wait=lambda who: out.warning(f"waiting for another build ({who})"))
        if fresh:  # valid: now create .odibi/, with the parses this load made
            held = state.held()
            state.close()
            state = open_state(root, writable=True, target=project.build_target)
            state.replay(held)
        prepared = prepare(resolved, state)
    except BaseException:
        state.close()
        if lock is not None:
            lock.release()
        raise
    for w in prepared.warnings:
        out.warning(w)
    return state, prepared, lock
