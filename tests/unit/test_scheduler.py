"""The scheduler, exactly (ninja's build_test.cc over its FakeCommandRunner): plans made by
`odibi.planner.plan` from hand-made graphs, run by `odibi.executor.execute` on the fake
engine (`odibi.engines.memory`) and a real State in tmp_path. Each test asserts the exact
(node, outcome) sequence (-j 1) or the exact sets (-j N, fail-fast, keep-going, early
cutoff, restores, halting checks, timeouts, interrupts), what the engine was asked to do,
and what the state recorded. Nodes are held running with gates, never with sleeps; nothing
here imports duckdb or pandas, and each test runs in milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from odibi.config.model import WriteSpec
from odibi.engines.memory import MEMORY, Behaviour, MemoryEngine
from odibi.errors import Span
from odibi.events import NodeBlocked, NodeFinished, RecordingReporter
from odibi.executor import RunOptions, RunResult, execute
from odibi.jobs import (Build, CheckRule, Job, PythonCall, Reexport, Restore, RestoreVerdict,
                        Revalidate, Sql, cutoff_candidate)
from odibi.rulesets import NodeRules
from odibi.expr.check import RulePlan, Scope, compile_rules
from odibi.expr.parse import parse_rule
from odibi.fingerprint import SCHEME, OwnParts
from odibi.graph import build_graph
from odibi.hashing import digest_parts, digest_text
from odibi.ids import Format, NodeId, NodeKind, Outcome, OutputRef
from odibi.planner import (OutputCheck, Plan, PlanInputs, PlanOptions, Reason, Status,
                           plan)
from odibi.holds import HeldExport, HoldCause
from odibi.prepare import StoredVersions
from odibi.state import State, Trace

BUILT, CUT_OFF, RESTORED, FAILED, INTERRUPTED, PASSED, WARNED = (
    Outcome.BUILT, Outcome.CUT_OFF, Outcome.RESTORED, Outcome.FAILED, Outcome.INTERRUPTED,
    Outcome.PASSED, Outcome.WARNED)
SPAN = Span("<test>", 1, 1)
NO_TRANSACTIONS = replace(MEMORY, transactions=False)
WAIT = 5.0  # seconds a test waits for threads to meet, at most (they meet in microseconds)


# -- a hand-made project ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Spec:
    """One node of a test's project: a SQL node (what its SQL computes is the fake
    engine's `script`), or a check (`rule`)."""

    deps: tuple[str, ...] = ()
    sql: str | None = None  # None: a text of its own, naming its inputs
    writes: tuple[str, ...] = ()  # files it exports (CSV, under the project root)
    timeout: float | None = None
    rule: str | None = None  # a check node's rule
    halt: bool = True  # a check's on_fail
    python: str | None = None  # a Python node: its function in `transforms.py` (root)


def sql(*deps: str, text: str | None = None, writes: tuple[str, ...] = (),
        timeout: float | None = None) -> Spec:
    return Spec(tuple(deps), text, writes, timeout)


def check(rule: str, *deps: str, halt: bool = True) -> Spec:
    return Spec(tuple(deps), rule=rule, halt=halt)


def python(function: str, *deps: str) -> Spec:
    return Spec(tuple(deps), python=function)


def own_parts(name: str, spec: Spec) -> OwnParts:
    """OwnParts as odibi.fingerprint makes them: the SQL (or rule, or function) text stands
    for the parse tree; the writes stand for the write key."""
    kind = (NodeKind.CHECK if spec.rule is not None
            else NodeKind.PYTHON if spec.python is not None else NodeKind.SQL)
    text = spec.rule or spec.python or text_of(name, spec)
    config = {"on_fail": '"halt"' if spec.halt else '"warn"'} if spec.rule is not None else {}
    logic = digest_text(text)
    digest = digest_parts(str(SCHEME), kind.value, logic, json.dumps(config, sort_keys=True),
                          "{}", "[]", "{}")
    return OwnParts(kind, logic, config, {}, {}, digest, digest_text("no contracts"),
                    digest_text("no validate"), digest_text(repr(spec.writes)),
                    sql_text=text if kind is NodeKind.SQL else None,
                    text_digest=digest_text(text) if kind is NodeKind.SQL else None)


