"""`odibi history`: the project's recent builds, newest first."""

from __future__ import annotations

import time
from dataclasses import dataclass

from odibi.builder import open_state
from odibi.cli.options import ProjectOptions
from odibi.cli.render import Out
from odibi.ids import ExitCode


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    project: ProjectOptions
    limit: int = 20  # 1 or more


_ORDER = ("built", "restored", "cut off", "exported", "failed", "interrupted", "blocked",
          "up to date")


def cmd_history(opts: HistoryOptions, out: Out) -> int:
    state = open_state(opts.project.root, writable=False, target=opts.project.build_target)
    try:
        runs = state.history.runs(opts.limit)
    finally:
        state.close()
    if out.json_mode:
        out.json([{"id": i, "started": s, "finished": f, "command": c, "status": st,
                   "summary": sm} for i, s, f, c, st, sm in runs])
        return ExitCode.OK
    if not runs:
        out.line("no builds yet")
        return ExitCode.OK
    rows = []
    for i, started, finished, command, status, counts in runs:
        took = f"{finished - started:.2f}s" if finished else "-"
        what = ", ".join(f"{counts[k]} {k}" for k in _ORDER if counts.get(k))
        rows.append([str(i), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                     took, status or "running/killed", what or "nothing to do", command])
    out.table(["#", "started", "took", "status", "what ran", "command"], rows)
    return ExitCode.OK
