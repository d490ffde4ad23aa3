"""Jobs: the kinds of work a build does, one frozen value per kind, and making them.

A job is everything a worker needs to run one planned step: plain values, no shared
state. What it does is its kind, a union dispatched with `match` (`odibi.worker`, the
scheduler), each kind with the fields it really has:

    Build           compute a new output (its `producer`: read files, run SQL, or call
                    Python), check it, export it, make it current
    Restore         point a node back at a version it built before (nothing computed),
                    its exports rewritten from that version
    RestoreVerdict  a check's verdict on these very inputs is known: recorded again
    Revalidate      only a node's rules changed: they run on its current output
    Reexport        rewrite a node's exports from its current output (changed rules
                    first); also the work of an export task (`odibi.holds`)
    CheckRule       evaluate a check's rule on the outputs it names

`make_jobs` makes the job of each step of a plan that runs, as its status asks; `odibi
test` makes the `Build` of one node with the same `python_call`. A job's result is a
`StepResult`: a failure is a value, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from odibi.config.model import Connection, Node, ReadSpec, Retry, SqlSpec, WriteSpec
from odibi.engines.base import Relation, TableInfo
from odibi.expr.check import RulePlan
from odibi.fingerprint import export_path
from odibi.ids import NodeId, OnFail, Outcome, OutputRef
from odibi.planner import Plan, PlannedStep, Reason, Status
from odibi.prepare import Prepared
from odibi.resolve import Resolved
from odibi.rulesets import NodeRules
from odibi.trace import Export, Trace

__all__ = ["Build", "CheckRule", "Job", "PythonCall", "Read", "Reexport", "Restore",
           "RestoreVerdict", "Revalidate", "Sql", "StepResult", "Writes", "make_jobs",
           "prepares", "python_call"]

Writes = tuple[tuple[WriteSpec, Path], ...]
"""A node's exports: each `write:` and the file it writes."""


# -- what a build computes with --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Read:
    """Read files: listed when the job runs (after any upstream that writes them)."""

    spec: ReadSpec
    connection: Connection
    node: Node


@dataclass(frozen=True, slots=True)
class Sql:
    text: str  # rendered: variables substituted (in the engine's dialect)
    inputs: tuple[NodeId, ...] = ()  # the nodes it reads by name


@dataclass(frozen=True, slots=True)
class PythonCall:
    module: str
    function: str
    file: Path
    python_path: tuple[Path, ...]
    inputs: Mapping[str, NodeId]  # parameter -> node
    pandas: frozenset[str] = frozenset()  # parameters annotated pandas.DataFrame


Producer = Read | Sql | PythonCall


# -- the kinds of work -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Build:
    """Compute a new version of a node's output, check it, export it, make it current."""

    step: PlannedStep
    output: OutputRef  # the new version it stores
    producer: Producer
    rules: NodeRules  # contracts (on its inputs; a read node's on what it read), validations
    relations: Mapping[str, Relation]  # its inputs' current outputs, by name
    writes: Writes = ()
    retry: Retry = Retry()
    timeout: float | None = None
    cutoff: Trace | None = None  # the record it keeps if its inputs come out unchanged
    held: tuple[NodeId, ...] = ()  # its exports are an export task's, once these checks pass

    @property
    def key(self) -> NodeId:
        return self.step.node


@dataclass(frozen=True, slots=True)
class Restore:
    """Make a version the node built before current again, rewriting its exports from it."""

    step: PlannedStep
    stored: Trace  # the record of that version
    output: OutputRef  # the version (`stored.stored`)
    writes: Writes = ()
    retry: Retry = Retry()
    timeout: float | None = None
    held: tuple[NodeId, ...] = ()  # as for Build

    @property
    def key(self) -> NodeId:
        return self.step.node


@dataclass(frozen=True, slots=True)
class RestoreVerdict:
    """A check's verdict on these very inputs is recorded: it is recorded again."""

    step: PlannedStep
    stored: Trace

    @property
    def key(self) -> NodeId:
        return self.step.node


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Only a node's rules changed: run them on its current output (and its inputs)."""

    step: PlannedStep
    rules: NodeRules
    relations: Mapping[str, Relation]  # its inputs' and its own current outputs, by name
    retry: Retry = Retry()
    timeout: float | None = None

    @property
    def key(self) -> NodeId:
        return self.step.node


@dataclass(frozen=True, slots=True)
class Reexport:
    """Write a node's exports from its current output (nothing computed)."""

    step: PlannedStep
    key: NodeId  # what the scheduler calls it: its node, or its export task (odibi.holds)
    output: OutputRef  # the version it exports
    writes: Writes
    retry: Retry = Retry()
    timeout: float | None = None
    revalidate: Revalidate | None = None  # its rules changed too: they hold before it writes


@dataclass(frozen=True, slots=True)
class CheckRule:
    """Evaluate a check's rule: passed, warned (on_fail: warn), or failed (halting)."""

    step: PlannedStep
    rule: RulePlan
    relations: Mapping[str, Relation]  # the outputs it names, by name
    halt: bool  # a failure stops the build
    cutoff: Trace | None = None  # the verdict it keeps if its inputs come out unchanged

    @property
    def key(self) -> NodeId:
        return self.step.node


Job = Build | Restore | RestoreVerdict | Revalidate | Reexport | CheckRule


def prepares(job: Job) -> bool:
    """Whether the job loads its inputs before it takes a `-j` slot (a Python node that
    builds: `odibi.worker.Hooks`)."""
    return isinstance(job, Build) and isinstance(job.producer, PythonCall)


