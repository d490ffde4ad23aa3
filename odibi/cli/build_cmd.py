"""`odibi build` (and `run`) and `odibi plan`: the commands that plan, and run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.builder import (Prepared, finish, make_plan, run, source_display_names,
                           update_metadata)
from odibi.cli.explain_cmd import print_plan, warn_left_out
from odibi.cli.opening import forced, open_prepared, plan_overrides, selection
from odibi.cli.options import ProjectOptions, Selection
from odibi.cli.render import LiveBoard, Out, escape
from odibi.cli.report import BuildReporter, chrome_trace, summary
from odibi.config.model import EngineKind
from odibi.engines.base import Access, EngineOptions, WarehouseUnavailable
from odibi.errors import UsageError
from odibi.fingerprint import reachable_files
from odibi.ids import ExitCode, Outcome
from odibi.planner import Plan, Reason, Status
from odibi.state import State, state_dir
from odibi.warehouse import apply_deferred, engine_for, env_redactions, open_for_restores

if TYPE_CHECKING:
    from odibi.executor import RunOptions, RunResult
    from odibi.saved_plan import SavedPlan


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """`odibi build` / `odibi run`. With `plan_file` (--plan) there is no selection, --force
    or --var; the plan's own variables are what loading it returns."""

    project: ProjectOptions
    selection: Selection
    jobs: int  # 1 or more
    fail_fast: bool = False
    dry_run: bool = False
    plan_file: str | None = None
    profile: Path | None = None  # its directory exists
    wait: bool = True  # False with --no-wait
    bind: bool = True  # False with --no-bind
    invocation: str = "odibi build"  # the command line, as the build history records it


@dataclass(frozen=True, slots=True)
class SavePlanOptions:
    """`odibi plan` (`PlanOptions` is the planner's): `output` None prints the plan."""

    project: ProjectOptions
    selection: Selection
    output: str | None = None


def cmd_build(opts: BuildOptions, out: Out) -> int:
    t0 = time.perf_counter()
    saved = _saved_plan(opts.plan_file)
    project = opts.project
    if saved is not None:  # the build is made with the plan's variables
        project = replace(project, overrides=plan_overrides(saved.vars))
    fresh = not state_dir(project.root, project.build_target).is_dir()
    state, prepared, lock = open_prepared(project, out, writable=not opts.dry_run,
                                          wait=opts.wait)
    planned = False
    try:
        if saved is not None:
            p = _replan(saved, prepared, opts.plan_file or "")
        else:
            chosen = opts.selection
            names, excluded = selection(prepared, chosen, out)
            p = make_plan(prepared, frozenset(names), forced(prepared, chosen.force, out, names),
                          only=chosen.only, excluded=excluded)
        target = prepared.resolved.project.build_target
        if opts.bind and prepared.resolved.project.binds_columns:
            _bind(prepared, p, state, out)  # a statement that does not bind: exit 2
        if not opts.dry_run and target.engine is not EngineKind.DUCKDB \
                and any(s.status is Status.REBUILD for s in p.steps):
            _preflight(prepared)  # no Java, no pyspark, no master: exit 2 before any work
        planned = True
        warn_left_out(out, p, only=opts.selection.only)
        if opts.dry_run:
            return print_plan(out, p, prepared, dry_run=True)
        return _build(opts, out, state, prepared, p, t0)
    finally:
        state.close()
        if lock is not None:
            lock.release()
        if fresh and not planned:  # a mistake found only now (a selector): write nothing
            shutil.rmtree(state_dir(project.root, project.build_target), ignore_errors=True)


def _preflight(prepared: Prepared) -> None:
    """What the target's engine needs to compute is there (`engines.preflight`), else a
    UsageError naming the target in odibi.yaml."""
    from odibi.engines import preflight

    project = prepared.resolved.project
    problem = preflight(project.root, project.build_target)
    if problem is not None:
        raise UsageError(problem.message, span=project.build_target.span, hint=problem.hint)


