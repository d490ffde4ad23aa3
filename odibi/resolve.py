"""Project -> dependencies -> Graph: everything `odibi validate` checks short of data.

Dependencies come from, per node kind:
- sql: the tables its statement reads that are nodes (an explicit `depends_on` must agree);
- python: the function's parameters that are nodes (plus `depends_on` for **kwargs);
- read: `depends_on` as given, plus any node whose `write` produces the file it reads;
- check: every node its rule names.
A reference to something that is not a node is an error naming the node, the file and the
line, with a did-you-mean.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from odibi.config.model import Node, Project, SqlSpec
from odibi.errors import ConfigError, SqlError, Span, did_you_mean
from odibi.graph import Graph, build_graph
from odibi.hashing import digest_text
from odibi.ids import Digest, NodeId, NodeKind
from odibi.pysource import PyFunction, inspect_function
from odibi.sql import SqlCache, SqlInfo, SqlProblem, analyze

_PLACEHOLDER_RE = re.compile(r"\$(\$?)\{\s*(vars\.|env:)([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SqlFacts:
    text: Digest  # digest of the template as written
    tree: Digest  # canonical parse tree of the template (vars as placeholders)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A project with its dependencies worked out. Frozen; built by `resolve`."""

    project: Project
    graph: Graph
    sql: Mapping[NodeId, SqlFacts]
    python: Mapping[NodeId, PyFunction]

    def deps(self, name: NodeId) -> tuple[NodeId, ...]:
        return self.graph.upstream(name)


def placeholder_text(template: str) -> str:
    """The template with each substitution replaced by an identifier-like placeholder, so
    its parse tree does not change when a variable's value does."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(0)[1:]
        kind = "var" if m.group(2) == "vars." else "env"
        return f"__odibi_{kind}_{m.group(3)}__"
    return _PLACEHOLDER_RE.sub(sub, template)


def sql_span(spec: SqlSpec, offset: int | None, indent: int = 0, width: int = 1) -> Span:
    """Where character `offset` of a node's SQL sits in its YAML file."""
    base = Span(spec.text_span.file, spec.text_span.line, spec.text_span.col, width=width)
    if offset is None or offset < 0:
        return base
    text = spec.rendered
    offset = min(offset, len(text))
    line = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    if spec.block:
        return base.shifted(1 + line, (indent or base.col + 2) + col)
    return base.shifted(line, base.col + col if line == 0 else col + 1)


def resolve(project: Project, cache: SqlCache | None = None) -> Resolved:
    """Work out every dependency and build the graph. Raises ConfigError/SqlError/CycleError."""
    lower = {n.lower(): n for n in project.nodes}
    sql = _analyze_sql(project, cache, lower)
    deps: dict[NodeId, tuple[NodeId, ...]] = {}
    python: dict[NodeId, PyFunction] = {}
    writers = _writers(project)
    for name, node in project.nodes.items():
        match node.kind:
            case NodeKind.SQL:
                found = sql[name][1]
                deps[name] = _check_explicit(node, found, project)
            case NodeKind.PYTHON:
                fn = _python_function(project, node)
                python[name] = fn
                deps[name] = _python_inputs(node, fn, project, lower)
            case NodeKind.READ:
                given = _known(node, node.depends_on or (), project)
                deps[name] = tuple(dict.fromkeys(given + _read_writers(project, node, writers)))
            case NodeKind.CHECK:  # pragma: no cover - checks are not in project.nodes
                raise AssertionError(node.kind)
    for name, check in project.checks.items():
        named = [lower[w.lower()] for w in _IDENT_RE.findall(_strip_strings(check.rule.text))
                 if w.lower() in lower]
        if not named:
            raise ConfigError(f"check '{name}' names no dataset", span=check.rule.span, node=name,
                              hint="qualify measures with a node: row_count(raw_orders)")
        deps[name] = tuple(dict.fromkeys(named))
    graph = build_graph(deps)
    facts = {n: f for n, (f, _) in sql.items()}
    return Resolved(project, graph, facts, python)


def _strip_strings(text: str) -> str:
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", text)


