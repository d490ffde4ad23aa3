"""What a build prints: a line per node as it starts (why it runs), failures as they
happen, and a summary naming root causes. On a terminal a live board shows what is
running; when piped, plain lines only."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, assert_never

from odibi.cli.render import LiveBoard, Out, escape
from odibi.events import Event, NodeBlocked, NodeFinished, NodeStarted, Notice, Warning_
from odibi.ids import Outcome
from odibi.planner import Plan, Status

if TYPE_CHECKING:  # (the scheduler's modules: imported only when something ran)
    from odibi.executor import RunResult
    from odibi.holds import HeldExport


class BuildReporter:
    """Prints build events: each node that runs says why, in one line, as it starts (with
    -v, the rest of its evidence); failures as they happen. On a terminal, a live board
    below the lines shows what is running (with elapsed times), what is queued, and an
    ETA from remembered durations."""

    def __init__(self, out: Out, width: int, board: LiveBoard | None = None) -> None:
        self.out = out
        self.width = width
        self.board = board
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if self.board is not None:
            self.board.update(event)
        match event:
            case NodeStarted():
                self._started(event)
            case NodeFinished():
                self._finished(event)
            case NodeBlocked(node=node, because=because):
                if self.out.verbose:
                    self.out.line(f"{node:<{self.width}}  blocked: {because} failed",
                                  style="yellow")
            case Warning_(message=message, span=span, hint=hint):
                self.out.warning(message, span, hint)
            case Notice(message=message):
                self.out.line(message)
            case _:
                assert_never(event)

    def _started(self, event: NodeStarted) -> None:
        out, action = self.out, event.action.value
        out.markup(f"[bold]{event.node:<{self.width}}[/]  {action}: {escape(event.reason)}")
        if out.verbose:
            for line in event.evidence[1:]:
                out.line(f"{'':<{self.width}}  {'':<{len(action)}}  {line}", style="dim")

    def _finished(self, event: NodeFinished) -> None:
        out, node = self.out, event.node
        match event.outcome:
            case Outcome.FAILED:
                tries = f" (after {event.attempts} attempts)" if event.attempts > 1 else ""
                out.err(f"[bold red]failed[/] {node}{tries}: {escape(event.error or '')}")
            case Outcome.WARNED:
                out.err(f"[yellow]warning[/] check {node}: {escape(event.error or '')}")
            case Outcome.INTERRUPTED:
                out.err(f"[yellow]interrupted[/] {node}")
            case Outcome.CUT_OFF:
                out.markup(f"[bold]{node:<{self.width}}[/]  cut off: its inputs came out "
                           "unchanged")
            case (Outcome.BUILT | Outcome.RESTORED | Outcome.EXPORTED | Outcome.REVALIDATED
                  | Outcome.PASSED):
                if out.verbose:
                    rows = f", {event.rows:,} rows" if event.rows is not None else ""
                    out.line(f"{'':<{self.width}}  done {node} in {event.seconds:.2f}s{rows}",
                             style="dim")
            case _:
                assert_never(event.outcome)


def summary(out: Out, p: Plan, result: RunResult | None, seconds: float) -> None:
    counts: Counter[str] = Counter()
    if result is not None:
        for r in result.results.values():
            counts[r.outcome.value] += 1
        counts["blocked"] = len(result.blocked)
        counts["not started"] = len(result.not_started)
    counts["up to date"] = sum(1 for s in p.steps if s.status is Status.UP_TO_DATE)
    counts["blocked"] += p.count(Status.BLOCKED)
    order = ["built", "restored", "cut off", "exported", "revalidated", "passed", "warned",
             "up to date", "failed", "interrupted", "blocked", "not started"]
    if out.json_mode:
        out.json(summary_json(p, result, seconds))
        return
    parts = [f"{counts[k]} {k}" for k in order if counts[k]]
    if result is None:
        head = "[green]nothing to do[/]" if not counts["blocked"] else "[bold red]not built[/]"
        out.markup(f"{head}: {', '.join(parts) or '0 nodes selected'} ({seconds:.2f}s)")
        return
    head = ("[green]done[/]" if result.ok else "[yellow]interrupted[/]" if result.cancelled
            else "[bold red]failed[/]")
    out.markup(f"{head}: {', '.join(parts)} ({seconds:.2f}s)")
    if out.verbose or not result.ok:
        _table(out, result)
    for cause, names in _blocked_by_cause(p, result):
        out.line(f"  {len(names)} blocked because {cause} failed: {_name_list(names)}")
    if result.halted:
        out.line(f"  check {result.halted} failed: the build was halted")
    for node, h in result.held.items():
        out.line(f"  held back: {', '.join(h.paths)} ({node}): {held_why(h)}; the previous "
                 "file is kept")


def _blocked_by_cause(p: Plan, result: RunResult) -> list[tuple[str, list[str]]]:
    """Each failed node with the nodes it blocked, the cause that blocked most first (ties
    in the order the failures happened); the blocked nodes in build order."""
    position = {s.node: i for i, s in enumerate(p.steps)}
    causes = Counter(result.blocked.values())
    return [(cause, sorted((n for n, c in result.blocked.items() if c == cause),
                           key=lambda n: (position.get(n, len(position)), n)))
            for cause, _ in causes.most_common()]


def _name_list(names: list[str], most: int = 5) -> str:
    """`a, b, c`; beyond `most` names, the first five and `and 7 more`."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])} and {len(names) - most} more"


