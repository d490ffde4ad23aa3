"""`odibi explain` and `odibi show`: read-only, they never wait for a running build."""

from __future__ import annotations

import argparse
from typing import Any

from odibi.builder import Prepared, built_outputs, load, make_plan, open_state
from odibi.cli.opening import open_prepared, overrides, selection
from odibi.cli.common import project_root
from odibi.cli.render import Out, escape
from odibi.errors import UnknownNodeError, UsageError, did_you_mean
from odibi.ids import ExitCode, NodeId
from odibi.planner import Plan, PlannedStep, Reason, Status, root_cause


# -- explain ---------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace, out: Out) -> int:
    state, prepared, _ = open_prepared(args, out, writable=False)
    try:
        names = selection(prepared, args, out)
        p = make_plan(prepared, frozenset(names))
        return print_plan(out, p, prepared, dry_run=False, all_nodes=bool(args.select))
    finally:
        state.close()


def print_plan(out: Out, p: Plan, prepared: Prepared, *, dry_run: bool,
                all_nodes: bool = False) -> int:
    graph = prepared.resolved.graph
    if out.json_mode:
        out.json({"nodes": [_step_json(s, p, graph) for s in p.steps],
                  "stale_unselected": list(p.stale_unselected)})
        return ExitCode.OK
    shown = [s for s in p.steps if all_nodes or out.verbose or s.status is not Status.UP_TO_DATE
             or s.notes]
    width = max((len(s.node) for s in shown), default=0)
    for s in shown:
        _print_step(out, s, p, graph, width, detail=not dry_run or out.verbose > 0)
    maybe = sum(1 for s in p.to_run() if s.reasons and all(
        r.reason is Reason.UPSTREAM_RERUN for r in s.reasons))
    run_count = len(p.to_run()) - maybe
    quiet = p.count(Status.UP_TO_DATE)
    verb = "would run" if dry_run else "to run"
    out.line(f"{run_count} {verb}"
             + (f", {maybe} more if their upstream output changes" if maybe else "")
             + f", {quiet} up to date"
             + (f", {p.count(Status.BLOCKED)} blocked" if p.count(Status.BLOCKED) else ""))
    return ExitCode.OK


def _print_step(out: Out, s: PlannedStep, p: Plan, graph: Any, width: int, *, detail: bool) -> None:
    style = {"up-to-date": "green", "blocked": "yellow"}.get(s.status.value, "bold cyan")
    head = s.headline or (s.notes[0].summary() if s.notes else "")
    out.markup(f"[bold]{s.node:<{width}}[/]  [{style}]{s.status.value}[/]"
               + (f": {escape(head)}" if head else ""))
    if not detail:
        return
    pad = "    "
    for i, r in enumerate(list(s.reasons) + list(s.notes)):
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
            "fingerprint": s.fingerprint,
            "root_cause": [{"node": n, "reason": r.summary()} for n, r in chain]}


# -- show ------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace, out: Out) -> int:
    root = project_root(args)
    state = open_state(root, writable=False)
    name = NodeId(args.node)
    try:
        resolved = load(root, overrides(args), state)
        trace = state.traces([name]).get(name)
    finally:
        state.close()
    if args.limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {args.limit}")
    if name not in resolved.project.nodes:
        raise UnknownNodeError(f"no node named '{name}'",
                               hint=did_you_mean(name, resolved.project.nodes))
    traces = {name: trace} if trace is not None else {}
    with built_outputs(resolved, traces, [name]) as (engine, tables):
        columns, rows, total = engine.preview(tables[name], int(args.limit))
    if out.json_mode:
        out.json({"node": name, "rows": total, "columns": columns,
                  "data": [dict(zip(columns, r)) for r in rows]})
        return ExitCode.OK
    out.table(columns, [["" if v is None else str(v) for v in r] for r in rows],
              title=f"{name}: {total:,} rows" + (f" (first {len(rows)})" if total > len(rows) else ""))
    return ExitCode.OK
