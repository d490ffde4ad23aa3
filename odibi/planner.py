"""The rebuilder: (graph, own parts, state, selection, options) -> Plan. Pure.

`plan()` decides *whether* each node runs and why; the executor decides *when*. The same
frozen `Plan` feeds `odibi build`, `build -n`, `explain` and `plan -o`.

A selection names *targets*, and building a target brings it up to date (Make, Bazel):
the plan considers the targets, all their ancestors, and the halting checks that guard
the exports it will write (with their ancestors); of those, exactly the ones that are not
up to date run. With `only` (dbt's habit) just the selected nodes are considered;
excluded nodes never are. Every out-of-date ancestor read as it is gets named
(`stale_unselected`).

Fingerprints are chained here, in build order, because a node's fingerprint depends on
the fingerprints its upstream outputs will have when it runs: for an upstream that is
considered (or already up to date) that is its current fingerprint; for an out-of-date
upstream left out by `only` it is the fingerprint of the output still in the warehouse,
so the node is recorded as built from what it really read.

Exports wait for their guards (`odibi.guards`): a node's `write:` is held until every
halting check that reads the node, directly or through other nodes, has passed in this
build (`PlannedStep.export_waits`).

Each decision carries its reasons with their evidence; the vocabulary and how a change is
worded live in `odibi.reasons` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from odibi.fingerprint import OwnParts, chain
from odibi.graph import Graph, ancestors, descendants
from odibi.ids import Digest, NodeId, NodeKind, Status
from odibi.reasons import (Reason, ReasonDetail, as_before, explain_changes, reformatted,
                           what_changed)
from odibi.trace import Trace

__all__ = ["OutputCheck", "Plan", "PlanInputs", "PlanOptions", "PlannedStep", "Reason",
           "ReasonDetail", "Status", "explain_changes", "plan", "root_cause"]


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """What the orchestrator found of a built node's outputs (I/O done before planning)."""

    output_missing: bool = False  # its stored version is gone from the warehouse
    not_current: bool = False  # the version is there; the node's name names another one
    exports_missing: tuple[str, ...] = ()
    exports_modified: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanOptions:
    selection: frozenset[NodeId]  # the targets (every node: the whole project)
    forced: frozenset[NodeId] = frozenset()
    only: bool = False  # run just the selection, from its upstreams' last outputs
    excluded: frozenset[NodeId] = frozenset()  # never run; read as they are


@dataclass(frozen=True, slots=True)
class PlannedStep:
    node: NodeId
    kind: NodeKind
    status: Status
    reasons: tuple[ReasonDetail, ...]
    fingerprint: Digest  # what this build records for the node
    upstream: Mapping[NodeId, Digest]  # the upstream fingerprints it is chained with
    own: OwnParts
    notes: tuple[ReasonDetail, ...] = ()  # said but not acted on (reformatted only)
    # the halting checks its exports wait for (they run in this build, or cannot, and so
    # hold the exports back); () when it exports nothing or nothing guards it
    export_waits: tuple[NodeId, ...] = ()

    @property
    def headline(self) -> str:
        return self.reasons[0].summary() if self.reasons else ""


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[PlannedStep, ...]  # the nodes considered, in build order
    stale_unselected: tuple[NodeId, ...] = ()  # out-of-date ancestors left out (only, exclude)
    by_name: Mapping[NodeId, PlannedStep] = field(default_factory=dict)
    targets: frozenset[NodeId] = frozenset()  # what was selected (the rest: what it needs)

    def to_run(self) -> tuple[PlannedStep, ...]:
        return tuple(s for s in self.steps if s.status.runs)

    def needs_engine(self) -> bool:
        """Whether any step touches data."""
        return any(s.status.runs for s in self.steps)

    def count(self, status: Status) -> int:
        return sum(1 for s in self.steps if s.status is status)