def _table(out: Out, result: RunResult) -> None:
    """Per outcome: how many, the time they took, and the slowest."""
    rows = []
    by: dict[str, list[Any]] = {}
    for r in result.results.values():
        by.setdefault(r.outcome.value, []).append(r)
    for name, items in by.items():
        slowest = max(items, key=lambda r: r.seconds)
        rows.append([name, str(len(items)), f"{sum(r.seconds for r in items):.2f}s",
                     f"{slowest.node} ({slowest.seconds:.2f}s)"])
    if result.blocked:
        rows.append(["blocked", str(len(result.blocked)), "", ""])
    if result.not_started:
        rows.append(["not started", str(len(result.not_started)), "", ""])
    out.table(["outcome", "nodes", "time", "slowest"], rows)


def held_why(h: HeldExport) -> str:
    """Why exports were held back, as the summary says it."""
    from odibi.holds import HoldCause

    match h.cause:
        case HoldCause.CHECK_FAILED:
            return f"check {h.check} failed"
        case HoldCause.CHECK_BLOCKED:
            return f"check {h.check} did not run: blocked because {h.because} failed"
        case HoldCause.CHECK_LEFT_OUT:
            return f"check {h.check} is not part of this build"
        case HoldCause.STOPPED:
            return (f"the build stopped before check {h.check} ran" if h.check
                    else "the build stopped before they were written")
    assert_never(h.cause)


def summary_json(p: Plan, result: RunResult | None, seconds: float) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    for s in p.steps:
        nodes[s.node] = {"status": s.status.value, "reasons": [r.summary() for r in s.reasons]}
    if result is not None:
        for n, r in result.results.items():
            nodes[n].update(outcome=r.outcome.value, seconds=round(r.seconds, 4), error=r.error,
                            rows=r.info.rows if r.info else None, attempts=r.attempts)
        for n, cause in result.blocked.items():
            nodes[n].update(outcome="blocked", because=cause)
        for n in result.not_started:
            nodes[n].update(outcome="not started")
        for n, h in result.held.items():
            nodes[n].update(held_exports=list(h.paths), held_by=h.check)
    ok = (result is None or result.ok) and not p.count(Status.BLOCKED)
    out: dict[str, Any] = {"ok": ok, "seconds": round(seconds, 3), "nodes": nodes}
    if result is not None and result.halted:
        out["halted_by"] = result.halted  # the check whose failure stopped the build
    if result is not None and result.held:  # exports not written: the previous files stay
        out["held_exports"] = [{"node": n, "paths": list(h.paths), "check": h.check,
                                "cause": h.cause.value, "reason": held_why(h)}
                               for n, h in result.held.items()]
    return out


def chrome_trace(result: RunResult, plan: Plan) -> dict[str, Any]:
    """The build as Chrome trace-event JSON (Perfetto, chrome://tracing): one complete
    event per executed node, one track per worker."""
    executed = [r for r in result.results.values() if r.worker >= 0]
    origin = min((r.started for r in executed), default=result.started)
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "odibi build"}}]
    for w in sorted({r.worker for r in executed}):
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": w + 1,
                       "args": {"name": f"worker {w + 1}"}})
    for r in sorted(executed, key=lambda r: (r.started, r.node)):
        step = plan.by_name.get(r.node)
        events.append({
            "name": r.node, "cat": r.outcome.value, "ph": "X", "pid": 1, "tid": r.worker + 1,
            "ts": round((r.started - origin) * 1e6), "dur": max(1, round(r.seconds * 1e6)),
            "args": {"outcome": r.outcome.value, "status": step.status.value if step else "",
                     "reason": step.headline if step else "",
                     "rows": r.info.rows if r.info else None, "error": r.error}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