def text_of(name: str, spec: Spec) -> str:
    if spec.sql is not None:
        return spec.sql
    return f"SELECT * FROM {', '.join(spec.deps) or 'nothing'} -- {name}"


@dataclass
class Run:
    """One build: its plan, its result, and what it did."""

    plan: Plan
    result: RunResult
    events: list[object]
    calls: list[tuple[Any, ...]]  # the engine calls made while it ran

    @property
    def finished(self) -> list[tuple[str, Outcome]]:
        """(node, outcome) in the order the scheduler recorded them."""
        return [(e.node, e.outcome) for e in self.events if isinstance(e, NodeFinished)]

    def outcomes(self, outcome: Outcome) -> set[str]:
        return {n for n, o in self.finished if o is outcome}

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == method]


@dataclass
class World:
    """A project on the fake engine and a real State: build it, edit it, build again."""

    root: Path
    specs: dict[str, Spec]
    engine: MemoryEngine = field(default_factory=MemoryEngine)

    def __post_init__(self) -> None:
        self.state = State(self.root)
        self.graph = build_graph({NodeId(n): [NodeId(d) for d in s.deps]
                                  for n, s in self.specs.items()})

    def edit(self, name: str, **changes: Any) -> None:
        self.specs[name] = replace(self.specs[name], **changes)

    def script(self, **behaviours: Behaviour) -> None:
        self.engine.script.update({NodeId(n): b for n, b in behaviours.items()})

    def out(self, name: str) -> Path:
        return self.root / "out" / name

    def plan(self) -> tuple[Plan, dict[NodeId, Trace], StoredVersions,
                            dict[NodeId, OutputCheck]]:
        """What prepare.py would hand the planner: the state's records, its failures, and
        what the warehouse holds (and the plan made from them)."""
        traces = self.state.records.traces()
        catalog = self.engine.catalog()
        outputs = {n: OutputCheck(output_missing=t.stored not in catalog.stored,
                                  not_current=catalog.current.get(n) != t.stored)
                   for n, t in traces.items() if t.stored is not None
                   and (t.stored not in catalog.stored or catalog.current.get(n) != t.stored)}
        stored = StoredVersions(self.state, catalog.stored)
        inputs = PlanInputs(
            graph=self.graph, own={n: own_parts(n, self.specs[n]) for n in self.graph.names},
            traces=traces,
            failures={n: fp for n, (fp, _) in self.state.records.failures().items()},
            outputs=outputs, stored=stored, guards=self.guards())
        return plan(inputs, PlanOptions(frozenset(self.graph.names))), traces, stored, outputs

    def guards(self) -> dict[NodeId, tuple[NodeId, ...]]:
        """Each writer's halting checks: those among its descendants (odibi.guards)."""
        out: dict[NodeId, list[NodeId]] = {}
        for name, spec in sorted(self.specs.items()):
            if spec.rule is None or not spec.halt:
                continue
            seen, stack = set(), [NodeId(name)]
            while stack:
                for u in self.graph.upstream(stack.pop()):
                    if u not in seen:
                        seen.add(u)
                        stack.append(u)
            for u in self.graph.names:
                if u in seen and self.specs[u].writes:
                    out.setdefault(u, []).append(NodeId(name))
        return {n: tuple(g) for n, g in out.items()}

    def build(self, jobs: int = 1, *, fail_fast: bool = False,
              cancel: threading.Event | None = None) -> Run:
        p, traces, stored, outputs = self.plan()
        reporter = RecordingReporter()
        first = len(self.engine.calls)
        result = execute(make_jobs(self, p, traces, stored, outputs), self.graph, self.engine,
                         self.state, traces, reporter, RunOptions(jobs, fail_fast),
                         root=self.root, cancel=cancel)
        return Run(p, result, reporter.events, self.engine.calls[first:])

    def start(self, jobs: int = 1, **options: Any) -> Started:
        """A build in a thread of its own, for a test that holds its nodes running."""
        return Started(self, jobs, options)


