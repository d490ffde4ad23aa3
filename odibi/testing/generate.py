"""`odibi test --generate NODE`: a starter test from the last build.

Up to `rows` rows of each of the node's inputs are read from the warehouse, read-only,
from the table the build state points at (as `odibi show` does: a view can lag one build
behind): the first rows (sorted by all columns, so the sample is the same every time) of
the input the node's SQL names first, then, following the SQL's join keys (testing/joins.py),
the rows of each other input that join the rows already sampled, so that a sample of a join
joins. An input no key reaches (a Python node's, a cross join's, one read through a
subquery) and one whose rows match nothing sampled get their first rows. The node is then
run on exactly those rows, as `odibi test` runs it, and its output becomes the expected
rows. Every fixture carries a `schema:` of the warehouse's column types, so the rows mean
the same after their trip through YAML. The test passes as written; trim it to what
matters.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from odibi.config.model import ReadSpec, SqlSpec
from odibi.errors import UnknownNodeError, UsageError, did_you_mean
from odibi.ids import NodeId
from odibi.resolve import Resolved
from odibi.state import Trace
from odibi.sql import parse_tree
from odibi.testing.cases import load_cases
from odibi.testing.joins import JoinShape, SampleStep, join_shape, sampling_plan

CASE_NAME = "sample_of_last_build"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "tests"}


@dataclass(frozen=True, slots=True)
class Sample:
    columns: Sequence[str]
    types: Sequence[str]
    rows: Sequence[tuple[Any, ...]]


def test_path(resolved: Resolved, name: NodeId) -> Path:
    return resolved.project.root / "tests" / f"test_{name}.yaml"


def check_node(resolved: Resolved, name: NodeId) -> None:
    node = resolved.project.nodes.get(name)
    if node is None:
        raise UnknownNodeError(f"--generate: no node named '{name}'",
                               hint=did_you_mean(name, resolved.project.nodes))
    if isinstance(node.producer, ReadSpec):
        raise UsageError(f"--generate: '{name}' is a read node: there is no logic to test",
                         hint="generate a test for a node that reads it")


def sample_inputs(resolved: Resolved, name: NodeId, traces: Mapping[NodeId, Trace],
                  rows: int) -> dict[NodeId, Sample]:
    """Up to `rows` rows of each input of `name`, from the last build's warehouse: the
    first rows of the input its SQL names first (sorted by all columns), and of each other
    input the rows that join those already sampled (`sampling_plan`), else its first rows."""
    from odibi.engines.duckdb_engine import relation_sql
    from odibi.warehouse import built_outputs

    out: dict[NodeId, Sample] = {}
    with built_outputs(resolved, traces, resolved.deps(name)) as (engine, relations):
        con = engine.con  # type: ignore[attr-defined]
        tables = {i: relation_sql(r) for i, r in relations.items()}
        columns = {i: [d[0] for d in con.execute(f"SELECT * FROM {t} LIMIT 0").description]
                   for i, t in tables.items()}
        bodies: dict[str, str] = {}  # input -> the SELECT its sample came from
        for step in sampling_plan(_shape(resolved, name, columns)):
            i = NodeId(step.input)
            found = _matching(con, tables[i], step, columns[i], bodies, rows)
            if found is None:
                bodies[i] = f"SELECT * FROM {tables[i]} ORDER BY ALL LIMIT {int(rows)}"
                found = _fetch(con, bodies[i])
            out[i] = found
    return {i: out[i] for i in tables}


def _shape(resolved: Resolved, name: NodeId, columns: Mapping[NodeId, Sequence[str]]
           ) -> JoinShape:
    """The join keys of a SQL node between its inputs; none for a Python node."""
    producer = resolved.project.nodes[name].producer
    tree = parse_tree(producer.rendered) if isinstance(producer, SqlSpec) else None
    if tree is None:
        return JoinShape(tuple(columns), ())
    return join_shape(tree, columns)


def _matching(con: Any, table: str, step: SampleStep, columns: Sequence[str],
              bodies: dict[str, str], rows: int) -> Sample | None:
    """Up to `rows` rows of `table` that join, on every key of `step`, the samples taken
    before it: first each key value's first row (rows sorted by all columns), then each
    one's second row, and so on, so that every sampled key finds a partner before any
    finds two. None when nothing matches, or the keys cannot be compared."""
    import duckdb

    from odibi.engines.duckdb_sandbox import quote_ident as q

    if not step.match:
        return None
    names = {n: f"__odibi_sample_{k}" for k, n in enumerate(bodies)}
    exists, keys = [], []
    for key in step.match:
        other = key.other(step.input)
        on = " AND ".join(f"__odibi_y.{q(b)} = __odibi_x.{q(a)}" for a, b in
                          zip(key.columns_of(step.input), key.columns_of(other)))
        exists.append(f"EXISTS (SELECT 1 FROM {names[other]} AS __odibi_y WHERE {on})")
        keys += [c for c in key.columns_of(step.input) if c not in keys]
    cols = ", ".join(q(c) for c in columns)
    ctes = ", ".join(f"{names[n]} AS ({body})" for n, body in bodies.items())
    body = (f"SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY "
            f"{', '.join(q(c) for c in keys)} ORDER BY {cols}) AS __odibi_round "
            f"FROM {table} AS __odibi_x WHERE {' AND '.join(exists)}) "
            f"ORDER BY __odibi_round, {cols} LIMIT {int(rows)}")
    try:
        sample = _fetch(con, f"WITH {ctes} {body}")
    except duckdb.Error:
        return None
    if not sample.rows:
        return None
    bodies[step.input] = body
    return sample


def _fetch(con: Any, sql: str) -> Sample:
    found = con.execute(sql)
    return Sample([d[0] for d in found.description], [str(d[1]) for d in found.description],
                  found.fetchall())


def generate(resolved: Resolved, name: NodeId, samples: Mapping[NodeId, Sample]) -> str:
    """The text of a test file whose one case passes: the node's output on the samples."""
    from odibi.testing.runner import NodeFailed, produce, sandbox

    given = _given(samples)
    with tempfile.TemporaryDirectory(prefix="odibi-generate-") as tmp:
        draft = Path(tmp) / "test_draft.yaml"
        draft.write_text(_file(name, given, ["    expect: {rows: []}"]))
        case = load_cases(Path(tmp), draft.name)[0]
        con = sandbox([case], Path(tmp))
        try:
            output = produce(con, resolved, case, Path(tmp))
        except NodeFailed as e:
            raise UsageError(f"--generate: '{name}' fails on the sampled rows: {e}",
                             hint="a contract may need more rows than sampled: try --rows N"
                             ) from None
        finally:
            con.close()
    expect = ["    expect:",
              "      # its output on these inputs, from the node's logic as it is now"]
    expect += _data(Sample(output.columns, output.types, output.rows), "      ")
    return _file(name, given, expect)