@dataclass(frozen=True, slots=True)
class StepResult:
    node: NodeId  # the job's key
    outcome: Outcome
    started: float
    finished: float
    worker: int  # the worker that ran it (-1: decided by the scheduler, nothing ran)
    info: TableInfo | None = None
    exports: tuple[Export, ...] = ()
    error: str | None = None
    attempts: int = 1
    internal: str | None = None  # a traceback: odibi, not the node, failed
    halt: bool = False  # stop the whole build (a halting check failed)
    note: str | None = None  # what a check that only warns found

    @property
    def seconds(self) -> float:
        return self.finished - self.started


# -- making them -----------------------------------------------------------------------------
def make_jobs(prepared: Prepared, p: Plan) -> dict[NodeId, Job]:
    """The job of each step of `p` that runs, by node."""
    return {step.node: _job(prepared, step) for step in p.to_run()}


def _job(prepared: Prepared, step: PlannedStep) -> Job:
    resolved = prepared.resolved
    check = resolved.project.checks.get(step.node)
    if check is not None:
        if step.status is Status.RESTORE:  # the verdict on these very inputs is known
            return RestoreVerdict(step, prepared.stored[(step.node, step.fingerprint)])
        rule = resolved.checks[step.node]
        return CheckRule(step, rule, _current(rule.datasets), check.on_fail is OnFail.HALT,
                         _cutoff_candidate(prepared, step))
    node = resolved.project.nodes[step.node]
    writes = tuple((w, export_path(resolved, w)) for w in node.writes)
    match step.status:
        case Status.REBUILD:
            return Build(step, OutputRef.of(step.node, step.fingerprint),
                         _producer(resolved, node), _rules(resolved, node),
                         _current(resolved.deps(node.name)), writes, node.retry,
                         node.timeout, _cutoff_candidate(prepared, step))
        case Status.RESTORE:
            stored = prepared.stored[(step.node, step.fingerprint)]
            return Restore(step, stored, _version(stored), writes, node.retry, node.timeout)
        case Status.REVALIDATE:
            return _revalidate(resolved, step, node)
        case Status.REEXPORT:
            rules_changed = any(r.reason in _RULES_CHANGED for r in step.reasons)
            return Reexport(step, step.node, _version(prepared.traces[step.node]), writes,
                            node.retry, node.timeout,
                            _revalidate(resolved, step, node) if rules_changed else None)
        case Status.UP_TO_DATE | Status.BLOCKED | Status.CUT_OFF:
            raise ValueError(f"{step.node}: a step that is {step.status.value} does not run")
        case _:
            assert_never(step.status)


_RULES_CHANGED = (Reason.CONTRACTS_CHANGED, Reason.VALIDATE_CHANGED)


def _revalidate(resolved: Resolved, step: PlannedStep, node: Node) -> Revalidate:
    relations = {**_current(resolved.deps(node.name)), node.name: node.name}
    return Revalidate(step, _rules(resolved, node), relations, node.retry, node.timeout)


def _producer(resolved: Resolved, node: Node) -> Producer:
    spec = node.producer
    if isinstance(spec, ReadSpec):
        return Read(spec, resolved.project.connections[spec.connection], node)
    if isinstance(spec, SqlSpec):
        return Sql(spec.rendered, tuple(resolved.deps(node.name)))
    return python_call(resolved, node.name)


def python_call(resolved: Resolved, name: NodeId) -> PythonCall:
    """How a worker calls a Python node's function: each parameter that is a node gets
    that node's output (a function taking **inputs also gets its `depends_on`). Shared
    by builds and `odibi test`, so that a test calls the function as a build does."""
    fn = resolved.python[name]
    inputs = {p: NodeId(p) for p in fn.params if p in resolved.project.nodes}
    inputs.update({d: d for d in resolved.deps(name) if fn.var_keyword})
    return PythonCall(fn.module, fn.function, fn.file, resolved.project.python_path, inputs,
                      frozenset(p for p in fn.pandas if p in inputs))


def _rules(resolved: Resolved, node: Node) -> NodeRules:
    return resolved.rules.get(node.name) or NodeRules()


def _current(names: Iterable[str]) -> dict[str, Relation]:
    """Each node's current output, by name (what SQL reads when it names the node)."""
    return {n: NodeId(n) for n in names}


def _version(trace: Trace) -> OutputRef:
    """The stored version a node's record names (a node's always does; a check's never)."""
    if trace.stored is None:
        raise ValueError(f"a record of fingerprint {trace.fingerprint} names no stored "
                         "version: it is a check's")
    return trace.stored


_UPSTREAM_ONLY = (Reason.UPSTREAM_REBUILT, Reason.UPSTREAM_RERUN)


def _cutoff_candidate(prepared: Prepared, step: PlannedStep) -> Trace | None:
    return cutoff_candidate(step, prepared.traces.get(step.node),
                            prepared.resolved.graph.upstream(step.node),
                            outputs_in_order=step.node not in prepared.outputs)


def cutoff_candidate(step: PlannedStep, old: Trace | None, upstream: Iterable[NodeId], *,
                     outputs_in_order: bool) -> Trace | None:
    """The trace (`old`, its last) a node may keep if its upstream outputs come out
    unchanged: only for a node rebuilt for no reason of its own, built from the same
    upstream nodes, whose outputs and exports are in order."""
    if (step.status is not Status.REBUILD or old is None or not step.reasons or old.held
            or any(r.reason not in _UPSTREAM_ONLY for r in step.reasons)
            or old.write_key != step.own.write_key or not outputs_in_order
            or set(old.inputs) != set(upstream)):
        return None
    return old