class Started:
    def __init__(self, world: World, jobs: int, options: Mapping[str, Any]) -> None:
        self.run: Run | None = None
        self.thread = threading.Thread(target=self._build, args=(world, jobs, options),
                                       daemon=True)
        self.thread.start()

    def _build(self, world: World, jobs: int, options: Mapping[str, Any]) -> None:
        self.run = world.build(jobs, **options)

    def wait(self) -> Run:
        self.thread.join(WAIT)
        assert self.run is not None, "the build did not finish"
        return self.run


def make_jobs(world: World, p: Plan, traces: Mapping[NodeId, Trace],
              stored: StoredVersions, outputs: Mapping[NodeId, OutputCheck]
              ) -> dict[NodeId, Job]:
    """The jobs of a plan, as odibi.jobs.make_jobs makes them. Every Job of these tests is
    made here, and only here."""
    jobs: dict[NodeId, Job] = {}
    for step in p.to_run():
        spec = world.specs[step.node]
        relations = {d: NodeId(d) for d in spec.deps}
        cutoff = cutoff_candidate(step, traces.get(step.node), world.graph.upstream(step.node),
                                  outputs_in_order=step.node not in outputs)
        writes = tuple((WriteSpec("out", f, f, Format.CSV, {}, {}, SPAN), world.out(f))
                       for f in spec.writes)
        job: Job
        if spec.rule is not None:
            job = (RestoreVerdict(step, stored[(step.node, step.fingerprint)])
                   if step.status is Status.RESTORE
                   else CheckRule(step, rule_plan(spec), relations, spec.halt, cutoff))
        elif step.status is Status.RESTORE:
            version = stored[(step.node, step.fingerprint)]
            assert version.stored is not None
            job = Restore(step, version, version.stored, writes, timeout=spec.timeout)
        elif step.status is Status.REVALIDATE:
            job = Revalidate(step, NodeRules(), {**relations, step.node: step.node},
                             timeout=spec.timeout)
        elif step.status is Status.REEXPORT:
            current = traces[step.node].stored
            assert current is not None
            job = Reexport(step, step.node, current, writes, timeout=spec.timeout)
        else:
            producer = (PythonCall("transforms", spec.python, world.root / "transforms.py",
                                   (world.root,), relations)
                        if spec.python is not None else Sql(text_of(step.node, spec)))
            job = Build(step, OutputRef.of(step.node, step.fingerprint), producer, NodeRules(),
                        relations, writes, timeout=spec.timeout, cutoff=cutoff)
        jobs[step.node] = job
    return jobs


def rule_plan(spec: Spec) -> RulePlan:
    """A check's rule, compiled as odibi.rulesets compiles it (it reads its `deps`)."""
    assert spec.rule is not None
    return compile_rules([(spec.rule, parse_rule(spec.rule))],
                         Scope({d.lower(): d for d in spec.deps}))


def rows(*values: int) -> Behaviour:
    return Behaviour(rows=[{"x": v} for v in values])


# -- -j 1: the exact sequence ---------------------------------------------------------------
#   a -> b -> c        the longest path first: a, then b (2 to go) before d (1 to go),
#   a -> d             then c before e (a tie, broken by name), then e
#   e (alone)
WIDE = {"a": sql(), "b": sql("a"), "c": sql("b"), "d": sql("a"), "e": sql()}


def test_j1_runs_the_longest_remaining_path_first_in_exact_order(tmp_path: Path) -> None:
    run = World(tmp_path, dict(WIDE)).build()
    assert run.finished == [("a", BUILT), ("b", BUILT), ("c", BUILT), ("d", BUILT),
                            ("e", BUILT)]
    assert run.called("run_sql") == [("a",), ("b",), ("c",), ("d",), ("e",)]
    assert run.result.ok and run.result.blocked == {} and run.result.not_started == ()