def _bind(prepared: Prepared, p: Plan, state: State, out: Out) -> None:
    """Bind every SQL node the plan runs to its inputs' columns (README, "Column
    binding"); raises SqlError at the first that does not bind. A plan that runs no SQL
    (a no-op, a restore) binds nothing and imports nothing."""
    if not any(s.status is Status.REBUILD for s in p.steps):
        return  # (nothing computes: nothing to bind)
    from odibi.bind import bind_plan

    binding = bind_plan(prepared.resolved, p, own=prepared.own, traces=prepared.traces,
                        stored=prepared.stored, cache=state.caches if state.available else None,
                        redact=env_redactions(prepared.resolved))
    if binding.unchecked and out.verbose:
        from odibi.cli.inspect_cmds import not_checked, unchecked_text

        for cause, names in not_checked(binding).items():
            text = unchecked_text(prepared.resolved, cause, names, " before the build")
            out.err(f"[cyan]note:[/] {escape(text)}")


def _build(opts: BuildOptions, out: Out, state: State, prepared: Prepared, p: Plan,
           t0: float) -> int:
    jobs = opts.jobs
    run_id = state.history.start_run(opts.invocation)
    width = max((len(s.node) for s in p.to_run()), default=10)
    board = None
    if out.interactive and not out.quiet and p.needs_engine():
        board = LiveBoard(out, [s.node for s in p.to_run()], dict(state.history.durations()), jobs)
    reporter = BuildReporter(out, width, board)
    result = None
    opened = False
    if p.needs_engine():
        from odibi.executor import RunOptions  # the scheduler: only when something runs

        result, opened = _execute(prepared, p, state, reporter,
                                  RunOptions(jobs, opts.fail_fast), board)
    elif state.records.pending_restores():
        opened = open_for_restores(prepared.resolved, state)
    updated = update_metadata(prepared, p, state)
    finish(prepared, state, reporter, changed=bool(result or updated), engine_closed=opened)
    seconds = time.perf_counter() - t0
    if result is not None:
        state.history.put_durations({n: r.seconds for n, r in result.results.items()
                             if r.outcome is Outcome.BUILT})
        if opts.profile is not None:
            opts.profile.write_text(json.dumps(chrome_trace(result, p)), encoding="utf-8")
    summary(out, p, result, seconds)
    blocked = [s for s in p.steps if s.status is Status.BLOCKED]
    for s in blocked:
        missing = ", ".join(r.subject for r in s.reasons if r.reason is Reason.UPSTREAM_NOT_BUILT)
        held = ", ".join(r.subject for r in s.reasons if r.reason is Reason.EXPORT_HELD)
        if missing:
            out.err(f"[yellow]blocked[/] {s.node}: {missing} never built and left out by "
                    "--only; build without --only to build them too")
        if held:
            out.err(f"[yellow]blocked[/] {s.node}: the export of {held} it reads is held back "
                    "(the file is older than its node); build without --only to write it")
    code = _exit_code(result, bool(blocked), out)
    state.history.finish_run(run_id, _status(code), _counts(p, result, seconds))
    return code


def _exit_code(result: RunResult | None, blocked: bool, out: Out) -> int:
    if result is not None and result.internal:
        for r in result.internal:
            out.err(f"internal error while running {r.node}:")
            out.stderr.write(r.internal or "")
        out.stderr.write("odibi: internal error (this is a bug in odibi: please report it "
                         "with the traceback above)\n")
        return ExitCode.INTERNAL_ERROR
    if result is not None and result.cancelled:
        return ExitCode.INTERRUPTED
    ok = (result is None or result.ok) and not blocked
    return ExitCode.OK if ok else ExitCode.FAILED


def _status(code: int) -> str:
    return {0: "ok", 1: "failed", 3: "error", 130: "interrupted"}.get(code, "failed")


