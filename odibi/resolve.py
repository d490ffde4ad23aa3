"""Project -> dependencies -> Graph: everything `odibi validate` checks short of data.

Dependencies come from, per node kind:
- sql: the tables its statement reads that are nodes (an explicit `depends_on` must agree);
- python: the function's parameters that are nodes (plus `depends_on` for **kwargs);
- read: `depends_on` as given, plus any node whose `write` produces the file it reads;
- check: every node its rule names.
A reference to something that is not a node is an error naming the node, the file and the
line, with a did-you-mean. Every edge remembers where it was written, so a cycle is
reported at the reference that closes it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

from odibi.config.model import Node, Project, PythonSpec, ReadSpec, SqlSpec
from odibi.errors import ConfigError, CycleError, Span, SqlError, did_you_mean
from odibi.graph import Graph, build_graph
from odibi.hashing import digest_text
from odibi.ids import Digest, NodeId, NodeKind
from odibi.paths import shown
from odibi.expr.check import RulePlan
from odibi.rulesets import NodeRules, compile_all, compile_check
from odibi.pysource import (
    FunctionMissing,
    ModuleMissing,
    PyFunction,
    inspect_function,
    module_names,
)
from odibi.dialects import TranspileError, transpile_all
from odibi.sql import SqlCache, SqlInfo, SqlProblem, analyze
from odibi.pickling import compact_pickle

_PLACEHOLDER_RE = re.compile(r"\$(\$?)\{\s*(vars\.|env:)([A-Za-z_][A-Za-z0-9_]*)\s*\}")

Edge = tuple[NodeId, NodeId]  # (node, what it depends on)
Where = Span | Callable[[], Span]  # where an edge was written (computed only for errors)


@compact_pickle
@dataclass(frozen=True, slots=True)
class SqlFacts:
    text: Digest  # digest of the template as written
    tree: Digest  # canonical parse tree of the template (vars as placeholders)


@compact_pickle
@dataclass(frozen=True, slots=True)
class Resolved:
    """A project with its dependencies worked out. Frozen; built by `resolve`."""

    project: Project
    graph: Graph
    sql: Mapping[NodeId, SqlFacts]
    python: Mapping[NodeId, PyFunction]
    rules: Mapping[NodeId, NodeRules] = field(default_factory=dict)  # contracts, validate
    checks: Mapping[NodeId, RulePlan] = field(default_factory=dict)
    # SQL nodes' statements translated to the target's engine, when it is not the
    # project's dialect (empty otherwise)
    runs_as: Mapping[NodeId, str] = field(default_factory=dict)

    def deps(self, name: NodeId) -> tuple[NodeId, ...]:
        return self.graph.upstream(name)

    def runnable_sql(self, name: NodeId) -> str:
        """The SQL a SQL node runs on the target's engine: its rendered statement, or that
        statement translated to the engine's dialect."""
        spec = self.project.nodes[name].producer
        assert isinstance(spec, SqlSpec), name
        return self.runs_as.get(name, spec.rendered)