def test_each_node_commits_its_output_then_is_current(tmp_path: Path) -> None:
    world = World(tmp_path, {"a": sql(), "b": sql("a")})
    run = world.build()
    fa = run.plan.by_name[NodeId("a")].fingerprint
    assert [c for c in run.calls if c[1:2] == ("a",) or c == ("commit",)][:4] == [
        ("run_sql", "a"), ("describe", "a"), ("make_current", "a", fa[:16]), ("commit",)]
    assert world.engine.catalog().current[NodeId("a")] == OutputRef.of(NodeId("a"), fa)


def test_a_second_build_runs_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, dict(WIDE))
    world.build()
    run = world.build()
    assert run.finished == [] and run.called("run_sql") == []
    assert all(s.status is Status.UP_TO_DATE for s in run.plan.steps)


# -- -j N: the exact sets, and slots never exceeded ------------------------------------------
@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_jN_runs_N_nodes_at_once_and_never_more(tmp_path: Path, jobs: int) -> None:
    gate = threading.Event()
    world = World(tmp_path, {n: sql() for n in "abcde"})
    world.script(**{n: Behaviour(gate=gate) for n in "abcde"})
    started = world.start(jobs)
    first = "abcde"[:jobs]  # (equal priorities: by name)
    assert world.engine.wait_running(*first, timeout=WAIT)
    time.sleep(0.02)  # time for one more node to start, if the scheduler let it
    assert set(world.engine.running) == set(first)
    gate.set()
    run = started.wait()
    assert run.outcomes(BUILT) == set("abcde")
    assert world.engine.max_running == jobs


def test_jN_starts_a_dependant_only_once_its_upstream_is_recorded(tmp_path: Path) -> None:
    gate = threading.Event()
    world = World(tmp_path, {"a": sql(), "b": sql("a"), "c": sql()})
    world.script(a=Behaviour(gate=gate))
    started = world.start(3)
    assert world.engine.wait_running("a", timeout=WAIT)
    time.sleep(0.02)
    assert "b" not in {c[1] for c in world.engine.calls if c[0] == "run_sql"}
    gate.set()
    run = started.wait()
    assert run.finished.index(("a", BUILT)) < run.finished.index(("b", BUILT))
    assert run.outcomes(BUILT) == {"a", "b", "c"}


# -- failures: fail-fast and keep-going ------------------------------------------------------
#   a -> d -> e      a fails; b, c are independent; f waits on both b and d
#   b -> f <- d
#   c
FAILING = {"a": sql(), "b": sql(), "c": sql(), "d": sql("a"), "e": sql("d"), "f": sql("b", "d")}


def test_keep_going_blocks_what_depends_on_a_failure_and_builds_the_rest(tmp_path: Path) -> None:
    world = World(tmp_path, dict(FAILING))
    world.script(a=Behaviour(error="Binder Error: no column z"))
    run = world.build(2)
    assert run.outcomes(FAILED) == {"a"}
    assert run.outcomes(BUILT) == {"b", "c"}
    assert run.result.blocked == {"d": "a", "e": "a", "f": "a"}
    assert {(e.node, e.because) for e in run.events if isinstance(e, NodeBlocked)} == {
        ("d", "a"), ("e", "a"), ("f", "a")}
    assert run.result.results[NodeId("a")].error == "Binder Error: no column z"
    assert run.result.not_started == () and not run.result.ok


def test_fail_fast_interrupts_what_runs_and_starts_nothing_new(tmp_path: Path) -> None:
    fail = threading.Event()
    world = World(tmp_path, dict(FAILING))
    # a (the longest path) and b start; b hangs until interrupted; a fails once b runs
    world.script(a=Behaviour(gate=fail, error="boom"), b=Behaviour(hang=True))
    started = world.start(2, fail_fast=True)
    assert world.engine.wait_running("a", "b", timeout=WAIT)
    fail.set()
    run = started.wait()
    assert run.finished == [("a", FAILED), ("b", INTERRUPTED)]
    assert run.result.blocked == {"d": "a", "e": "a", "f": "a"}
    assert run.result.not_started == ("c",)
    assert [c for c in run.calls if c[0] == "interrupt"] == [("interrupt", "b")]
    assert sorted(run.called("run_sql")) == [("a",), ("b",)]  # (at once: in either order)