@dataclass(frozen=True, slots=True)
class PlanInputs:
    graph: Graph
    own: Mapping[NodeId, OwnParts]  # every node of the graph
    traces: Mapping[NodeId, Trace]  # last successful build, per node
    failures: Mapping[NodeId, Digest]  # fingerprint of the last failed attempt
    outputs: Mapping[NodeId, OutputCheck]  # for nodes with a trace
    always_run: frozenset[NodeId] = frozenset()
    source_names: Mapping[str, str] = field(default_factory=dict)  # "conn:path" -> display
    # earlier outputs still in the warehouse, by (node, fingerprint): a node whose new
    # fingerprint is one of them is restored, not recomputed (looked up lazily)
    stored: Mapping[tuple[NodeId, Digest], Trace] = field(default_factory=dict)
    # node with a `write:` -> the halting checks that guard its exports
    guards: Mapping[NodeId, tuple[NodeId, ...]] = field(default_factory=dict)


_EXPORTING = (Status.REBUILD, Status.RESTORE, Status.REEXPORT)


def plan(inputs: PlanInputs, options: PlanOptions) -> Plan:
    """The plan for `options.selection`: of the targets and their ancestors (with `only`,
    of exactly the targets), and of the checks that guard the exports this plan writes,
    with what lies between the exporting node and its check (and, unless `only`, the
    check's other ancestors). Excluded nodes are never considered, nor is anything only
    they lead to. Grown until no new guard is needed: each round only adds nodes, so it
    ends."""
    considered = options.selection - options.excluded
    while True:
        if not options.only:
            considered = _with_ancestors(inputs.graph, considered, options.excluded)
        p = _plan(inputs, considered, options.forced, options.selection)
        needed = _guards_needed(inputs, p, options.only) - options.excluded
        if needed <= considered:
            return p
        considered = considered | needed


def _guards_needed(inputs: PlanInputs, p: Plan, only: bool) -> set[NodeId]:
    """The guards of the exports `p` writes; with `only`, also the nodes through which a
    guard reads the exporting node (it must see the new output, not a stale one)."""
    graph = inputs.graph
    needed: set[NodeId] = set()
    for s in p.steps:
        if s.status not in _EXPORTING:
            continue
        mine = inputs.guards.get(s.node, ())
        needed.update(mine)
        if only and mine:
            below = descendants(graph, [graph.index[s.node]])
            above = ancestors(graph, [graph.index[c] for c in mine])
            needed.update(graph.names[i] for i in below & above)
    return needed


def _with_ancestors(graph: Graph, names: frozenset[NodeId],
                    excluded: frozenset[NodeId] = frozenset()) -> frozenset[NodeId]:
    """`names` and their ancestors, not going past an excluded node."""
    if len(names) >= len(graph.names):
        return names
    if not excluded:
        found = ancestors(graph, [graph.index[n] for n in names])
        return names | {graph.names[i] for i in found}
    seen, stack = set(names), list(names)
    while stack:
        for u in graph.upstream(stack.pop()):
            if u not in seen and u not in excluded:
                seen.add(u)
                stack.append(u)
    return frozenset(seen)