def placeholder_text(template: str) -> str:
    """The template with each substitution replaced by an identifier-like placeholder, so
    its parse tree does not change when a variable's value does."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(0)[1:]
        kind = "var" if m.group(2) == "vars." else "env"
        return f"__odibi_{kind}_{m.group(3)}__"
    return _PLACEHOLDER_RE.sub(sub, template)


def sql_span(spec: SqlSpec, offset: int | None, width: int = 1) -> Span:
    """Where character `offset` of a node's (rendered) SQL was written: in its YAML file,
    or in its .sql file."""
    return spec.span_at(offset, width)


def resolve(project: Project, cache: SqlCache | None = None) -> Resolved:
    """Work out every dependency and build the graph. Raises ConfigError/SqlError/CycleError."""
    lower = {n.lower(): n for n in project.nodes}
    spans: dict[Edge, Where] = {}
    sql = _analyze_sql(project, cache, lower, spans)
    deps: dict[NodeId, tuple[NodeId, ...]] = {}
    python: dict[NodeId, PyFunction] = {}
    writers = _writers(project)
    for name, node in project.nodes.items():
        match node.kind:
            case NodeKind.SQL:
                deps[name] = _check_explicit(node, sql[name][1], project)
            case NodeKind.PYTHON:
                fn = _python_function(project, node)
                python[name] = fn
                deps[name] = _python_inputs(node, fn, project, spans)
            case NodeKind.READ:
                given = _known(node, node.depends_on or (), project)
                deps[name] = tuple(dict.fromkeys(given + _read_writers(project, node, writers)))
            case NodeKind.CHECK:  # pragma: no cover - checks are not in project.nodes
                raise AssertionError(node.kind)
        for d in deps[name]:
            if node.depends_on_span is not None:
                spans.setdefault((name, d), node.depends_on_span)
    checks: dict[NodeId, RulePlan] = {}
    for name, check in project.checks.items():
        checks[name] = compile_check(check, project)
        deps[name] = tuple(NodeId(d) for d in checks[name].datasets)
    try:
        graph = build_graph(deps)
    except CycleError as e:
        raise _located_cycle(e.cycle, spans) from None
    rules = compile_all(project, deps)
    runs_as = _translations(project, cache)
    return Resolved(project, graph, {n: f for n, (f, _) in sql.items()}, python, rules, checks,
                    runs_as)


def _translations(project: Project, cache: SqlCache | None) -> dict[NodeId, str]:
    """Each SQL node's statement in the dialect of the target's engine, when that is not
    the project's dialect. Raises SqlError naming every statement that does not translate
    (the first, and the others in `also`), each located in its node's SQL."""
    engine, dialect = project.build_target.engine, project.sql_dialect
    if engine == dialect:
        return {}
    specs = {n: node.producer for n, node in project.nodes.items()
             if isinstance(node.producer, SqlSpec)}
    tcache = cache if hasattr(cache, "get_transpiled") else None
    done = transpile_all([s.rendered for s in specs.values()], dialect, engine,
                         tcache)  # type: ignore[arg-type]
    errors: list[SqlError] = []
    for name, spec in specs.items():
        result = done[spec.rendered]
        if isinstance(result, TranspileError):
            shown = {"duckdb": "DuckDB", "spark": "Spark"}[engine.value]
            errors.append(SqlError(
                f"node '{name}': SQL does not translate to {shown} SQL (target "
                f"'{project.build_target.name}'): {result.message}", node=name,
                span=sql_span(spec, result.offset),
                hint=f"target '{project.build_target.name}' runs {shown}: write this statement "
                     "so that both engines run it alike (README: \"Transpiling refuses rather "
                     "than guesses\")"))
    if errors:
        errors[0].also = tuple(errors[1:])
        raise errors[0]
    return {n: out for n, s in specs.items() if (out := str(done[s.rendered])) != s.rendered}


def _located_cycle(cycle: tuple[str, ...], spans: Mapping[Edge, Where]) -> CycleError:
    """Point at the reference that closes the loop: the first node reading the last."""
    where = spans.get((NodeId(cycle[0]), NodeId(cycle[-2])))
    span = where() if callable(where) else where
    if len(cycle) == 2:
        err = CycleError(cycle, span=span)
        err.message = f"node '{cycle[0]}' reads itself (dependency cycle: {cycle[0]} → {cycle[0]})"
        err.hint = "a node cannot read its own table; for a recursive query use WITH RECURSIVE"
        return err
    return CycleError(cycle, span=span)


def _analyze_sql(project: Project, cache: SqlCache | None, lower: Mapping[str, NodeId],
                 spans: dict[Edge, Where]) -> dict[NodeId, tuple[SqlFacts, tuple[NodeId, ...]]]:
    specs = {n: node.producer for n, node in project.nodes.items()
             if isinstance(node.producer, SqlSpec)}
    logic_text = {n: placeholder_text(s.template) for n, s in specs.items()}
    results = analyze(list(logic_text.values()) + [s.rendered for s in specs.values()], cache,
                      project.sql_dialect)
    out: dict[NodeId, tuple[SqlFacts, tuple[NodeId, ...]]] = {}
    for name, spec in specs.items():
        rendered = results[spec.rendered]
        if isinstance(rendered, SqlProblem):
            raise SqlError(f"node '{name}': SQL {rendered.message}", node=name,
                           span=sql_span(spec, rendered.offset),
                           hint=_template_hint(spec.template))
        logic = results[logic_text[name]]
        tree = logic.tree if isinstance(logic, SqlInfo) else rendered.tree
        found: list[NodeId] = []
        for ref in rendered.tables:
            target = lower.get(ref.name.lower())
            span = sql_span(spec, ref.offset, len(ref.name)) if target is None else None
            if target is None and any(c in ref.name for c in "./\\"):
                raise SqlError(f"node '{name}': SQL reads the file '{ref.name}' directly",
                               span=span, node=name,
                               hint="add a read node for it, so odibi can fingerprint the file")
            if target is None:
                check = next((c for c in project.checks if c.lower() == ref.name.lower()), None)
                hint = ("checks produce no table; nothing can depend on one" if check else
                        did_you_mean(ref.name, project.nodes)
                        or "tables come from nodes; add a node that reads or computes it")
                raise SqlError(f"node '{name}': SQL reads '{ref.name}', which is not a node",
                               span=span, node=name, hint=hint)
            if target not in found:
                found.append(target)
                spans[(name, target)] = partial(sql_span, spec, ref.offset, len(ref.name))
        out[name] = (SqlFacts(digest_text(spec.template), tree), tuple(sorted(found)))
    return out


