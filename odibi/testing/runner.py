"""Running test cases: one node's real logic on fixtures, in an in-memory DuckDB.

A case is run by the build's own `run_job` (odibi/jobs.py), on a job made as a build
makes it (the node's rendered SQL or its Python call, its contracts and validations), so
a test runs exactly what `odibi build` runs: input contracts -> compute -> validations.
Only where the data comes from differs: each input is a fixture table named after the
input node, and the output goes to a scratch table. No warehouse, no source file and no
build state is opened.

All cases share one in-memory database (a new one costs ~25 ms, a case ~8 ms); each
case runs on its own cursor and leaves the database empty when it is done.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odibi.config.model import PythonSpec, ReadSpec, SqlSpec
from odibi.config.substitute import Substituter
from odibi.errors import ConfigError, Span, did_you_mean
from odibi.ids import Digest, NodeId, Outcome, OutputRef, Status
from odibi.resolve import Resolved
from odibi.testing.cases import Case, Data
from odibi.testing.compare import RowDiff, compare

TEST_OUTPUT = OutputRef(NodeId("__odibi_test"), "output")  # where a case's node writes
OUTPUT = 'odibi_store."__odibi_test__output"'  # (the DuckDB table of TEST_OUTPUT)
EXPECTED = 'main."__odibi_test_expected"'
_MISSING_SQL_COLUMN = re.compile(
    r'(?:Referenced column "(?P<a>[^"]+)" not found'
    r'|Table "(?P<t>[^"]+)" does not have a column named "(?P<b>[^"]+)")')
_KEY_ERROR = re.compile(r"KeyError: '(?:Column not found: )?(?P<c>[^']+)'")


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
    """Run the cases, one after another, on one in-memory database. `check_case` first:
    a mistake in any case is raised before anything runs."""
    cases = list(cases)
    for case in cases:
        check_case(resolved, case)
    if not cases:
        return []
    results = []
    with tempfile.TemporaryDirectory(prefix="odibi-test-") as tmp:
        con = sandbox(cases, Path(tmp))
        try:
            for case in cases:
                result = run_case(con, resolved, case, Path(tmp))
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            con.close()
    return results


def sandbox(cases: Iterable[Case], tmp: Path) -> Any:
    """The in-memory DuckDB the cases run in: in odibi's sandbox, as a build's warehouse
    (a node's SQL reaches no file), reaching only the cases' fixture files and `tmp`
    (where inline csv fixtures are written)."""
    from odibi.engines.base import Access
    from odibi.engines.duckdb_sandbox import connect

    files = {d.file for c in cases for d in (*c.given.values(), c.expect) if d is not None
             and d.file is not None}
    con = connect(":memory:", Access(reads=tuple(sorted(files)), directories=(tmp,)))
    con.execute("CREATE SCHEMA odibi_store")  # where the node's output is stored
    return con


def run_case(con: Any, resolved: Resolved, case: Case, tmp: Path) -> CaseResult:
    """One case on a cursor of `con` (an in-memory database, left empty afterwards)."""
    started = time.perf_counter()
    done = _Done(case, started)
    with _cursor(con, case) as cur:
        result = _run_node(cur, resolved, case, tmp)
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
            load_fixture(cur, EXPECTED, case.expect, tmp)
            expected = _fetch(cur, EXPECTED)
        diff = compare(expected, _fetch(cur, OUTPUT), ordered=case.ordered,
                       subset=case.subset, tolerance=case.tolerance)
        return done.ok() if diff.ok else done.fail(diff.summary(), diff)


@dataclass(frozen=True, slots=True)
class Output:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]  # sorted by all columns


class NodeFailed(Exception):
    """The node failed on the fixtures (its message is the build's)."""


def produce(con: Any, resolved: Resolved, case: Case, tmp: Path) -> Output:
    """The case's node run on its fixtures: its output, in a stable order."""
    with _cursor(con, case) as cur:
        result = _run_node(cur, resolved, case, tmp)
        if result.outcome is Outcome.FAILED:
            raise NodeFailed(result.error or "failed")
        found = cur.execute(f"SELECT * FROM {OUTPUT} ORDER BY ALL")
        return Output([d[0] for d in found.description], [str(d[1]) for d in found.description],
                      found.fetchall())


@contextmanager
def _cursor(con: Any, case: Case) -> Iterator[Any]:
    cur = con.cursor()
    try:
        yield cur
    finally:  # (run_job has rolled back whatever it left unfinished)
        _empty(cur, case)
        cur.close()


def _run_node(cur: Any, resolved: Resolved, case: Case, tmp: Path) -> Any:
    """Load the fixtures and run the node's job as a build would: a StepResult."""
    from odibi.engines.duckdb_engine import DuckDBSession
    from odibi.engines.duckdb_sandbox import quote_ident
    from odibi.worker import run_job

    for dataset, data in case.given.items():
        load_fixture(cur, f"main.{quote_ident(dataset)}", data, tmp)
    result = run_job(make_job(resolved, case), DuckDBSession(cur), 0)
    if result.internal is not None:  # a bug in odibi, not in the node: say so in full
        raise RuntimeError(f"odibi failed running test {case.id}:\n{result.internal}")
    if result.outcome is Outcome.FAILED:
        _missing_column(cur, case, result.error or "")
    return result


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
def load_fixture(cur: Any, table: str, data: Data, tmp: Path) -> None:
    """A fixture as a table: rows through VALUES, csv text or a file through DuckDB's
    readers; `schema` gives the named columns their types. A fixture DuckDB cannot
    load is a ConfigError at the fixture."""
    import duckdb

    if data.schema:
        _check_types(cur, data)
    if data.rows is not None:
        select = _values(data.rows, data.schema)
    else:
        path = data.file
        if data.csv is not None:
            path = tmp / f"fixture_{time.perf_counter_ns()}.csv"
            path.write_text(data.csv)
        assert path is not None
        reader = "read_parquet" if path.suffix.lower() in (".parquet", ".pq") else "read_csv"
        select = f"SELECT * FROM {reader}({_string(str(path))})"
        if data.schema:
            select = _cast(select, data.schema, _columns(cur, select, data))
    try:
        cur.execute(f"CREATE OR REPLACE TABLE {table} AS {select}")
    except duckdb.Error as e:
        raise ConfigError(f"{data.what}: the fixture could not be loaded: {_first_line(e)}",
                          span=data.span) from None


def _check_types(cur: Any, data: Data) -> None:
    import duckdb

    for column, t in data.schema.items():
        try:
            cur.execute(f"SELECT CAST(NULL AS {t})")
        except duckdb.Error as e:
            raise ConfigError(f"{data.what}: schema: '{column}': {t!r} is not a DuckDB type "
                              f"({_first_line(e)})", span=data.schema_spans.get(column),
                              hint="types such as BIGINT, DOUBLE, VARCHAR, BOOLEAN, DATE, "
                                   "TIMESTAMP, DECIMAL(10,2)") from None


def _columns(cur: Any, select: str, data: Data) -> list[str]:
    """The columns a csv or parquet fixture has; every column its schema types must be one."""
    import duckdb

    try:
        columns = [d[0] for d in cur.execute(f"{select} LIMIT 0").description]
    except duckdb.Error as e:
        raise ConfigError(f"{data.what}: the fixture could not be read: {_first_line(e)}",
                          span=data.span) from None
    for c in data.schema:
        if c not in columns:
            raise ConfigError(f"{data.what}: the schema types '{c}', which the file does not have",
                              span=data.schema_spans.get(c),
                              hint=did_you_mean(c, columns) or f"columns: {', '.join(columns)}")
    return columns


def _values(rows: tuple[Mapping[str, Any], ...], schema: Mapping[str, str]) -> str:
    if not rows:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in schema.items())
        return f"SELECT {cols} WHERE false"
    columns = list(rows[0])
    body = ", ".join("(" + ", ".join(_literal(r[c]) for c in columns) + ")" for r in rows)
    select = f"SELECT * FROM (VALUES {body}) AS v({', '.join(_ident(c) for c in columns)})"
    return _cast(select, schema, columns) if schema else select


def _cast(select: str, schema: Mapping[str, str], columns: list[str]) -> str:
    """The columns in their order, those in `schema` cast to their types."""
    cols = ", ".join(f"CAST({_ident(c)} AS {schema[c]}) AS {_ident(c)}" if c in schema
                     else _ident(c) for c in columns)
    return f"SELECT {cols} FROM ({select})"


def _fetch(cur: Any, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    result = cur.execute(f"SELECT * FROM {table}")
    return [d[0] for d in result.description], result.fetchall()


def _empty(cur: Any, case: Case) -> None:
    """Drop what the case made: its fixtures, the output and expected tables, the node's
    view. (Nothing else can appear: a node is one SELECT, or a Python function that gets
    DataFrames; dropping known names is 1 ms per case cheaper than reading the catalog.)"""
    views = [case.node]
    tables = [*case.given, "__odibi_test_expected"]
    cur.execute("; ".join([*(f"DROP VIEW IF EXISTS main.{_ident(v)}" for v in views),
                           *(f"DROP TABLE IF EXISTS main.{_ident(t)}" for t in tables),
                           f"DROP TABLE IF EXISTS {OUTPUT}"]))


def _missing_column(cur: Any, case: Case, error: str) -> None:
    """A node that failed because a fixture lacks a column it reads: that is a mistake in
    the test (exit 2), named and located at the fixture."""
    found = _MISSING_SQL_COLUMN.search(error) or _KEY_ERROR.search(error)
    if found is None:
        return
    named = found.groupdict()
    column = str(named.get("a") or named.get("b") or named.get("c"))
    table = named.get("t")
    columns = {ds: [d[0] for d in cur.execute(f"SELECT * FROM main.{_ident(ds)} LIMIT 0")
                    .description] for ds in case.given}
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


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _literal(value: Any) -> str:
    """A YAML value as a DuckDB literal: floats as DOUBLE (as csv data would be read),
    dates and timestamps typed, lists and mappings as LIST and STRUCT."""
    import datetime
    import math

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value!r}::DOUBLE" if math.isfinite(value) else f"'{value}'::DOUBLE"
    if isinstance(value, datetime.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    return _string(str(value))
