"""Putting the pieces together for the commands: load -> prepare -> plan -> run -> finish.

Each step is a free function over frozen values, composed by the CLI:

    state    = open_state(root, writable)
    resolved = load(root, overrides, state)          # odibi.project_cache
    prepared = prepare(resolved, state)              # odibi.prepare: fingerprints, records
    plan     = make_plan(prepared, selection, forced)
    result   = run(prepared, plan, state, engine, ...)   # odibi.jobs -> odibi.executor,
                                                     # only when something must run
    finish(prepared, state, ...)                     # odibi.lock from the state

A no-op build touches neither the engine nor pandas: the warehouse is only opened when a
node must run, or when its files changed since odibi last closed it (then its catalog is
read to find outputs dropped by hand, `odibi.warehouse.inspect`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.engines.base import Engine
from odibi.events import Reporter, Warning_
from odibi.guards import ExportGuards
from odibi.hashing import digest_text
from odibi.ids import NodeId
from odibi.lockfile import lock_name, render, write_if_changed
from odibi.planner import Plan, PlanInputs, PlanOptions, Status, plan
from odibi.prepare import (Prepared, fingerprint_all, modified_since_lock, prepare,
                           source_display_names)
from odibi.project_cache import load
from odibi.state import State
from odibi.warehouse import keep_stamp

__all__ = ["Prepared", "finish", "fingerprint_all", "load", "make_plan",
           "modified_since_lock", "open_state", "prepare", "run", "source_display_names",
           "update_metadata"]

if TYPE_CHECKING:  # the executor (threads, engines) is imported only when a node runs
    from odibi.executor import RunOptions, RunResult


def open_state(root: Path, *, writable: bool, target: str | None = None) -> State:
    return State(root, create=writable, target=target)


def make_plan(prepared: Prepared, selection: frozenset[NodeId],
              forced: frozenset[NodeId] = frozenset(), *, only: bool = False,
              excluded: frozenset[NodeId] = frozenset()) -> Plan:
    """The plan for the targets `selection` (see `planner.plan`); `forced` nodes rebuild
    even if up to date; `only`: just the selection, from its upstreams' last outputs;
    `excluded` nodes never run (what reads them uses their last outputs)."""
    p = prepared.resolved.project
    graph = prepared.resolved.graph
    source_names = source_display_names(prepared)
    inputs = PlanInputs(
        graph=graph, own=prepared.own, traces=prepared.traces,
        failures=prepared.failures, outputs=prepared.outputs,
        always_run=frozenset(n for n, node in p.nodes.items() if node.always_run),
        source_names=source_names, stored=prepared.stored,
        guards=ExportGuards(prepared.resolved))
    nodes = frozenset(n for n in selection if n in p.nodes or n in p.checks)
    return plan(inputs, PlanOptions(nodes, forced, only, excluded))


def run(prepared: Prepared, p: Plan, state: State, engine: Engine, reporter: Reporter,
        options: RunOptions, cancel: threading.Event | None = None) -> RunResult:
    from odibi.executor import execute
    from odibi.jobs import make_jobs

    jobs = make_jobs(prepared, p)
    return execute(jobs, prepared.resolved.graph, engine, state, prepared.traces, reporter,
                   options, state.history.durations(), prepared.resolved.project.root, cancel)


def update_metadata(prepared: Prepared, p: Plan, state: State) -> int:
    """Record what changed without running anything: reformatted SQL (so the next explain
    is quiet), exports touched without their bytes changing."""
    count = 0
    for name, trace in prepared.restamped.items():
        step = p.by_name.get(name)
        if step is not None and step.status is Status.UP_TO_DATE:
            state.records.record(name, trace)
    for step in p.steps:
        trace = prepared.restamped.get(step.node) or prepared.traces.get(step.node)
        if trace is None:
            continue
        if step.status is Status.UP_TO_DATE and step.notes:
            state.records.record(step.node, replace(trace, sql_text=step.own.sql_text,
                                            text_digest=step.own.text_digest))
            count += 1
    return count


def finish(prepared: Prepared, state: State, reporter: Reporter, *, changed: bool,
           engine_closed: bool) -> None:
    """Write odibi.lock from the state, and remember the warehouse as odibi left it."""
    project = prepared.resolved.project
    if engine_closed:
        keep_stamp(prepared.resolved, state)
    # A no-op need not even render the lock: nothing was recorded, the node set is the
    # same, and the file is as this state last wrote (or checked) it.
    stamp = _lock_stamp(project)
    if not changed and stamp is not None and state.meta("lock") == stamp:
        return
    traces = {**prepared.traces, **state.records.recorded}
    text = render(project.name, traces, [*project.nodes, *project.checks])
    written, problem = write_if_changed(project.root, text,
                                        ours=stamp is not None and state.meta("lock") == stamp,
                                        name=lock_name(project.build_target.key))
    if problem:
        reporter.emit(Warning_(f"{lock_name(project.build_target.key)} was unreadable ({problem}); "
                               "rewrote it from the "
                               "build state"))
    state.set_meta("lock", _lock_stamp(project))


def _lock_stamp(project: Any) -> str | None:
    try:
        st = os.stat(project.root / lock_name(project.build_target.key))
    except OSError:
        return None
    names = digest_text("\n".join(sorted([*project.nodes, *project.checks])))
    return json.dumps([st.st_size, st.st_mtime_ns, st.st_ino, names])
