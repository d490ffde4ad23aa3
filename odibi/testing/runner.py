"""Running test cases: one node's real logic on fixtures, in a scratch engine.

A case is run by the build's own `run_job` (odibi/worker.py), on a job made as a build
makes it (the node's rendered SQL or its Python call, its contracts and validations), so
a test runs exactly what `odibi build` runs: input contracts -> compute -> validations.
Only where the data comes from differs: each input is a fixture loaded as the input
node's current output, and the output goes to a scratch version. No warehouse, no source
file and no build state is opened.

All cases share one scratch engine (`odibi.engines.open_scratch`), where the project's
SQL is written to run (its `sql_dialect`): DuckDB in memory (a new one costs ~25 ms, a
case ~5 ms), or a local Spark session for Spark SQL (~5-8 s to start on an idle machine,
then a few small Spark jobs a case); each case runs on a session of its own, which
forgets what the case made when it is done. Nothing here names an engine:
fixtures, rows and a failure's missing column are engine operations
(`odibi.engines.tools.ScratchSession`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

from odibi.config.model import Project, PythonSpec, ReadSpec, SqlSpec
from odibi.config.substitute import Substituter
from odibi.errors import ConfigError, Span, UsageError, did_you_mean
from odibi.ids import Digest, NodeId, Outcome, OutputRef, Status
from odibi.resolve import Resolved
from odibi.testing.cases import Case, Data
from odibi.testing.compare import RowDiff, compare

if TYPE_CHECKING:
    from odibi.engines.tools import FixtureError, Rows, Scratch, ScratchSession

TEST_OUTPUT = OutputRef(NodeId("__odibi_test"), "output")  # where a case's node writes
EXPECTED = NodeId("__odibi_test_expected")  # the expected rows, loaded as a fixture


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    ok: bool
    seconds: float
    message: str | None = None  # why it failed
    diff: RowDiff | None = None  # the rows, when the output differed


def check_case(resolved: Resolved, case: Case) -> None:
    """What a case says about the project holds: its node exists and computes something,
    its fixtures are exactly the node's inputs, its vars are project vars. Raises a
    located ConfigError."""
    project = resolved.project
    node = project.nodes.get(case.node)
    what = f"test '{case.name}'"
    if node is None:
        hint = did_you_mean(case.node, project.nodes)
        if case.node in project.checks:
            hint = "checks are rules over built data; odibi test runs nodes"
        raise ConfigError(f"{what}: no node named '{case.node}'", span=case.node_span, hint=hint)
    if isinstance(node.producer, ReadSpec):
        raise ConfigError(f"{what}: '{node.name}' is a read node: there is no logic to test",
                          span=case.node_span, hint="test the nodes that read it")
    inputs = resolved.deps(node.name)
    for dataset, data in case.given.items():
        if dataset not in inputs:
            raise ConfigError(f"{what}: '{node.name}' does not read '{dataset}'",
                              span=data.span, hint=did_you_mean(dataset, inputs)
                              or f"its inputs: {', '.join(inputs) or 'none'}")
    missing = [i for i in inputs if i not in case.given]
    if missing:
        raise ConfigError(f"{what}: '{node.name}' reads {', '.join(missing)}: give "
                          f"{'a fixture' if len(missing) == 1 else 'fixtures'} for "
                          f"{'it' if len(missing) == 1 else 'them'} under given:",
                          span=case.span, hint=f"given: {{{missing[0]}: {{rows: [...]}}}}")
    if case.vars and not isinstance(node.producer, SqlSpec):
        raise ConfigError(f"{what}: vars apply to a SQL node's ${{vars.NAME}}; "
                          f"'{node.name}' is a Python node", span=case.vars_span)
    unknown = [v for v in case.vars if v not in project.vars]
    if unknown:
        raise ConfigError(f"{what}: no variable '{unknown[0]}' in the project",
                          span=case.var_spans.get(unknown[0], case.vars_span),
                          hint=did_you_mean(unknown[0], project.vars)
                          or "vars override the project's vars: declare it in odibi.yaml")


def run_cases(resolved: Resolved, cases: Iterable[Case],
              on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Run the cases, one after another, in one scratch engine. `check_case` first: a
    mistake in any case is raised before anything runs."""
    cases = list(cases)
    for case in cases:
        check_case(resolved, case)
    if not cases:
        return []
    results = []
    scratch = open_for(cases, resolved.project)
    try:
        for case in cases:
            result = run_case(scratch, resolved, case)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        scratch.close()
    return results


