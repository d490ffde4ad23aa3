"""Putting the pieces together for the commands: load -> prepare -> plan -> run -> finish.

Each step is a free function over frozen values, composed by the CLI:

    state    = open_state(root, writable)
    resolved = load(root, overrides, state)          # odibi.project_cache
    prepared = prepare(resolved, state)              # odibi.prepare: fingerprints, records
    plan     = make_plan(prepared, selection, forced)
    result   = run(prepared, plan, state, engine, ...)   # only when something must run
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

from odibi.config.model import PythonSpec, ReadSpec, SqlSpec
from odibi.engines.base import Engine, Relation
from odibi.events import Reporter, Warning_
from odibi.fingerprint import export_path
from odibi.guards import ExportGuards
from odibi.hashing import digest_text
from odibi.ids import NodeId, OnFail, OutputRef
from odibi.lockfile import LOCK_FILE, render, write_if_changed
from odibi.planner import Plan, PlanInputs, PlannedStep, PlanOptions, Reason, Status, plan
from odibi.prepare import (Prepared, fingerprint_all, modified_since_lock, prepare,
                           source_display_names)
from odibi.project_cache import load
from odibi.resolve import Resolved
from odibi.state import State, Trace
from odibi.warehouse import keep_stamp

__all__ = ["Prepared", "finish", "fingerprint_all", "load", "make_jobs", "make_plan",
           "modified_since_lock", "open_state", "prepare", "python_call", "run",
           "source_display_names", "update_metadata"]

if TYPE_CHECKING:  # the executor (threads, engines) is imported only when a node runs
    from odibi.executor import Job, PythonCall, RunOptions, RunResult


def open_state(root: Path, *, writable: bool) -> State:
    return State(root, create=writable)


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


def make_jobs(prepared: Prepared, p: Plan) -> dict[NodeId, Job]:
    from odibi.executor import Job

    resolved = prepared.resolved
    project = resolved.project
    jobs: dict[NodeId, Job] = {}
    for step in p.to_run():
        check = project.checks.get(step.node)
        if check is not None:
            job = Job(step=step, output=None, check=resolved.checks[step.node],
                      halt=check.on_fail is OnFail.HALT, cutoff=_cutoff_candidate(prepared, step),
                      relations=_current(resolved.checks[step.node].datasets))
            if step.status is Status.RESTORE:  # the verdict on these very inputs is known
                job = replace(job, stored=prepared.stored[(step.node, step.fingerprint)])
            jobs[step.node] = job
            continue
        node = project.nodes[step.node]
        writes = tuple((w, export_path(resolved, w)) for w in node.writes)
        rules = resolved.rules.get(step.node)
        inputs = _current(resolved.deps(step.node))
        job = Job(step=step, output=OutputRef.of(step.node, step.fingerprint),
                  writes=writes, retry=node.retry, timeout=node.timeout,
                  cutoff=_cutoff_candidate(prepared, step), rules=rules, relations=inputs)
        if step.status in (Status.REVALIDATE, Status.REEXPORT):  # (rules on what is stored)
            read = node.producer if isinstance(node.producer, ReadSpec) else None
            jobs[step.node] = replace(job, read=read, output=prepared.traces[step.node].stored,
                                      relations={**inputs, step.node: step.node})
            continue
        if step.status is Status.RESTORE:
            stored = prepared.stored[(step.node, step.fingerprint)]
            jobs[step.node] = replace(job, stored=stored, output=stored.stored)
            continue
        spec = node.producer
        if isinstance(spec, ReadSpec):
            job = replace(job, read=spec, connection=project.connections[spec.connection],
                          node=node)
        elif isinstance(spec, SqlSpec):
            job = replace(job, sql=spec.rendered)
        elif isinstance(spec, PythonSpec):
            job = replace(job, python=python_call(resolved, step.node))
        jobs[step.node] = job
    return jobs


def python_call(resolved: Resolved, name: NodeId) -> PythonCall:
    """How a worker calls a Python node's function: each parameter that is a node gets
    that node's output (a function taking **inputs also gets its `depends_on`). Shared
    by builds and `odibi test`, so that a test calls the function as a build does."""
    from odibi.executor import PythonCall

    fn = resolved.python[name]
    inputs = {p: NodeId(p) for p in fn.params if p in resolved.project.nodes}
    inputs.update({d: d for d in resolved.deps(name) if fn.var_keyword})
    return PythonCall(fn.module, fn.function, fn.file, resolved.project.python_path, inputs)


def _current(names: Any) -> dict[str, Relation]:
    """Each node's current output, by name (what SQL reads when it names the node)."""
    return {n: NodeId(n) for n in names}


_UPSTREAM_ONLY = (Reason.UPSTREAM_REBUILT, Reason.UPSTREAM_RERUN)


def _cutoff_candidate(prepared: Prepared, step: PlannedStep) -> Trace | None:
    """The trace a node may keep if its upstream outputs come out unchanged: only for a
    node rebuilt for no reason of its own, whose outputs and exports are in order."""
    old = prepared.traces.get(step.node)
    if (step.status is not Status.REBUILD or old is None or not step.reasons or old.held
            or any(r.reason not in _UPSTREAM_ONLY for r in step.reasons)
            or old.write_key != step.own.write_key or step.node in prepared.outputs
            or set(old.inputs) != set(prepared.resolved.graph.upstream(step.node))):
        return None
    return old


def run(prepared: Prepared, p: Plan, state: State, engine: Engine, reporter: Reporter,
        options: RunOptions, cancel: threading.Event | None = None) -> RunResult:
    from odibi.executor import execute

    jobs = make_jobs(prepared, p)
    return execute(p, jobs, prepared.resolved.graph, engine, state, prepared.traces, reporter,
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
                                        ours=stamp is not None and state.meta("lock") == stamp)
    if problem:
        reporter.emit(Warning_(f"odibi.lock was unreadable ({problem}); rewrote it from the "
                               "build state"))
    state.set_meta("lock", _lock_stamp(project))


def _lock_stamp(project: Any) -> str | None:
    try:
        st = os.stat(project.root / LOCK_FILE)
    except OSError:
        return None
    names = digest_text("\n".join(sorted([*project.nodes, *project.checks])))
    return json.dumps([st.st_size, st.st_mtime_ns, st.st_ino, names])