def _counts(p: Plan, result: RunResult | None, seconds: float) -> dict[str, Any]:
    counts: dict[str, Any] = {"seconds": round(seconds, 3), "selected": len(p.steps)}
    if result is not None:
        for r in result.results.values():
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        if result.blocked:
            counts["blocked"] = len(result.blocked)
    counts["up to date"] = p.count(Status.UP_TO_DATE)
    return counts


def _execute(prepared: Prepared, p: Plan, state: State, reporter: BuildReporter,
             options: RunOptions, board: LiveBoard | None) -> tuple[RunResult, bool]:
    """Run the plan. Ctrl-C stops scheduling, interrupts running queries, records what
    finished (the caller writes odibi.lock) and exits 130; a second Ctrl-C exits at once
    (every record is its own transaction, so the state stays consistent)."""
    project = prepared.resolved.project
    # opened by the executor before anything runs, or never: a build that only restores
    # records its restores in the state and leaves the warehouse closed
    sources = sum(size for own in prepared.own.values() for _, size in own.sources.values())
    reads, writes = reachable_files(prepared.resolved, prepared.own)
    engine = engine_for(prepared.resolved, options=EngineOptions(
        python_path=project.python_path, redact=env_redactions(prepared.resolved),
        source_bytes=sources, access=Access(reads=reads, writes=writes)),
        on_open=lambda e: apply_deferred(state, e))
    cancel = threading.Event()

    def on_interrupt(signum: int, frame: Any) -> None:
        if cancel.is_set():
            os._exit(ExitCode.INTERRUPTED)
        cancel.set()
        reporter.out.err("[yellow]interrupted[/]: stopping; what finished is "
                                       "kept (Ctrl-C again to quit at once)")

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_interrupt)
    if board is not None:
        board.start()
    try:
        return run(prepared, p, state, engine, reporter, options, cancel), engine.is_open
    except WarehouseUnavailable as e:
        raise UsageError(str(e), hint="is another program using the warehouse?") from None
    finally:
        if board is not None:
            board.stop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        engine.close()


def _saved_plan(file: str | None) -> SavedPlan | None:
    """The plan of --plan FILE (None without it); its variables come with it."""
    if file is None:
        return None
    from odibi import saved_plan

    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {file}: {e.strerror}") from None
    return saved_plan.load(text, file)


def _replan(saved: SavedPlan, prepared: Prepared, source: str) -> Plan:
    from odibi import saved_plan

    project = prepared.resolved.project
    if saved.project != project.name:
        raise UsageError(f"{source} is a plan of project '{saved.project}', not '{project.name}'")
    p = make_plan(prepared, saved.selection, saved.forced, only=saved.only,
                  excluded=saved.excluded)
    problems = saved_plan.drift(saved, p, source_display_names(prepared))
    if problems:
        raise UsageError(f"{source} is out of date; the project changed since the plan was "
                         "made:\n  " + "\n  ".join(problems),
                         hint=f"review a new plan: odibi plan -o {source}")
    return p


def cmd_plan(opts: SavePlanOptions, out: Out) -> int:
    from odibi import saved_plan

    only = opts.selection.only
    state, prepared, _ = open_prepared(opts.project, out, writable=False)
    try:
        names, excluded = selection(prepared, opts.selection, out)
        chosen = forced(prepared, opts.selection.force, out, names)
        p = make_plan(prepared, frozenset(names), chosen, only=only, excluded=excluded)
    finally:
        state.close()
    warn_left_out(out, p, only=only)
    values = {o.name: o.value for o in opts.project.overrides}
    text = saved_plan.dump(prepared.resolved.project.name, p, chosen & frozenset(p.by_name),
                           values, only=only, excluded=excluded)
    if not opts.output:
        out.raw(text)
        return ExitCode.OK
    Path(opts.output).write_text(text, encoding="utf-8")
    out.line(f"wrote {opts.output}: {len(p.to_run())} to run, "
             f"{p.count(Status.UP_TO_DATE)} up to date")
    return ExitCode.OK