def test_a_failure_and_an_interruption_are_recorded_differently(tmp_path: Path) -> None:
    fail = threading.Event()
    world = World(tmp_path, dict(FAILING))
    world.build()  # everything built once
    for n in ("a", "b", "c"):
        world.edit(n, sql=f"SELECT 2 -- {n}")
    world.script(a=Behaviour(gate=fail, error="boom"), b=Behaviour(hang=True))
    before = world.state.records.traces()
    started = world.start(2, fail_fast=True)
    assert world.engine.wait_running("a", "b", timeout=WAIT)
    fail.set()
    run = started.wait()
    fp = {n: run.plan.by_name[NodeId(n)].fingerprint for n in "abc"}
    assert world.state.records.failures() == {"a": (fp["a"], "boom")}
    after = world.state.records.traces()
    assert after == before  # nothing recorded: a failed, b interrupted, c never started
    assert world.engine.catalog().current == {n: t.stored for n, t in before.items()}
    again = world.plan()[0].by_name
    assert again[NodeId("a")].reasons[0].reason is Reason.LAST_BUILD_FAILED
    assert Reason.LAST_BUILD_FAILED not in {r.reason for r in again[NodeId("b")].reasons}


# -- early cutoff ---------------------------------------------------------------------------
CHAIN = {"a": sql(), "b": sql("a"), "c": sql("b")}


def test_an_unchanged_output_cuts_off_its_dependants_without_running_them(
        tmp_path: Path) -> None:
    world = World(tmp_path, dict(CHAIN))
    world.script(a=rows(1, 2))
    world.build()
    world.edit("a", sql="SELECT x FROM t -- rewritten, same rows")
    run = world.build()
    assert [(s.node, s.status) for s in run.plan.steps] == [
        ("a", Status.REBUILD), ("b", Status.REBUILD), ("c", Status.REBUILD)]
    assert run.finished == [("a", BUILT), ("b", CUT_OFF), ("c", CUT_OFF)]
    assert run.called("run_sql") == [("a",)]
    # their records move to the new fingerprints: the next build runs nothing
    assert {n: t.fingerprint for n, t in world.state.records.traces().items()} == {
        n: s.fingerprint for n, s in run.plan.by_name.items()}
    assert world.build().finished == []


def test_a_changed_output_rebuilds_until_an_output_comes_out_the_same(tmp_path: Path) -> None:
    world = World(tmp_path, dict(CHAIN))
    world.script(a=rows(1, 2))
    world.build()
    world.script(a=rows(1, 3))
    world.edit("a", sql="SELECT x FROM t -- new rows")
    run = world.build()
    # b's output is made from its own SQL text alone (the fake's default): the same again
    assert run.finished == [("a", BUILT), ("b", BUILT), ("c", CUT_OFF)]
    assert run.called("run_sql") == [("a",), ("b",)]


# -- restores -------------------------------------------------------------------------------
def test_a_revert_restores_every_node_in_one_transaction_without_computing(
        tmp_path: Path) -> None:
    world = World(tmp_path, dict(CHAIN))
    world.script(a=rows(1))
    first = world.build()
    world.script(a=rows(2))
    world.edit("a", sql="SELECT 2")
    world.build()
    world.script(a=rows(1))
    world.edit("a", sql=None)
    run = world.build()
    assert [(s.node, s.status) for s in run.plan.steps] == [
        ("a", Status.RESTORE), ("b", Status.RESTORE), ("c", Status.RESTORE)]
    assert run.finished == [("a", RESTORED), ("b", RESTORED), ("c", RESTORED)]
    version = {n: s.fingerprint[:16] for n, s in first.plan.by_name.items()}
    assert [c for c in run.calls if c[0] not in ("catalog", "stamp")] == [
        ("session",), ("begin",), ("make_current", "a", version["a"]),
        ("make_current", "b", version["b"]), ("make_current", "c", version["c"]),
        ("commit",)]
    assert world.engine.rows("a") == [{"x": 1}]
    assert {n: t.fingerprint for n, t in world.state.records.traces().items()} == {
        n: s.fingerprint for n, s in first.plan.by_name.items()}


