"""`odibi test --generate NODE`: a starter test from the last build.

Up to `rows` rows of each of the node's inputs are read from the warehouse, read-only,
from the version the build state points at (as `odibi show` does: after a restore-only
build the warehouse catches up one build later): the first rows (sorted by all columns, so the sample is the same every time) of
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
from decimal import Decimal
from pathlib import Path
from typing import Any

from odibi.config.model import ReadSpec, SqlSpec
from odibi.engines.tools import Rows
from odibi.errors import UnknownNodeError, UsageError, did_you_mean
from odibi.ids import NodeId
from odibi.resolve import Resolved
from odibi.state import Trace
from odibi.sql import parse_tree
from odibi.testing.cases import load_cases
from odibi.testing.joins import JoinShape, join_shape, sampling_plan

CASE_NAME = "sample_of_last_build"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "tests"}


Sample = Rows  # an input's sample, or the node's output on the samples


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
    from odibi.engines import sample
    from odibi.warehouse import built_outputs

    with built_outputs(resolved, traces, resolved.deps(name)) as (engine, relations):
        session = engine.session()
        try:
            columns = {i: list(session.columns(r)) for i, r in relations.items()}
        finally:
            session.close()
        found = sample(engine, relations, sampling_plan(_shape(resolved, name, columns)), rows)
    return {i: found[i] for i in relations}


def _shape(resolved: Resolved, name: NodeId, columns: Mapping[NodeId, Sequence[str]]
           ) -> JoinShape:
    """The join keys of a SQL node between its inputs; none for a Python node."""
    producer = resolved.project.nodes[name].producer
    tree = parse_tree(producer.rendered) if isinstance(producer, SqlSpec) else None
    if tree is None:
        return JoinShape(tuple(columns), ())
    return join_shape(tree, columns)


def generate(resolved: Resolved, name: NodeId, samples: Mapping[NodeId, Sample]) -> str:
    """The text of a test file whose one case passes: the node's output on the samples."""
    from odibi.testing.runner import NodeFailed, open_for, produce

    given = _given(samples)
    with tempfile.TemporaryDirectory(prefix="odibi-generate-") as tmp:
        draft = Path(tmp) / "test_draft.yaml"
        draft.write_text(_file(name, given, ["    expect: {rows: []}"]))
        case = load_cases(Path(tmp), draft.name)[0]
    scratch = open_for([case], resolved.project)
    try:
        output = produce(scratch, resolved, case)
    except NodeFailed as e:
        raise UsageError(f"--generate: '{name}' fails on the sampled rows: {e}",
                         hint="a contract may need more rows than sampled: try --rows N"
                         ) from None
    finally:
        scratch.close()
    expect = ["    expect:",
              "      # its output on these inputs, from the node's logic as it is now"]
    expect += _data(output, "      ")
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