def _file(name: NodeId, given: list[str], expect: list[str]) -> str:
    return "\n".join([
        f"# A starter test for {name}, generated by `odibi test --generate {name}` from a",
        "# sample of its inputs in the last build. Trim it to the rows that matter.",
        "tests:",
        f"  - name: {CASE_NAME}",
        f"    node: {name}",
        "    given:",
        *given,
        *expect,
    ]) + "\n"


def _given(samples: Mapping[NodeId, Sample]) -> list[str]:
    lines = []
    for dataset, sample in samples.items():
        lines.append(f"      {dataset}:")
        lines += _data(sample, "        ")
    return lines


def _data(sample: Sample, indent: str) -> list[str]:
    schema = ", ".join(f"{_key(c)}: {json.dumps(t)}" for c, t in zip(sample.columns, sample.types))
    lines = [f"{indent}schema: {{{schema}}}"]
    if not sample.rows:
        return lines + [f"{indent}rows: []"]
    lines.append(f"{indent}rows:")
    for row in sample.rows:
        cells = ", ".join(f"{_key(c)}: {_scalar(v)}" for c, v in zip(sample.columns, row))
        lines.append(f"{indent}  - {{{cells}}}")
    return lines


def _key(name: str) -> str:
    return name if _PLAIN_KEY.match(name) and name.lower() not in _YAML_WORDS \
        else json.dumps(name)


def _scalar(value: Any) -> str:
    """A value as a YAML flow scalar that reads back as the same value once the fixture's
    schema casts it (dates, decimals and the like go as text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, Decimal):
        return json.dumps(str(value))
    return json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)
