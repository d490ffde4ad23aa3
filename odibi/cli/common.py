"""Steps most commands share: open the project, turn selector arguments into nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from odibi.cli.options import ProjectOptions, Selection
from odibi.cli.render import Out
from odibi.config.model import SqlSpec
from odibi.ids import NodeId
from odibi.resolve import Resolved

if TYPE_CHECKING:
    from odibi.select import SelectIndex


StateHook = Callable[[str], frozenset[NodeId]]


def open_project(project: ProjectOptions) -> Resolved:
    """Load and resolve the project, using the build state's caches when there is one."""
    from odibi.builder import load, open_state

    state = open_state(project.root, writable=False, target=project.build_target)
    try:
        return load(project.root, list(project.overrides), state, project.build_target)
    finally:
        state.close()


def select_index(resolved: Resolved, state: StateHook | None = None) -> SelectIndex:
    from odibi.select import SelectIndex

    p = resolved.project
    targets = {**{n: node for n, node in p.nodes.items()}, **{n: c for n, c in p.checks.items()}}
    return SelectIndex(
        graph=resolved.graph,
        tags={n: t.tags for n, t in targets.items()},
        pipeline={n: t.pipeline for n, t in targets.items()},
        path={n: t.file for n, t in targets.items()},
        kind={n: p.kind_of(n).value for n in targets},
        state=state,
        sql_path={n: node.producer.file for n, node in p.nodes.items()
                  if isinstance(node.producer, SqlSpec) and node.producer.file is not None},
    )


def state_hook(resolved: Resolved, out: Out, own: Mapping[NodeId, Any] | None = None
               ) -> StateHook:
    """`state:modified` / `state:new`, computed only if a selector asks for them."""
    def hook(which: str) -> frozenset[NodeId]:
        from odibi.builder import fingerprint_all, modified_since_lock, open_state

        parts = own
        if parts is None:
            state = open_state(resolved.project.root, writable=False,
                               target=resolved.project.build_target.key)
            try:
                parts = fingerprint_all(resolved, state)[0]
            finally:
                state.close()
        chosen, problem = modified_since_lock(resolved, parts, which)
        if problem:
            out.warning(f"odibi.lock is unreadable ({problem}); every node counts as {which}")
        return chosen
    return hook


def selected(resolved: Resolved, selection: Selection, out: Out,
             state: StateHook | None = None) -> list[NodeId]:
    """The nodes chosen by the SELECTOR arguments (positional or -s/--select) and
    --exclude, in build order."""
    return choose(resolved, selection, out, state)[0]


def choose(resolved: Resolved, selection: Selection, out: Out,
           state: StateHook | None = None) -> tuple[list[NodeId], frozenset[NodeId]]:
    """(the nodes chosen, in build order; the nodes --exclude names)."""
    texts = selection.selectors
    excludes = selection.exclude
    if not texts and not excludes:
        return list(resolved.graph.names), frozenset()  # everything: no selector parser
    from odibi.select import parse_selector, select

    index = select_index(resolved, state or state_hook(resolved, out))
    chosen: frozenset[NodeId] = frozenset(resolved.graph.names)
    if texts:
        s = select(parse_selector(" ".join(texts)), index)
        for t in s.empty_terms:
            out.warning(f"selector '{t}' matches no node")
        chosen = s.nodes
    excluded: frozenset[NodeId] = frozenset()
    for text in excludes:
        e = select(parse_selector(text), index)
        for t in e.empty_terms:
            out.warning(f"--exclude '{t}' matches no node")
        excluded = excluded | e.nodes
    return resolved.graph.ordered(chosen - excluded), excluded