def _plan(inputs: PlanInputs, selection: frozenset[NodeId], forced: frozenset[NodeId],
          targets: frozenset[NodeId]) -> Plan:
    graph = inputs.graph
    effective: dict[NodeId, Digest | None] = {}
    steps: list[PlannedStep] = []
    stale: set[NodeId] = set()  # left out, and not up to date
    statuses: dict[NodeId, Status] = {}
    for name in graph.names:
        own = inputs.own.get(name)
        if own is None:  # a check: nothing depends on it, it is planned with the rules
            continue
        ups = graph.upstream(name)
        missing = [u for u in ups if effective[u] is None]
        upstream = {u: d for u in ups if (d := effective[u]) is not None}
        fp = chain(own.digest, upstream)
        trace = inputs.traces.get(name)
        if name not in selection:
            current = (trace is not None and trace.fingerprint == fp and not missing
                       and not inputs.outputs.get(name, OutputCheck()).output_missing)
            effective[name] = fp if current else (trace.fingerprint if trace else None)
            if not current:
                stale.add(name)
            continue
        held = _held_files(own, ups, selection, inputs.traces)
        if missing or held:
            step = PlannedStep(name, own.kind, Status.BLOCKED,
                               tuple(ReasonDetail(Reason.UPSTREAM_NOT_BUILT, u) for u in missing)
                               + tuple(ReasonDetail(Reason.EXPORT_HELD, u) for u in held),
                               fp, upstream, own)
            effective[name] = None
        else:
            step = _decide(name, own, fp, upstream, trace, inputs, forced, statuses)
            effective[name] = fp
        statuses[name] = step.status
        steps.append(step)
    steps = _with_export_waits(steps, inputs.guards, statuses, stale)
    left_out: tuple[NodeId, ...] = ()
    if stale:  # (the targets' ancestors are considered, but for those excluded)
        read = ancestors(graph, [graph.index[n] for n in selection])
        left_out = tuple(n for n in graph.names if n in stale and graph.index[n] in read
                         and n in inputs.traces)
    return Plan(tuple(steps), left_out, {s.node: s for s in steps}, targets)


def _held_files(own: OwnParts, ups: tuple[NodeId, ...], selection: frozenset[NodeId],
                traces: Mapping[NodeId, Trace]) -> list[NodeId]:
    """For a read node: the upstream nodes left out of this build whose exports (which it
    may read) are held back: the files are older than their nodes' records say."""
    if own.kind is not NodeKind.READ:
        return []
    return [u for u in ups if u not in selection and (t := traces.get(u)) is not None and t.held]


def _with_export_waits(steps: list[PlannedStep], guards: Mapping[NodeId, tuple[NodeId, ...]],
                       statuses: Mapping[NodeId, Status], stale: set[NodeId]
                       ) -> list[PlannedStep]:
    """Each step that writes exports learns the guards it must wait for: those not up to
    date (they run in this build, or cannot: then they hold the exports back)."""
    if not any(s.status in _EXPORTING for s in steps) or not guards:
        return steps
    out = []
    for s in steps:
        mine = guards.get(s.node, ())
        if mine and s.status in _EXPORTING:
            waits = tuple(c for c in mine if statuses.get(c, Status.UP_TO_DATE)
                          is not Status.UP_TO_DATE or (c not in statuses and c in stale))
            if waits:
                s = replace(s, export_waits=waits)
        out.append(s)
    return out


