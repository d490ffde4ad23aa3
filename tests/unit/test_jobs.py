"""Jobs (odibi.jobs), running one (odibi.worker), and the pool (odibi.pool).

The job `make_jobs` makes for each planned status and kind of node, with its exact
fields, on a real project planned by the real planner after real builds; an export task
as `odibi.holds` splits it off; what a timeout does with and without an engine that
interrupts in place; and that the pool knows which session runs which job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from odibi.builder import load, make_plan, open_state, prepare
from odibi.config.model import Retry
from odibi.engines import open_engine
from odibi.config.model import WriteSpec
from odibi.engines.base import Access, EngineInterrupted, EngineOptions, Session
from odibi.errors import Span
from odibi.fingerprint import OwnParts
from odibi.holds import split
from odibi.ids import Digest, Format, NodeId, NodeKind, Outcome, OutputRef, Status
from odibi.jobs import (Build, CheckRule, Job, PythonCall, Read, Reexport, Restore,
                        RestoreVerdict, Revalidate, Sql, StepResult, make_jobs, prepares)
from odibi.planner import Plan, PlannedStep
from odibi.pool import Pool, Unstarted
from odibi.prepare import Prepared
from odibi.rulesets import NodeRules
from odibi.worker import Hooks, run_job
from tests.conftest import run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: jobs
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: out}
        vars: {floor: 1}
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv, format: csv}
            contracts: [row_count > 0]
          - name: orders
            sql: SELECT * FROM raw_orders WHERE amount > ${vars.floor}
            validate: [not_null(id)]
            retry: {attempts: 3, backoff: 0.5}
            timeout: 30
            write: {connection: out, path: orders.csv, format: csv}
          - name: scored
            python: transforms.score:score
        checks:
          - name: enough
            assert: row_count(orders) > 0
            on_fail: warn
        """,
    "data/orders.csv": "id,amount\n1,5\n2,7\n",
    "transforms/__init__.py": "",
    "transforms/score.py": "def score(orders):\n    return orders\n",
}
GUARDED = PROJECT["odibi.yaml"].replace("on_fail: warn", "on_fail: halt")
RAW, ORDERS, SCORED, ENOUGH = (NodeId(n) for n in ("raw_orders", "orders", "scored", "enough"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_files(tmp_path / "proj", PROJECT)


def planned(root: Path, forced: frozenset[NodeId] = frozenset()
            ) -> tuple[Prepared, Plan, dict[NodeId, Job]]:
    """The project as `odibi build` would plan it now, and the jobs made for its plan."""
    state = open_state(root, writable=True)
    try:
        resolved = load(root, [], state)
        prepared = prepare(resolved, state)
        p = make_plan(prepared, frozenset(resolved.graph.names), forced)
        return prepared, p, make_jobs(prepared, p)
    finally:
        state.close()


def build(root: Path) -> None:
    result = run_cli("build", "-C", str(root), "-j", "1")
    assert result.code == 0, result.text


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# -- what make_jobs makes, for each status and kind ------------------------------------------
def test_a_first_build_makes_a_build_per_node_with_its_producer_and_a_check_rule(
        root: Path) -> None:
    prepared, p, jobs = planned(root)
    resolved, step = prepared.resolved, p.by_name
    project = resolved.project
    assert list(jobs) == [RAW, ORDERS, ENOUGH, SCORED]  # (build order)
    assert jobs[RAW] == Build(
        step[RAW], OutputRef.of(RAW, step[RAW].fingerprint),
        Read(project.nodes[RAW].producer, project.connections["raw"],  # type: ignore[arg-type]
             project.nodes[RAW]),
        resolved.rules[RAW], {})
    assert jobs[ORDERS] == Build(
        step[ORDERS], OutputRef.of(ORDERS, step[ORDERS].fingerprint),
        Sql("SELECT * FROM raw_orders WHERE amount > 1", (RAW,)), resolved.rules[ORDERS],
        {"raw_orders": RAW}, ((project.nodes[ORDERS].writes[0], root / "out" / "orders.csv"),),
        Retry(3, 0.5), 30.0)
    assert jobs[SCORED] == Build(
        step[SCORED], OutputRef.of(SCORED, step[SCORED].fingerprint),
        PythonCall("transforms.score", "score", root / "transforms" / "score.py", (root,),
                   {"orders": ORDERS}),
        NodeRules(), {"orders": ORDERS})
    assert jobs[ENOUGH] == CheckRule(step[ENOUGH], resolved.checks[ENOUGH],
                                     {"orders": ORDERS}, halt=False)
    assert [n for n, j in jobs.items() if prepares(j)] == [SCORED]


def test_a_revert_makes_restores_of_the_stored_versions_and_of_the_verdict(root: Path) -> None:
    build(root)
    first, _, _ = planned(root)
    edit(root / "odibi.yaml", "floor: 1", "floor: 6")
    build(root)
    edit(root / "odibi.yaml", "floor: 6", "floor: 1")
    prepared, p, jobs = planned(root)
    assert {s.node: s.status for s in p.to_run()} == {
        ORDERS: Status.RESTORE, SCORED: Status.RESTORE, ENOUGH: Status.RESTORE}
    orders = first.traces[ORDERS]
    assert orders.stored is not None
    assert jobs[ORDERS] == Restore(
        p.by_name[ORDERS], orders, orders.stored,
        ((prepared.resolved.project.nodes[ORDERS].writes[0], root / "out" / "orders.csv"),),
        Retry(3, 0.5), 30.0)
    assert jobs[SCORED] == Restore(p.by_name[SCORED], first.traces[SCORED],
                                   OutputRef.of(SCORED, first.traces[SCORED].fingerprint))
    assert jobs[ENOUGH] == RestoreVerdict(p.by_name[ENOUGH], first.traces[ENOUGH])


def test_changed_rules_make_a_revalidation_that_reads_the_current_output(root: Path) -> None:
    build(root)
    edit(root / "odibi.yaml", "validate: [not_null(id)]", "validate: [unique(id)]")
    prepared, p, jobs = planned(root)
    assert list(jobs) == [ORDERS]
    assert jobs[ORDERS] == Revalidate(p.by_name[ORDERS], prepared.resolved.rules[ORDERS],
                                      {"raw_orders": RAW, "orders": ORDERS},
                                      Retry(3, 0.5), 30.0)


def test_a_missing_export_makes_a_reexport_of_the_current_version(root: Path) -> None:
    build(root)
    (root / "out" / "orders.csv").unlink()
    prepared, p, jobs = planned(root)
    writes = ((prepared.resolved.project.nodes[ORDERS].writes[0], root / "out" / "orders.csv"),)
    current = prepared.traces[ORDERS].stored
    assert current is not None
    assert jobs == {ORDERS: Reexport(p.by_name[ORDERS], ORDERS, current, writes,
                                     Retry(3, 0.5), 30.0, revalidate=None)}
    # with its rules changed too, they run first: the re-export carries its revalidation
    edit(root / "odibi.yaml", "validate: [not_null(id)]", "validate: [unique(id)]")
    prepared, p, jobs = planned(root)
    assert jobs == {ORDERS: Reexport(
        p.by_name[ORDERS], ORDERS, current, writes, Retry(3, 0.5), 30.0,
        revalidate=Revalidate(p.by_name[ORDERS], prepared.resolved.rules[ORDERS],
                              {"raw_orders": RAW, "orders": ORDERS}, Retry(3, 0.5), 30.0))}


def test_a_node_rebuilt_only_for_its_upstream_may_keep_its_record(root: Path) -> None:
    build(root)
    # the read node reruns (forced): what it feeds may be cut off if it reads the same
    prepared, p, jobs = planned(root, forced=frozenset({RAW}))
    assert {s.node: s.status for s in p.to_run()} == {
        RAW: Status.REBUILD, ORDERS: Status.REBUILD, SCORED: Status.REBUILD,
        ENOUGH: Status.REBUILD}
    assert {n: j.cutoff for n, j in jobs.items() if isinstance(j, (Build, CheckRule))} == {
        RAW: None, ORDERS: prepared.traces[ORDERS], SCORED: prepared.traces[SCORED],
        ENOUGH: prepared.traces[ENOUGH]}


def test_a_guarded_export_is_split_off_to_an_export_task(tmp_path: Path) -> None:
    root = write_files(tmp_path / "proj", {**PROJECT, "odibi.yaml": GUARDED})
    _, p, jobs = planned(root)
    assert p.by_name[ORDERS].export_waits == (ENOUGH,)
    out, tasks = split(jobs)
    task = NodeId("orders:export")
    built = jobs[ORDERS]
    assert isinstance(built, Build)
    assert out[ORDERS] == Build(built.step, built.output, built.producer, built.rules,
                                built.relations, (), Retry(3, 0.5), 30.0, held=(ENOUGH,))
    step = out[task].step
    assert out[task] == Reexport(step, task, built.output, built.writes, Retry(3, 0.5), 30.0)
    assert step.status is Status.REEXPORT and step.node == ORDERS
    assert (tasks.task, tasks.node) == ({ORDERS: task}, {task: ORDERS})


# -- running one job: timeouts ---------------------------------------------------------------
SLOW = "SELECT count(*) AS n FROM range(300000000) t(i) WHERE i % 7 = 3"  # ~0.7 s


class Watched:
    """A real DuckDB session, and what happened to it."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def interrupt(self) -> None:
        self.seen.append("interrupt")
        self.session.interrupt()

    def run_sql(self, out: OutputRef, sql: str, inputs: tuple = ()) -> int:
        try:
            rows = self.session.run_sql(out, sql, inputs)
        except EngineInterrupted:
            self.seen.append("run_sql interrupted")
            raise
        self.seen.append("run_sql finished")
        return rows

    def make_current(self, node: NodeId, out: OutputRef) -> None:
        self.seen.append("make_current")
        self.session.make_current(node, out)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / ".odibi").mkdir()
    engine = open_engine(tmp_path, EngineOptions())
    yield engine
    engine.close()


def slow_build(timeout: float) -> Build:
    node = NodeId("slow")
    none = Digest("")
    own = OwnParts(NodeKind.SQL, none, {}, {}, {}, none, none, none, none)
    step = PlannedStep(node, NodeKind.SQL, Status.REBUILD, (), none, {}, own)
    return Build(step, OutputRef(node, "v1"), Sql(SLOW), NodeRules(), {},
                 retry=Retry(2), timeout=timeout)


def test_a_timeout_interrupts_the_query_in_place_when_the_engine_can(engine: Any) -> None:
    session = Watched(engine.session())
    result = run_job(slow_build(0.1), session, 0, Hooks(interrupt=True))
    assert (result.outcome, result.error, result.attempts) == (
        Outcome.FAILED, "timed out after 0.1s", 2)
    assert session.seen == ["interrupt", "run_sql interrupted"] * 2
    assert OutputRef(NodeId("slow"), "v1") not in engine.catalog().stored


def test_without_in_place_interrupt_a_timed_out_job_finishes_its_step_and_never_commits(
        engine: Any) -> None:
    session = Watched(engine.session())
    result = run_job(slow_build(0.1), session, 0, Hooks(interrupt=False))
    assert (result.outcome, result.error, result.attempts) == (
        Outcome.FAILED, "timed out after 0.1s", 2)
    # the query ran to its end; the job stopped before making it current, and rolled back
    assert session.seen == ["run_sql finished"] * 2
    catalog = engine.catalog()
    assert OutputRef(NodeId("slow"), "v1") not in catalog.stored
    assert NodeId("slow") not in catalog.current


def test_without_in_place_interrupt_a_timed_out_job_writes_no_export(tmp_path: Path) -> None:
    """Past its timeout, the job goes no further than the step it was in: its exports are
    not rewritten (the previous file stays), though the sandbox would let them be."""
    dest = tmp_path / "out" / "slow.csv"
    dest.parent.mkdir()
    dest.write_text("n\nprevious\n")
    (tmp_path / ".odibi").mkdir()
    engine = open_engine(tmp_path, EngineOptions(access=Access(writes=(dest,))))
    try:
        write = WriteSpec("out", "slow.csv", "slow.csv", Format.CSV, {}, {}, Span("x", 1, 1))
        job = replace(slow_build(0.1), writes=((write, dest),))
        result = run_job(job, engine.session(), 0, Hooks(interrupt=False))
        assert (result.outcome, result.error) == (Outcome.FAILED, "timed out after 0.1s")
        assert dest.read_text() == "n\nprevious\n"
        # the same job with time to spare writes it (the sandbox is not what stopped it)
        done = run_job(replace(job, timeout=60.0), engine.session(), 0, Hooks(interrupt=False))
        assert done.outcome is Outcome.BUILT and dest.read_text().startswith("n\n")
        assert dest.read_text() != "n\nprevious\n"
    finally:
        engine.close()


# -- the pool: what runs where is the scheduler's own knowledge ------------------------------
def sql_build(name: str, sql: str) -> Build:
    job = slow_build(5.0)
    step = PlannedStep(NodeId(name), NodeKind.SQL, Status.REBUILD, (), job.step.fingerprint,
                       {}, job.step.own)
    return Build(step, OutputRef(NodeId(name), "v1"), Sql(sql), NodeRules(), {})


def test_the_pool_knows_which_worker_runs_what_and_interrupts_only_that_session(
        engine: Any) -> None:
    pool = Pool(engine, 2)
    try:
        pool.start(sql_build("slow", SLOW))
        pool.start(sql_build("quick", "SELECT 1 AS x"))
        assert not pool.idle and pool.handed == {"slow", "quick"}
        results = {}
        deadline = time.time() + 10
        while ("quick" not in results or "slow" not in pool.running) and time.time() < deadline:
            message = pool.next(timeout=0.1)
            if isinstance(message, StepResult):
                results[message.node] = message
        assert results["quick"].outcome is Outcome.BUILT
        assert pool.handed == {"slow"} and pool.idle
        slow_worker = pool.running["slow"]
        assert slow_worker != results["quick"].worker
        pool.stop()
        message = pool.next(timeout=10.0)
        assert isinstance(message, StepResult)
        assert (message.node, message.outcome, message.worker) == (
            "slow", Outcome.INTERRUPTED, slow_worker)
        assert pool.handed == set() and pool.running == {}
    finally:
        pool.close()


def test_a_job_no_worker_took_before_the_build_stopped_is_called_off(engine: Any) -> None:
    """One worker busy with a slow job, a second job waiting for it: the build stops. The
    waiting one is called off, never run (the running one ends, interrupted or not: an
    interrupt that comes before its query starts is lost, which is why the flag exists)."""
    pool = Pool(engine, 1)
    try:
        pool.start(sql_build("slow", SLOW))
        pool.start(sql_build("next", "SELECT 1 AS x"))
        deadline = time.time() + 10
        while "slow" not in pool.running and time.time() < deadline:
            pool.next(timeout=0.1)
        pool.stop()
        messages: dict[str, object] = {}
        while len(messages) < 2 and time.time() < deadline:
            message = pool.next(timeout=0.1)
            if isinstance(message, (StepResult, Unstarted)):
                messages[message.node] = message
        assert isinstance(messages["slow"], StepResult)
        assert messages["next"] == Unstarted(NodeId("next"))
        assert OutputRef(NodeId("next"), "v1") not in engine.catalog().stored
    finally:
        pool.close()