_JINJA = re.compile(r"\{\{\s*[\w.]+\s*[(|}]|\{%")  # {{ source(...) }}, {{ x }}, {% if %}
_JINJA_REF = re.compile(r"""\{\{\s*ref\s*\(\s*['"]([^'"]+)['"]\s*\)\s*\}\}""")


def _template_hint(sql: str) -> str | None:
    """For SQL written as a dbt (Jinja) template: what odibi reads instead."""
    ref = _JINJA_REF.search(sql)
    if ref:
        return (f"odibi reads a node by its table name: FROM {ref.group(1)}, not "
                f"{ref.group(0)}")
    if _JINJA.search(sql):
        return ("odibi's SQL is not a template: read nodes by their table names (FROM "
                "orders), and variables as ${vars.NAME}")
    return None


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
    assert isinstance(spec, PythonSpec)
    try:
        fn = inspect_function(spec.module, spec.function, project.python_path)
    except ConfigError as e:
        e.message, e.node = f"node '{node.name}': {e.message}", node.name
        raise
    match fn:
        case PyFunction():
            return fn
        case ModuleMissing():
            modules = module_names(project.python_path)
            where = ", ".join(project.python_path_text)
            close = did_you_mean(spec.module, modules)
            raise ConfigError(
                f"node '{node.name}': module '{spec.module}' not found", span=spec.module_span,
                node=node.name, hint=f"{close} (looked in python_path: {where})" if close
                else f"looked in python_path: {where}")
        case FunctionMissing(path, names):
            raise ConfigError(
                f"node '{node.name}': no function '{spec.function}' in {spec.module} "
                f"({shown(path, project.root)})", span=spec.function_span, node=node.name,
                hint=did_you_mean(spec.function, names))
    raise AssertionError(fn)  # pragma: no cover



def _python_inputs(node: Node, fn: PyFunction, project: Project,
                   spans: dict[Edge, Where]) -> tuple[NodeId, ...]:
    spec = node.producer
    assert isinstance(spec, PythonSpec)
    inputs: list[NodeId] = []
    for p in fn.params:
        if p in project.nodes:
            inputs.append(NodeId(p))
            spans[(node.name, NodeId(p))] = spec.function_span
        elif p in fn.required:
            raise ConfigError(
                f"node '{node.name}': parameter '{p}' of {fn.module}:{fn.function} is not a node",
                span=spec.function_span, node=node.name,
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
    """Which node writes each exported file; two nodes writing one file is an error."""
    out: dict[Path, NodeId] = {}
    for name, node in project.nodes.items():
        for w in node.writes:
            path = Path(os.path.normpath(project.connections[w.connection].root / w.rendered_path))
            other = out.get(path)
            if other is not None and other != name:
                raise ConfigError(f"nodes '{other}' and '{name}' both write {w.rendered_path} "
                                  f"(connection '{w.connection}')", span=w.span, node=name,
                                  hint="each file is written by one node")
            out[path] = name
    return out


def _read_writers(project: Project, node: Node, writers: Mapping[Path, NodeId]) -> tuple[NodeId, ...]:
    spec = node.producer
    if not writers or not isinstance(spec, ReadSpec):
        return ()
    target = Path(os.path.normpath(project.connections[spec.connection].root / spec.rendered_path))
    if not spec.is_glob:
        writer = writers.get(target)
        return (writer,) if writer is not None and writer != node.name else ()
    pattern = str(target)
    return tuple(w for p, w in writers.items() if fnmatch.fnmatch(str(p), pattern) and w != node.name)