def _decide(name: NodeId, own: OwnParts, fp: Digest, upstream: Mapping[NodeId, Digest],
            trace: Trace | None, inputs: PlanInputs, forced: frozenset[NodeId],
            statuses: Mapping[NodeId, Status]) -> PlannedStep:
    def step(status: Status, reasons: list[ReasonDetail],
             notes: tuple[ReasonDetail, ...] = ()) -> PlannedStep:
        return PlannedStep(name, own.kind, status, tuple(reasons), fp, upstream, own, notes)

    lead: list[ReasonDetail] = []
    if name in forced:
        lead.append(ReasonDetail(Reason.FORCED))
    if name in inputs.always_run:
        lead.append(ReasonDetail(Reason.ALWAYS_RUN))
    if inputs.failures.get(name) == fp:
        lead.append(ReasonDetail(Reason.LAST_BUILD_FAILED))
    if trace is None or trace.fingerprint != fp:
        changes = (what_changed(own, upstream, trace, inputs.source_names, statuses)
                   if trace is not None else [ReasonDetail(Reason.NEW)])
        stored = inputs.stored.get((name, fp)) if not lead else None
        if stored is not None:  # a revert: it reads as one
            return step(Status.RESTORE, [as_before(changes)] + changes)
        return step(Status.REBUILD, lead + changes)
    check = inputs.outputs.get(name, OutputCheck())
    if check.output_missing:
        return step(Status.REBUILD, lead + [ReasonDetail(Reason.OUTPUT_MISSING, "table")])
    if check.not_current and not lead and (name, fp) in inputs.stored:
        return step(Status.RESTORE, [ReasonDetail(Reason.OUTPUT_MISSING, "view"),
                                     ReasonDetail(Reason.STORED, "its table is still stored")])
    if lead:
        return step(Status.REBUILD, lead)
    notes = reformatted(own, trace)
    if trace.note:
        notes += (ReasonDetail(Reason.LAST_WARNING, trace.note),)
    moved = _upstream_outputs(name, upstream, trace, inputs, statuses)
    if moved:
        return step(Status.REBUILD, moved, notes)
    export = [ReasonDetail(Reason.OUTPUT_MISSING, p) for p in check.exports_missing]
    export += [ReasonDetail(Reason.OUTPUT_MODIFIED, p) for p in check.exports_modified]
    if trace.held:
        export.insert(0, ReasonDetail(Reason.EXPORT_HELD, ", ".join(trace.held)))
    if trace.write_key != own.write_key:
        export.insert(0, ReasonDetail(Reason.WRITE_CHANGED))
    recheck = []
    if trace.contracts_key != own.contracts_key:
        recheck.append(ReasonDetail(Reason.CONTRACTS_CHANGED))
    if trace.validate_key != own.validate_key:
        recheck.append(ReasonDetail(Reason.VALIDATE_CHANGED))
    if export:  # (a re-export runs changed rules first: nothing unchecked leaves)
        return step(Status.REEXPORT, export + recheck, notes)
    if recheck:
        return step(Status.REVALIDATE, recheck, notes)
    return step(Status.UP_TO_DATE, [], notes)


def _upstream_outputs(name: NodeId, upstream: Mapping[NodeId, Digest], trace: Trace,
                      inputs: PlanInputs, statuses: Mapping[NodeId, Status]
                      ) -> list[ReasonDetail]:
    """A node whose fingerprint is unchanged still runs when an upstream output it read is
    not the one there now (an `always_run` node rebuilt since, say), or may not be after
    this build: an upstream that reruns with the same fingerprint (forced, always_run,
    output missing). Such a run is cut off at once if the upstream output comes out as
    it was."""
    out = []
    old_up = trace.parts.upstream
    for u in upstream:
        then = trace.inputs.get(u)
        now = inputs.traces[u].output if u in inputs.traces else None
        if statuses.get(u) is Status.RESTORE:  # what it will hold: the restored version
            restored = inputs.stored.get((u, upstream[u]))
            now = restored.output if restored is not None else now
        if then is not None and now is not None and then != now:
            out.append(ReasonDetail(Reason.UPSTREAM_OUTPUT_CHANGED, u, nodes=(u,)))
        elif statuses.get(u) is Status.REBUILD and old_up.get(u) == upstream[u]:
            out.append(ReasonDetail(Reason.UPSTREAM_RERUN, u, nodes=(u,)))
    return out


def root_cause(p: Plan, name: NodeId, graph: Graph) -> list[tuple[NodeId, ReasonDetail]]:
    """Follow upstream reasons back to the first node that runs for its own reasons:
    [(clean_orders, upstream rebuilt: raw_orders), (raw_orders, source changed: ...)]."""
    del graph  # the reasons name their upstream nodes
    chain_: list[tuple[NodeId, ReasonDetail]] = []
    seen: set[NodeId] = set()
    current: NodeId | None = name
    while current is not None and current not in seen:
        seen.add(current)
        step = p.by_name.get(current)
        if step is None or not step.reasons:
            break
        own = [r for r in step.reasons if not r.nodes]
        if own:
            chain_.append((current, own[0]))
            break
        first = step.reasons[0]
        chain_.append((current, first))
        current = first.nodes[0] if first.nodes else None
    return chain_