def test_a_restore_after_a_computation_is_a_job_of_its_own(tmp_path: Path) -> None:
    # a is edited to a new SQL, b reverted to a version stored earlier: b restores through
    # a worker (it waits for a), in a transaction of its own; no run_sql for b
    world = World(tmp_path, {"a": sql(), "b": sql(), "c": sql("a", "b")})
    world.build()
    world.edit("b", sql="SELECT 2")
    world.build()
    world.edit("b", sql=None)
    world.edit("a", sql="SELECT 3")
    run = world.build()
    statuses = {s.node: s.status for s in run.plan.steps}
    assert statuses == {"a": Status.REBUILD, "b": Status.RESTORE, "c": Status.REBUILD}
    assert run.outcomes(RESTORED) == {"b"} and run.outcomes(BUILT) == {"a", "c"}
    assert run.called("run_sql") == [("a",), ("c",)]
    restore = run.calls.index(("make_current", "b", run.plan.by_name[NodeId("b")]
                               .fingerprint[:16]))
    assert run.calls[restore - 1] == ("begin",) and run.calls[restore + 1] == ("commit",)


def test_a_revert_to_a_version_the_warehouse_dropped_rebuilds_it(tmp_path: Path) -> None:
    world = World(tmp_path, {"a": sql(), "b": sql("a")})
    world.script(a=rows(1))
    first = world.build()
    world.script(a=rows(2))
    world.edit("a", sql="SELECT 2")
    world.build()
    old = OutputRef.of(NodeId("a"), first.plan.by_name[NodeId("a")].fingerprint)
    world.engine.drop([old], [])  # (as `odibi gc` does)
    world.script(a=rows(1))
    world.edit("a", sql=None)
    run = world.build()
    assert [(s.node, s.status) for s in run.plan.steps] == [
        ("a", Status.REBUILD), ("b", Status.RESTORE)]
    assert run.finished == [("a", BUILT), ("b", RESTORED)]
    assert run.called("run_sql") == [("a",)]
    assert world.engine.rows("a") == [{"x": 1}]


def test_without_transactions_restores_run_one_by_one(tmp_path: Path) -> None:
    world = World(tmp_path, dict(CHAIN), MemoryEngine(capabilities=NO_TRANSACTIONS))
    first = world.build()
    world.edit("a", sql="SELECT 2")
    world.build()
    world.edit("a", sql=None)
    run = world.build()
    assert run.finished == [("a", RESTORED), ("b", RESTORED), ("c", RESTORED)]
    version = {n: s.fingerprint[:16] for n, s in first.plan.by_name.items()}
    assert [c for c in run.calls if c[0] in ("begin", "make_current", "commit")] == [
        c for n in "abc" for c in (("begin",), ("make_current", n, version[n]), ("commit",))]


def test_without_transactions_a_failure_leaves_the_node_as_it_was(tmp_path: Path) -> None:
    # nothing is rolled back: what keeps a failure safe is that the new version is made
    # current last, after its exports (the version stays behind, an orphan for `gc`)
    world = World(tmp_path, {"a": sql(writes=("a.csv",)), "b": sql("a")},
                  MemoryEngine(capabilities=NO_TRANSACTIONS))
    world.build()
    before = world.engine.catalog().current
    world.edit("a", sql="SELECT 2")
    world.script(a=Behaviour(export_error="disk full"))
    run = world.build()
    assert run.finished == [("a", FAILED)] and run.result.blocked == {"b": "a"}
    assert world.engine.catalog().current == before
    new = OutputRef.of(NodeId("a"), run.plan.by_name[NodeId("a")].fingerprint)
    assert new in world.engine.catalog().stored


