"""`odibi gc`: drop stored output versions nothing points at."""

from __future__ import annotations

from dataclasses import dataclass

from odibi.builder import load, open_state
from odibi.engines import warehouse_stamp
from odibi.engines.base import EngineError
from odibi.warehouse import apply_deferred, engine_for, keep_stamp
from odibi.buildlock import BuildLock
from odibi.cli.options import ProjectOptions
from odibi.cli.render import Out
from odibi.errors import UsageError
from odibi.ids import ExitCode
from odibi.state import state_dir


@dataclass(frozen=True, slots=True)
class GcOptions:
    project: ProjectOptions
    keep: int = 0  # 0 or more
    dry_run: bool = False
    wait: bool = True  # False with --no-wait


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def cmd_gc(args: GcOptions, out: Out) -> int:
    """Drop what nothing points at (`args`: the command's frozen options)."""
    root, target = args.project.root, args.project.build_target
    state = open_state(root, writable=False, target=target)
    try:
        project = load(root, [], state, target).project
    finally:
        state.close()
    if warehouse_stamp(root, project.build_target) is None:
        out.line("nothing to collect: no warehouse yet")
        return ExitCode.OK
    lock = None
    if not args.dry_run:
        lock = BuildLock(state_dir(root, target), "gc")
        lock.acquire(wait=args.wait,
                     on_wait=lambda who: out.warning(f"waiting for a build ({who})"))
    state = open_state(root, writable=not args.dry_run, target=target)
    try:
        resolved = load(root, [], state, target)
        from odibi.collect import collect

        try:
            engine = engine_for(
                resolved, read_only=args.dry_run, lazy=False,
                on_open=None if args.dry_run else (lambda e: apply_deferred(state, e)))
        except EngineError as e:
            raise UsageError(str(e), hint="is an odibi build running in this project?") from None
        try:
            result = collect(state, engine, resolved.graph.names, args.keep, args.dry_run)
        finally:
            engine.close()
        if not args.dry_run:
            keep_stamp(resolved, state)
    finally:
        state.close()
        if lock is not None:
            lock.release()
    if out.json_mode:
        out.json({"dropped": list(result.tables), "views": list(result.views),
                  "versions_forgotten": result.versions, "freed_bytes": result.freed_bytes,
                  "kept": result.kept, "dry_run": args.dry_run})
        return ExitCode.OK
    verb = "would drop" if args.dry_run else "dropped"
    line = f"{verb} {len(result.tables)} stored outputs, kept {result.kept}"
    if result.views:
        line += f"; removed nodes: {', '.join(result.views)}"
    if not args.dry_run:
        line += f"; freed {_size(result.freed_bytes)} in the warehouse"
    out.line(line)
    return ExitCode.OK
