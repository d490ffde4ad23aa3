"""`odibi build` (and `run`), `explain`, `show`: the commands that plan and touch data."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.builder import (
    Prepared,
    finish,
    load,
    make_plan,
    open_state,
    prepare,
    run,
    update_metadata,
)
from odibi.cli.common import project_root, selected, state_hook
from odibi.cli.render import Out
from odibi.config.load import VarOverride, parse_var_overrides
from odibi.engines.base import EngineError
from odibi.errors import Span, UnknownNodeError, UsageError, did_you_mean
from odibi.events import NodeBlocked, NodeFinished, NodeStarted, Notice, Warning_
from odibi.ids import ExitCode, NodeId, Outcome
from odibi.planner import Plan, PlannedStep, Reason, Status, root_cause
from odibi.fingerprint import check_sources
from odibi.state import STATE_DIR, State

if TYPE_CHECKING:
    from odibi.executor import RunOptions, RunResult


class BuildReporter:
    """Prints build events as plain lines: each node that runs says why as it starts."""

    def __init__(self, out: Out, width: int) -> None:
        self.out = out
        self.width = width
        self.events: list[object] = []

    def emit(self, event: object) -> None:
        self.events.append(event)
        out = self.out
        match event:
            case NodeStarted(node=node, action=action, reason=reason, evidence=evidence):
                out.markup(f"[bold]{node:<{self.width}}[/]  {action.value}: {_esc(reason)}")
                if out.verbose:
                    for line in evidence[1:]:
                        out.line(f"{'':<{self.width}}  {'':<{len(action.value)}}  {line}",
                                 style="dim")
            case NodeFinished(node=node, outcome=Outcome.FAILED, error=error, attempts=attempts):
                tries = f" (after {attempts} attempts)" if attempts > 1 else ""
                out.err_console.print(f"[bold red]failed[/] {node}{tries}: {_esc(error or '')}")
            case NodeFinished(node=node, outcome=Outcome.CUT_OFF):
                out.markup(f"[bold]{node:<{self.width}}[/]  cut off: its inputs came out "
                           "unchanged")
            case NodeFinished(node=node, seconds=seconds, rows=rows) if out.verbose:
                detail = f", {rows:,} rows" if rows is not None else ""
                out.line(f"{'':<{self.width}}  done {node} in {seconds:.2f}s{detail}", style="dim")
            case NodeBlocked(node=node, because=because) if out.verbose:
                out.line(f"{node:<{self.width}}  blocked: {because} failed", style="yellow")
            case Warning_(message=message, span=span, hint=hint):
                out.warning(message, span, hint)
            case Notice(message=message):
                out.line(message)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _overrides(args: argparse.Namespace) -> list[Any]:
    saved = getattr(args, "saved_vars", None)
    if saved is not None:
        return [VarOverride(k, v, Span("<plan>", 1, 1)) for k, v in saved.items()]
    return parse_var_overrides(getattr(args, "var", None) or [])


def _state_hook(prepared: Prepared, out: Out) -> Any:
    return state_hook(prepared.resolved, out, own=prepared.own)


def _selection(prepared: Prepared, args: argparse.Namespace, out: Out) -> list[NodeId]:
    return selected(prepared.resolved, args, out, state=_state_hook(prepared, out))


def _forced(prepared: Prepared, args: argparse.Namespace, out: Out) -> frozenset[NodeId]:
    force = getattr(args, "force", None)
    if force is None:
        return frozenset()
    if force == "*":
        return frozenset(prepared.resolved.project.nodes)
    from odibi.cli.common import select_index
    from odibi.select import parse_selector, select

    s = select(parse_selector(force), select_index(prepared.resolved, _state_hook(prepared, out)))
    return s.nodes


def _open(args: argparse.Namespace, out: Out, *, writable: bool) -> tuple[State, Prepared]:
    """Load, check and fingerprint the project. A build creates `.odibi/` only once the
    project has been found valid: a mistake writes nothing."""
    root = project_root(args)
    fresh = writable and not (root / STATE_DIR).exists()
    state = open_state(root, writable=writable and not fresh)
    try:
        resolved = load(root, _overrides(args), state)
        check_sources(resolved)
    except BaseException:
        state.close()
        raise
    if fresh:
        state.close()
        state = open_state(root, writable=True)
    prepared = prepare(resolved, state)
    for w in prepared.warnings:
        out.warning(w)
    return state, prepared


def cmd_build(args: argparse.Namespace, out: Out) -> int:
    jobs = args.jobs if args.jobs is not None else (args.workers or os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError(f"-j must be at least 1, got {jobs}")
    t0 = time.perf_counter()
    saved = _saved_plan(args)
    state, prepared = _open(args, out, writable=not args.dry_run)
    try:
        if saved is not None:
            p = _replan(saved, prepared, args.plan)
        else:
            names = _selection(prepared, args, out)
            p = make_plan(prepared, frozenset(names), _forced(prepared, args, out))
        for n in p.stale_unselected:
            out.warning(f"{n} is out of date but not selected; its dependants are built from "
                        "its last output")
        if args.dry_run:
            return _print_plan(out, p, prepared, dry_run=True)
        width = max((len(s.node) for s in p.to_run()), default=10)
        reporter = BuildReporter(out, width)
        result = None
        if p.needs_engine():
            from odibi.executor import RunOptions

            result = _execute(prepared, p, state, reporter, RunOptions(jobs, args.fail_fast))
        updated = update_metadata(prepared, p, state)
        finish(prepared, state, reporter, changed=bool(result or updated),
               engine_closed=result is not None)
        _summary(out, p, result, time.perf_counter() - t0)
        blocked = [s for s in p.steps if s.status is Status.BLOCKED]
        for s in blocked:
            missing = ", ".join(r.subject for r in s.reasons)
            out.err_console.print(f"[yellow]blocked[/] {s.node}: {missing} never built and not "
                                  f"selected; select +{s.node} to build them too")
        ok = (result is None or result.ok) and not blocked
        return ExitCode.OK if ok else ExitCode.FAILED
    finally:
        state.close()


def _saved_plan(args: argparse.Namespace) -> Any:
    if not getattr(args, "plan", None):
        return None
    if args.select or args.exclude or args.force or args.var:
        raise UsageError("--plan runs exactly the saved plan: give no selectors, --exclude, "
                         "--force or --var with it")
    from odibi import saved_plan

    path = Path(args.plan)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {args.plan}: {e.strerror}") from None
    saved = saved_plan.load(text, args.plan)
    args.saved_vars = saved.vars
    return saved


def _replan(saved: Any, prepared: Prepared, source: str) -> Plan:
    from odibi import saved_plan

    project = prepared.resolved.project
    if saved.project != project.name:
        raise UsageError(f"{source} is a plan of project '{saved.project}', not '{project.name}'")
    p = make_plan(prepared, saved.selection, saved.forced)
    problems = saved_plan.drift(saved, p, _source_names(prepared))
    if problems:
        raise UsageError(f"{source} is out of date; the project changed since the plan was "
                         "made:\n  " + "\n  ".join(problems),
                         hint=f"review a new plan: odibi plan -o {source}")
    return p


def _source_names(prepared: Prepared) -> dict[str, str]:
    from odibi.builder import source_display_names

    return source_display_names(prepared)


def cmd_plan(args: argparse.Namespace, out: Out) -> int:
    from odibi import saved_plan

    state, prepared = _open(args, out, writable=False)
    try:
        names = _selection(prepared, args, out)
        forced = _forced(prepared, args, out)
        p = make_plan(prepared, frozenset(names), forced)
    finally:
        state.close()
    overrides = {o.name: o.value for o in _overrides(args)}
    text = saved_plan.dump(prepared.resolved.project.name, p, forced & frozenset(names),
                           overrides)
    if not args.output:
        out.raw(text)
        return ExitCode.OK
    Path(args.output).write_text(text, encoding="utf-8")
    out.line(f"wrote {args.output}: {len(p.to_run())} to run, "
             f"{p.count(Status.UP_TO_DATE)} up to date")
    return ExitCode.OK


def _execute(prepared: Prepared, p: Plan, state: State, reporter: BuildReporter,
             options: RunOptions) -> RunResult:
    from odibi.engines.duckdb_engine import DuckDBEngine

    project = prepared.resolved.project
    try:
        engine = DuckDBEngine(prepared.warehouse, project.python_path)
    except EngineError as e:
        raise UsageError(str(e), hint="is another odibi build running in this project?") from None
    try:
        return run(prepared, p, state, engine, reporter, options)
    finally:
        engine.close()


def _summary(out: Out, p: Plan, result: RunResult | None, seconds: float) -> None:
    counts: Counter[str] = Counter()
    if result is not None:
        for r in result.results.values():
            counts[r.outcome.value] += 1
        counts["blocked"] = len(result.blocked)
        counts["not started"] = len(result.not_started)
    counts["up to date"] = sum(1 for s in p.steps if s.status is Status.UP_TO_DATE)
    counts["rules updated"] = p.count(Status.REVALIDATE)
    counts["blocked"] += p.count(Status.BLOCKED)
    order = ["built", "restored", "cut off", "exported", "rules updated", "up to date",
             "failed", "blocked", "not started"]
    if out.json_mode:
        out.json(_summary_json(p, result, seconds))
        return
    parts = [f"{counts[k]} {k}" for k in order if counts[k]]
    if result is None:
        head = "[green]nothing to do[/]" if not counts["blocked"] else "[bold red]not built[/]"
        out.markup(f"{head}: {', '.join(parts) or '0 nodes selected'} ({seconds:.2f}s)")
        return
    style = "green" if result.ok else "bold red"
    out.markup(f"[{style}]{'done' if result.ok else 'failed'}[/]: {', '.join(parts)} "
               f"({seconds:.2f}s)")
    causes = Counter(result.blocked.values())
    for cause, n in causes.most_common():
        out.line(f"  {n} blocked because {cause} failed")


def _summary_json(p: Plan, result: RunResult | None, seconds: float) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    for s in p.steps:
        nodes[s.node] = {"status": s.status.value, "reasons": [r.summary() for r in s.reasons]}
    if result is not None:
        for n, r in result.results.items():
            nodes[n].update(outcome=r.outcome.value, seconds=round(r.seconds, 4), error=r.error,
                            rows=r.info.rows if r.info else None)
        for n, cause in result.blocked.items():
            nodes[n].update(outcome="blocked", because=cause)
        for n in result.not_started:
            nodes[n].update(outcome="not started")
    ok = (result is None or result.ok) and not p.count(Status.BLOCKED)
    return {"ok": ok, "seconds": round(seconds, 3), "nodes": nodes}


# -- explain ---------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace, out: Out) -> int:
    state, prepared = _open(args, out, writable=False)
    try:
        names = _selection(prepared, args, out)
        p = make_plan(prepared, frozenset(names))
        return _print_plan(out, p, prepared, dry_run=False, all_nodes=bool(args.select))
    finally:
        state.close()


def _print_plan(out: Out, p: Plan, prepared: Prepared, *, dry_run: bool,
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
               + (f": {_esc(head)}" if head else ""))
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
    try:
        resolved = load(root, _overrides(args), state)
    finally:
        state.close()
    name = NodeId(args.node)
    if args.limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {args.limit}")
    if name not in resolved.project.nodes:
        raise UnknownNodeError(f"no node named '{name}'",
                               hint=did_you_mean(name, resolved.project.nodes))
    path = root / ".odibi" / "warehouse.duckdb"
    if not path.exists():
        raise UsageError(f"'{name}' has not been built yet", hint=f"odibi build {name}")
    from odibi.engines.duckdb_engine import DuckDBEngine

    try:
        engine = DuckDBEngine(path, resolved.project.python_path, read_only=True)
    except EngineError:
        raise UsageError("the warehouse is in use by a running build; try again when it "
                         "finishes") from None
    try:
        _, views = engine.outputs()
        if name not in views:
            raise UsageError(f"'{name}' has not been built yet", hint=f"odibi build {name}")
        columns, rows, total = engine.preview(name, int(args.limit))
    finally:
        engine.close()
    if out.json_mode:
        out.json({"node": name, "rows": total, "columns": columns,
                  "data": [dict(zip(columns, r)) for r in rows]})
        return ExitCode.OK
    out.table(columns, [["" if v is None else str(v) for v in r] for r in rows],
              title=f"{name}: {total:,} rows" + (f" (first {len(rows)})" if total > len(rows) else ""))
    return ExitCode.OK