# -- timeouts and interrupts -----------------------------------------------------------------
def test_a_hanging_node_with_a_timeout_fails_quickly_and_blocks_its_dependants(
        tmp_path: Path) -> None:
    world = World(tmp_path, {"a": sql(timeout=0.05), "b": sql("a"), "c": sql()})
    world.script(a=Behaviour(hang=True))
    started = time.monotonic()
    run = world.build(2)
    assert time.monotonic() - started < 2.0
    assert run.outcomes(FAILED) == {"a"} and run.outcomes(BUILT) == {"c"}
    assert run.result.results[NodeId("a")].error == "timed out after 0.05s"
    assert run.result.blocked == {"b": "a"}
    assert world.state.records.failures()[NodeId("a")][1] == "timed out after 0.05s"
    assert ("interrupt", "a") in run.calls


def test_cancel_interrupts_running_nodes_and_keeps_the_finished_ones(tmp_path: Path) -> None:
    #   q -> a -> c     q finishes; a and b hang; cancel (Ctrl-C): a and b are
    #   q -> b          interrupted, c never starts, q stays recorded
    world = World(tmp_path, {"q": sql(), "a": sql("q"), "b": sql("q"), "c": sql("a")})
    world.script(a=Behaviour(hang=True), b=Behaviour(hang=True))
    cancel = threading.Event()
    started = world.start(2, cancel=cancel)
    assert world.engine.wait_running("a", "b", timeout=WAIT)
    cancel.set()
    run = started.wait()
    assert run.finished[0] == ("q", BUILT)
    assert set(run.finished[1:]) == {("a", INTERRUPTED), ("b", INTERRUPTED)}
    assert run.result.cancelled and run.result.not_started == ("c",)
    assert set(world.state.records.traces()) == {"q"} and world.state.records.failures() == {}
    assert set(world.engine.catalog().current) == {"q"}


# -- what the state records -------------------------------------------------------------------
def test_a_built_node_records_its_output_as_the_engine_described_it(tmp_path: Path) -> None:
    world = World(tmp_path, {"a": sql(), "b": sql("a", writes=("b.csv",))})
    world.script(a=rows(3, 1, 2))
    run = world.build()
    traces = world.state.records.traces()
    a, b = traces[NodeId("a")], traces[NodeId("b")]
    fa = run.plan.by_name[NodeId("a")].fingerprint
    assert a.stored == OutputRef.of(NodeId("a"), fa) and a.rows == 3 and a.schema == ("x BIGINT",)
    assert a.output == run.result.results[NodeId("a")].info.digest  # type: ignore[union-attr]
    assert b.inputs == {"a": a.output}
    assert [e.path for e in b.exports] == ["out/b.csv"]
    assert world.out("b.csv").read_text() == f"digest\n{digest_text(text_of('b', sql('a')))}\n"
    assert run.called("export") == [("b", world.out("b.csv"))]


# -- halting checks ---------------------------------------------------------------------------
#   a -> b (writes b.csv) -> chk: row_count(b) >= 2 (halt)      h: hangs      z: never starts
GUARDED = {"a": sql(), "b": sql("a", writes=("b.csv",)), "chk": check("row_count(b) >= 2", "b"),
           "h": sql(), "z": sql()}


def guarded_world(tmp_path: Path, *, halt: bool = True) -> tuple[World, threading.Event]:
    """GUARDED built once with the check holding; then a, h and z edited, b to come out
    with one row, b held until the test opens its gate, h hanging."""
    world = World(tmp_path, dict(GUARDED))
    world.edit("chk", halt=halt)
    world.script(b=rows(1, 2))
    first = world.build()
    assert first.outcomes(PASSED) == {"chk"} and world.out("b.csv").read_text() == "x\n1\n2\n"
    assert world.state.records.traces()[NodeId("b")].held == ()  # written once chk passed
    for n in ("a", "h", "z"):
        world.edit(n, sql=f"SELECT 2 -- {n}")
    gate = threading.Event()
    world.script(b=Behaviour(rows=[{"x": 1}], gate=gate), h=Behaviour(hang=True))
    return world, gate