def open_for(cases: Iterable[Case], project: Project) -> Scratch:
    """The scratch engine the cases run in: where the project's SQL is written to run
    (its `sql_dialect`). DuckDB's is sandboxed as a build's warehouse is (a node's SQL
    reaches no file), reaching only the cases' fixture files."""
    return open_files(fixture_files(cases), project)


def open_files(files: Iterable[Path], project: Project) -> Scratch:
    """A scratch engine for `project`'s cases, reaching `files`; what it needs and lacks
    (Spark: pyspark, Java) is a UsageError at the project's dialect, before anything runs."""
    from odibi.engines import open_scratch, scratch_problem
    from odibi.engines.base import Access

    problem = scratch_problem(project.sql_dialect)
    if problem is not None:
        raise UsageError(f"odibi test runs this project's cases on local Spark (its SQL "
                         f"is Spark SQL): {problem.message}",
                         span=project.sql_dialect_span or project.build_target.span,
                         hint=problem.hint)
    return open_scratch(Access(reads=tuple(sorted(files))), project.sql_dialect)


def fixture_files(cases: Iterable[Case]) -> set[Path]:
    """The files the cases' fixtures (given and expected) are read from."""
    return {d.file for c in cases for d in (*c.given.values(), c.expect)
            if d is not None and d.file is not None}


def run_case(scratch: Scratch, resolved: Resolved, case: Case) -> CaseResult:
    """One case, on a session of its own (which forgets what the case made)."""
    started = time.perf_counter()
    done = _Done(case, started)
    with _session(scratch) as session:
        result = _run_node(session, resolved, case)
        if result.outcome is Outcome.FAILED:
            error = result.error or "failed"
            if case.error is None:
                return done.fail(f"{case.node} failed: {error}")
            if case.error not in error:
                return done.fail(f"expected an error containing {case.error!r}, got: {error}")
            return done.ok()
        if case.error is not None:
            rows = result.info.rows if result.info else "its"
            return done.fail(f"expected an error containing {case.error!r}, but {case.node} "
                             f"succeeded ({rows} rows)")
        assert case.expect is not None
        expected: tuple[list[str], list[tuple[Any, ...]]] = ([], [])
        if case.expect.rows != () or case.expect.schema:  # (`rows: []`: no rows, any columns)
            load_fixture(session, EXPECTED, case.expect)
            expected = _listed(session.rows(EXPECTED))
        diff = compare(expected, _listed(session.rows(TEST_OUTPUT)), ordered=case.ordered,
                       subset=case.subset, tolerance=case.tolerance)
        return done.ok() if diff.ok else done.fail(diff.summary(), diff)


class NodeFailed(Exception):
    """The node failed on the fixtures (its message is the build's)."""


def produce(scratch: Scratch, resolved: Resolved, case: Case) -> Rows:
    """The case's node run on its fixtures: its output, sorted by all its columns."""
    with _session(scratch) as session:
        result = _run_node(session, resolved, case)
        if result.outcome is Outcome.FAILED:
            raise NodeFailed(result.error or "failed")
        return session.rows(TEST_OUTPUT, order=True)


@contextmanager
def _session(scratch: Scratch) -> Iterator[ScratchSession]:
    session = scratch.session()
    try:
        yield session
    finally:  # (run_job has rolled back whatever it left unfinished)
        try:
            session.clear()
        finally:
            session.close()


def _run_node(session: ScratchSession, resolved: Resolved, case: Case) -> Any:
    """Load the fixtures and run the node's job as a build would: a StepResult."""
    from odibi.worker import run_job

    for dataset, data in case.given.items():
        load_fixture(session, NodeId(dataset), data)
    result = run_job(make_job(resolved, case), session, 0)
    if result.internal is not None:  # a bug in odibi, not in the node: say so in full
        raise RuntimeError(f"odibi failed running test {case.id}:\n{result.internal}")
    if result.outcome is Outcome.FAILED:
        _missing_column(session, case, result.error or "")
    return result


def _listed(found: Rows) -> tuple[list[str], list[tuple[Any, ...]]]:
    return list(found.columns), list(found.rows)


@dataclass(frozen=True, slots=True)
class _Done:
    case: Case
    started: float

    def ok(self) -> CaseResult:
        return CaseResult(self.case, True, time.perf_counter() - self.started)

    def fail(self, message: str, diff: RowDiff | None = None) -> CaseResult:
        return CaseResult(self.case, False, time.perf_counter() - self.started, message, diff)