def _analyze_sql(project: Project, cache: SqlCache | None, lower: Mapping[str, NodeId]
                 ) -> dict[NodeId, tuple[SqlFacts, tuple[NodeId, ...]]]:
    specs = {n: node.producer for n, node in project.nodes.items()
             if isinstance(node.producer, SqlSpec)}
    logic_text = {n: placeholder_text(s.template) for n, s in specs.items()}
    results = analyze(list(logic_text.values()) + [s.rendered for s in specs.values()], cache)
    out: dict[NodeId, tuple[SqlFacts, tuple[NodeId, ...]]] = {}
    for name, spec in specs.items():
        indent = spec.indent
        rendered = results[spec.rendered]
        if isinstance(rendered, SqlProblem):
            raise SqlError(f"node '{name}': SQL {rendered.message}", node=name,
                           span=sql_span(spec, rendered.offset, indent))
        logic = results[logic_text[name]]
        tree = logic.tree if isinstance(logic, SqlInfo) else rendered.tree
        found: list[NodeId] = []
        for ref in rendered.tables:
            target = lower.get(ref.name.lower())
            if target is None or target in project.checks:
                choices = list(project.nodes)
                raise SqlError(
                    f"node '{name}': SQL reads '{ref.name}', which is not a node",
                    span=sql_span(spec, ref.offset, indent, len(ref.name)), node=name,
                    hint=did_you_mean(ref.name, choices) or "tables come from nodes; add a node "
                    "that reads or computes it")
            if target not in found:
                found.append(target)
        out[name] = (SqlFacts(digest_text(spec.template), tree), tuple(sorted(found)))
    return out


def _known(node: Node, names: tuple[NodeId, ...], project: Project) -> tuple[NodeId, ...]:
    for d in names:
        if d not in project.nodes:
            hint = did_you_mean(d, project.nodes)
            if d in project.checks:
                hint = "checks produce no table; nothing can depend on one"
            raise ConfigError(f"node '{node.name}': depends_on '{d}', which is not a node",
                              span=node.depends_on_span, node=node.name, hint=hint)
    return names


def _check_explicit(node: Node, found: tuple[NodeId, ...], project: Project) -> tuple[NodeId, ...]:
    if node.depends_on is None:
        return found
    given = _known(node, node.depends_on, project)
    if set(given) != set(found):
        raise ConfigError(
            f"node '{node.name}': depends_on [{', '.join(sorted(given))}] disagrees with its SQL, "
            f"which reads [{', '.join(found)}]", span=node.depends_on_span, node=node.name,
            hint="drop depends_on (it is inferred from the SQL) or make it match")
    return found


def _python_function(project: Project, node: Node) -> PyFunction:
    spec = node.producer
    assert not isinstance(spec, SqlSpec) and hasattr(spec, "module")
    return inspect_function(spec.module, spec.function, project.python_path, spec.span, node.name)


def _python_inputs(node: Node, fn: PyFunction, project: Project,
                   lower: Mapping[str, NodeId]) -> tuple[NodeId, ...]:
    inputs: list[NodeId] = []
    for p in fn.params:
        if p in project.nodes:
            inputs.append(NodeId(p))
        elif p in fn.required:
            raise ConfigError(
                f"node '{node.name}': parameter '{p}' of {fn.module}:{fn.function} is not a node",
                span=node.producer.span, node=node.name,  # type: ignore[union-attr]
                hint=did_you_mean(p, project.nodes) or "parameters are inputs, named after nodes")
    if node.depends_on is None:
        return tuple(inputs)
    given = _known(node, node.depends_on, project)
    if fn.var_keyword:
        return tuple(dict.fromkeys(inputs + list(given)))
    if set(given) != set(inputs):
        raise ConfigError(
            f"node '{node.name}': depends_on [{', '.join(sorted(given))}] disagrees with the "
            f"parameters of {fn.module}:{fn.function} [{', '.join(sorted(inputs))}]",
            span=node.depends_on_span, node=node.name,
            hint="drop depends_on (inputs are the function's parameters) or make it match")
    return tuple(inputs)


def _writers(project: Project) -> dict[Path, NodeId]:
    out: dict[Path, NodeId] = {}
    for name, node in project.nodes.items():
        for w in node.writes:
            out[project.connections[w.connection].root / w.rendered_path] = name
    return out


def _read_writers(project: Project, node: Node, writers: Mapping[Path, NodeId]) -> tuple[NodeId, ...]:
    spec = node.producer
    if not writers or not hasattr(spec, "rendered_path") or not hasattr(spec, "connection"):
        return ()
    target = project.connections[spec.connection].root / spec.rendered_path  # type: ignore[union-attr]
    if not spec.is_glob:  # type: ignore[union-attr]
        writer = writers.get(target)
        return (writer,) if writer is not None and writer != node.name else ()
    pattern = str(target)
    return tuple(w for p, w in writers.items() if fnmatch.fnmatch(str(p), pattern) and w != node.name)