def test_a_failing_halting_check_stops_the_build_and_holds_back_what_it_guards(
        tmp_path: Path) -> None:
    world, gate = guarded_world(tmp_path)
    started = world.start(2)
    assert world.engine.wait_running("b", "h", timeout=WAIT)  # a ran first (longest path)
    gate.set()
    run = started.wait()
    assert run.finished == [("a", BUILT), ("b", BUILT), ("chk", FAILED), ("h", INTERRUPTED)]
    assert run.result.results[NodeId("chk")].error == (
        "row_count(b) >= 2 failed on b: row_count(b) = 1")
    assert run.result.halted == "chk" and run.result.not_started == ("z",)
    assert run.result.held == {"b": HeldExport(("out/b.csv",), HoldCause.CHECK_FAILED, "chk")}
    assert run.called("export") == []
    assert world.out("b.csv").read_text() == "x\n1\n2\n"  # untouched
    b = world.state.records.traces()[NodeId("b")]
    assert b.held == ("chk",) and b.rows == 1
    assert world.engine.rows("b") == [{"x": 1}]  # its output is committed, its file is not


def test_a_warning_check_neither_stops_the_build_nor_holds_exports(tmp_path: Path) -> None:
    world, gate = guarded_world(tmp_path, halt=False)
    world.script(h=rows(7))
    gate.set()
    run = world.build(2)
    assert run.outcomes(WARNED) == {"chk"} and run.outcomes(BUILT) == {"a", "b", "h", "z"}
    assert run.result.held == {} and run.result.halted is None
    assert run.called("export") == [("b", world.out("b.csv"))]
    assert world.out("b.csv").read_text() == "x\n1\n"


def test_a_held_export_is_written_once_its_check_passes(tmp_path: Path) -> None:
    world, gate = guarded_world(tmp_path)
    world.script(h=rows(7))
    gate.set()
    world.build()
    world.edit("chk", rule="row_count(b) >= 1")
    run = world.build()
    # (h and z never ran in the halted build: they run now, after b's export, which waited
    # only for its check)
    assert run.finished == [("chk", PASSED), ("b", Outcome.EXPORTED), ("h", BUILT), ("z", BUILT)]
    assert world.out("b.csv").read_text() == "x\n1\n"
    assert world.state.records.traces()[NodeId("b")].held == ()


# -- Python nodes -----------------------------------------------------------------------------
TRANSFORMS = """
def double(a):
    return [{"x": r["x"] * 2} for r in a]

def broken(a):
    return len(a)
"""


def test_a_python_node_gets_its_inputs_as_the_engines_frames(tmp_path: Path) -> None:
    (tmp_path / "transforms.py").write_text(TRANSFORMS)
    world = World(tmp_path, {"a": sql(), "p": python("double", "a"), "c": sql("p"),
                             "q": python("broken", "a")})
    world.script(a=rows(1, 2))
    run = world.build(2)
    assert run.finished[0] == ("a", BUILT)
    assert run.outcomes(BUILT) == {"a", "p", "c"} and run.outcomes(FAILED) == {"q"}
    assert run.result.results[NodeId("q")].error == "must return a list of dicts, returned int"
    assert world.engine.rows("p") == [{"x": 2}, {"x": 4}]
    assert run.called("frames") == [("a",), ("a",)] and run.called("prepare_python") == [()]
    assert set(run.called("create_from_frame")) == {("p",), ("q",)}
    assert world.engine.max_running <= 2


# -- no heavy imports -------------------------------------------------------------------------
def test_the_scheduler_tests_import_neither_duckdb_nor_pandas() -> None:
    code = ("import sys; import tests.unit.test_scheduler; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('duckdb', 'pandas', 'pyarrow', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