def make_job(resolved: Resolved, case: Case) -> Any:
    """The job a build would run for the case's node, reading its inputs from the fixture
    tables and writing its output to a scratch table (no exports, no retries)."""
    from odibi.jobs import Build, Sql, python_call
    from odibi.rulesets import NodeRules

    node = resolved.project.nodes[case.node]
    spec = node.producer
    if isinstance(spec, SqlSpec):
        producer: Any = Sql(_sql(resolved, spec, case))
    else:
        assert isinstance(spec, PythonSpec)
        producer = python_call(resolved, node.name)
    return Build(_step(node.name, node.kind), TEST_OUTPUT, producer,
                 resolved.rules.get(node.name) or NodeRules(),
                 {i: NodeId(i) for i in resolved.deps(node.name)}, timeout=node.timeout)


def _step(name: NodeId, kind: Any) -> Any:
    """A planned step to run: a test has no fingerprint (nothing is recorded)."""
    from odibi.fingerprint import OwnParts
    from odibi.planner import PlannedStep

    none = Digest("")
    own = OwnParts(kind, none, {}, {}, {}, none, none, none, none)
    return PlannedStep(name, kind, Status.REBUILD, (), none, {}, own)


def _sql(resolved: Resolved, spec: SqlSpec, case: Case) -> str:
    """The node's SQL, with the case's vars over the project's (rendered by the same
    substitution the project loader uses)."""
    if not case.vars:
        return spec.rendered
    sub = Substituter({**resolved.project.vars, **case.vars}, os.environ)
    return sub.render(spec.template, spec.origin, f"node '{case.node}'")


# -- fixtures --------------------------------------------------------------------------------
def load_fixture(session: ScratchSession, node: NodeId, data: Data) -> None:
    """A fixture as the current output of `node`: rows, csv text or a file; `schema`
    gives the named columns their types. A fixture the engine cannot load is a
    ConfigError at the fixture."""
    from odibi.engines.tools import Fixture, FixtureError

    try:
        session.load(node, Fixture(data.rows, data.csv, data.file, data.schema))
    except FixtureError as e:
        raise _fixture_error(data, e) from None


def _fixture_error(data: Data, e: FixtureError) -> ConfigError:
    from odibi.engines.tools import FixtureProblem

    match e.problem:
        case FixtureProblem.TYPE:
            column = e.column or "?"
            return ConfigError(
                f"{data.what}: schema: '{column}': {data.schema.get(column)!r} is not a "
                f"{e.engine or 'known'} type ({e.detail})", span=data.schema_spans.get(column),
                hint=f"types such as {e.examples}" if e.examples else None)
        case FixtureProblem.UNREADABLE:
            return ConfigError(f"{data.what}: the fixture could not be read: {e.detail}",
                               span=data.span)
        case FixtureProblem.NO_COLUMN:
            column = e.column or "?"
            return ConfigError(
                f"{data.what}: the schema types '{column}', which the file does not have",
                span=data.schema_spans.get(column),
                hint=did_you_mean(column, e.columns) or f"columns: {', '.join(e.columns)}")
        case FixtureProblem.UNLOADABLE:
            return ConfigError(f"{data.what}: the fixture could not be loaded: {e.detail}",
                               span=data.span)
        case _:
            assert_never(e.problem)


def _missing_column(session: ScratchSession, case: Case, error: str) -> None:
    """A node that failed because a fixture lacks a column it reads: that is a mistake in
    the test (exit 2), named and located at the fixture."""
    found = session.missing_column(error)
    if found is None:
        return
    column, table = found.column, found.table
    columns = {ds: list(session.columns(NodeId(ds))) for ds in case.given}
    if any(column.lower() == c.lower() for cs in columns.values() for c in cs):
        return  # the column is there: the failure is the node's own
    where = [ds for ds in case.given if table is not None and ds.lower() == table.lower()]
    if not where and len(case.given) == 1:
        where = list(case.given)
    span: Span = case.given[where[0]].span if where else case.span
    has = f"the fixture '{where[0]}' has no" if where else \
        f"none of the fixtures ({', '.join(case.given)}) has a"
    known = columns[where[0]] if where else [c for cs in columns.values() for c in cs]
    raise ConfigError(f"test '{case.name}': {has} column '{column}', which '{case.node}' "
                      f"reads ({error.splitlines()[0]})", span=span,
                      hint=did_you_mean(column, known) or f"add '{column}' to the fixture")
