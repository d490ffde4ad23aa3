"""`odibi explain` and `odibi show`: read-only, they never wait for a running build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odibi.builder import Prepared, load, make_plan, open_state
from odibi.cli.opening import open_prepared, selection
from odibi.cli.options import ProjectOptions, Selection
from odibi.cli.render import Out, escape
from odibi.errors import UnknownNodeError, did_you_mean
from odibi.ids import ExitCode, NodeId
from odibi.planner import Plan, PlannedStep, Reason, Status, root_cause
from odibi.warehouse import built_outputs


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    project: ProjectOptions
    selection: Selection  # with --only; no --force


@dataclass(frozen=True, slots=True)
class ShowOptions:
    project: ProjectOptions
    node: NodeId
    limit: int = 10  # 0 or more


# -- explain ---------------------------------------------------------------------------------
def cmd_explain(opts: ExplainOptions, out: Out) -> int:
    state, prepared, _ = open_prepared(opts.project, out, writable=False)
    try:
        only = opts.selection.only
        names, excluded = selection(prepared, opts.selection, out)
        p = make_plan(prepared, frozenset(names), only=only, excluded=excluded)
        warn_left_out(out, p, only=only)
        chosen = bool(opts.selection.selectors)
        return print_plan(out, p, prepared, dry_run=False, all_nodes=chosen)
    finally:
        state.close()


def warn_left_out(out: Out, p: Plan, *, only: bool) -> None:
    """--only, --exclude: name every out-of-date ancestor the build reads as it is."""
    how = "left out by --only" if only else "excluded"
    for n in p.stale_unselected:
        out.warning(f"{n} is out of date but {how}; what reads it is built from its last "
                    "output")


def print_plan(out: Out, p: Plan, prepared: Prepared, *, dry_run: bool,
               all_nodes: bool = False) -> int:
    """Each step that runs, and with `all_nodes` (a selection) every target too, with its
    reasons; then the counts. Up-to-date ancestors of the targets are only counted."""
    graph = prepared.resolved.graph
    if out.json_mode:
        out.json({"nodes": [_step_json(s, p, graph) for s in p.steps],
                  "targets": sorted(p.targets), "stale_unselected": list(p.stale_unselected)})
        return ExitCode.OK
    shown = [s for s in p.steps if (all_nodes and s.node in p.targets) or out.verbose
             or s.status is not Status.UP_TO_DATE or s.notes]
    width = max((len(s.node) for s in shown), default=0)
    for s in shown:
        _print_step(out, s, p, graph, width, detail=not dry_run or out.verbose > 0)
    out.line(_counts(p, dry_run))
    return ExitCode.OK


def _counts(p: Plan, dry_run: bool) -> str:
    """`3 to run, 7 to restore, 12 up to date` (a dry run: `3 would run, ...`)."""
    runs = p.to_run()
    maybe = sum(1 for s in runs if s.reasons and all(
        r.reason is Reason.UPSTREAM_RERUN for r in s.reasons))
    restores = p.count(Status.RESTORE)
    parts = [f"{len(runs) - maybe - restores} {'would run' if dry_run else 'to run'}"]
    if maybe:
        parts[0] += f", {maybe} more if their upstream output changes"
    if restores:
        parts.append(f"{restores} {'would be restored' if dry_run else 'to restore'}")
    parts.append(f"{p.count(Status.UP_TO_DATE)} up to date")
    if p.count(Status.BLOCKED):
        parts.append(f"{p.count(Status.BLOCKED)} blocked")
    return ", ".join(parts)


def _print_step(out: Out, s: PlannedStep, p: Plan, graph: Any, width: int, *, detail: bool) -> None:
    style = {"up-to-date": "green", "blocked": "yellow"}.get(s.status.value, "bold cyan")
    head = s.headline or (s.notes[0].summary() if s.notes else "")
    out.markup(f"[bold]{s.node:<{width}}[/]  [{style}]{s.status.value}[/]"
               + (f": {escape(head)}" if head else ""))
    pad = "    "
    evidence = [*s.reasons, *s.notes] if detail else []
    for i, r in enumerate(evidence):
        if i:  # the first is on the headline
            out.line(f"{pad}also: {r.summary()}")
        if r.diff:
            for line in r.diff.splitlines():
                style_ = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                out.line(f"{pad}  {line}", style=style_)
        if r.reason is Reason.UPSTREAM_REBUILT:
            chain = root_cause(p, s.node, graph)
            if len(chain) > 1:
                path = " <- ".join(n for n, _ in chain)
                out.line(f"{pad}  {path} <- {chain[-1][1].summary()}", style="dim")
    if s.export_waits:
        out.line(f"{pad}export waits for: {', '.join(s.export_waits)}")


def _step_json(s: PlannedStep, p: Plan, graph: Any) -> dict[str, Any]:
    def reason(r: Any) -> dict[str, Any]:
        d = {"reason": r.reason.value, "summary": r.summary()}
        for k in ("subject", "old", "new", "diff"):
            v = getattr(r, k)
            if v:
                d[k] = v
        return d
    chain = root_cause(p, s.node, graph) if any(
        r.reason is Reason.UPSTREAM_REBUILT for r in s.reasons) else []
    return {"node": s.node, "kind": s.kind.value, "status": s.status.value,
            "reasons": [reason(r) for r in s.reasons], "notes": [reason(r) for r in s.notes],
            "fingerprint": s.fingerprint, "target": s.node in p.targets,
            "export_waits": list(s.export_waits),
            "root_cause": [{"node": n, "reason": r.summary()} for n, r in chain]}


# -- show ------------------------------------------------------------------------------------
def cmd_show(opts: ShowOptions, out: Out) -> int:
    root = opts.project.root
    state = open_state(root, writable=False, target=opts.project.build_target)
    name = opts.node
    try:
        resolved = load(root, list(opts.project.overrides), state, opts.project.build_target)
        trace = state.records.traces([name]).get(name)
    finally:
        state.close()
    if name not in resolved.project.nodes:
        raise UnknownNodeError(f"no node named '{name}'",
                               hint=did_you_mean(name, resolved.project.nodes))
    traces = {name: trace} if trace is not None else {}
    with built_outputs(resolved, traces, [name]) as (engine, tables):
        columns, rows, total = engine.preview(tables[name], opts.limit)
    if out.json_mode:
        out.json({"node": name, "rows": total, "columns": columns,
                  "data": [dict(zip(columns, r)) for r in rows]})
        return ExitCode.OK
    out.table(columns, [["" if v is None else str(v) for v in r] for r in rows],
              title=f"{name}: {total:,} rows" + (f" (first {len(rows)})" if total > len(rows) else ""))
    return ExitCode.OK
