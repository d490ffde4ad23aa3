"""The project model: frozen, typed values built by `config/load.py`.

Strings keep two forms where substitution applies: the *template* as the user wrote it
(``${vars.x}`` and ``${env:X}`` unexpanded; this is what fingerprints and explanations
see, so environment values never reach the disk) and the *rendered* text (what runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Union

from odibi.errors import Span, TextOrigin
from odibi.ids import Format, NodeId, NodeKind, OnFail
from odibi.pickling import compact_pickle

Scalar = Union[str, int, float, bool, None]
Piece = tuple[int, int, int]  # one substitution: template start, template end, value length


@compact_pickle
@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    type: str
    base_path: str  # template, as written
    root: Path  # rendered and resolved: absolute
    span: Span


@compact_pickle
@dataclass(frozen=True, slots=True)
class ReadSpec:
    connection: str
    path: str  # template, relative to the connection
    rendered_path: str
    format: Format
    options: Mapping[str, Any]  # templates (scalars, lists, mappings)
    rendered_options: Mapping[str, Any]
    path_span: Span

    @property
    def is_glob(self) -> bool:
        return any(c in self.rendered_path for c in "*?[")


@compact_pickle
@dataclass(frozen=True, slots=True)
class SqlSpec:
    """A SQL node's statement, written inline in its YAML file or in a file of its own
    (`sql: {file: ...}`); either way the same text is fingerprinted and run."""

    template: str  # as written (trailing semicolons and whitespace stripped)
    rendered: str  # vars and env substituted: what runs
    origin: TextOrigin  # where the text starts: in its YAML file, or line 1 of its .sql file
    file: str | None = None  # the .sql file, project-relative; None when inline
    pieces: tuple[Piece, ...] = ()  # the substitutions that made `rendered` from `template`

    def span_at(self, offset: int | None, width: int = 1) -> Span:
        """Where character `offset` of the rendered SQL was written (a substituted value
        is found at its `${`)."""
        if offset is None or offset < 0:
            return self.origin.span_at(self.template, offset, width)
        return self.origin.span_at(self.template, template_offset(self.pieces, offset), width)


def template_offset(pieces: tuple[Piece, ...], offset: int) -> int:
    """Where character `offset` of a rendered text was in its template, given the
    substitutions (`pieces`, in order) that rendered it; an offset inside a substituted
    value maps to the value's `${`."""
    shift = 0  # rendered minus template, before the current piece
    for start, end, length in pieces:
        if offset < start + shift:
            break
        if offset < start + shift + length:
            return start
        shift += length - (end - start)
    return offset - shift


@compact_pickle
@dataclass(frozen=True, slots=True)
class PythonSpec:
    module: str
    function: str
    origin: TextOrigin  # of the `module:function` text

    @property
    def span(self) -> Span:
        return self.origin.span

    @property
    def module_span(self) -> Span:
        return self.origin.span_at(f"{self.module}:{self.function}", 0, len(self.module))

    @property
    def function_span(self) -> Span:
        text = f"{self.module}:{self.function}"
        return self.origin.span_at(text, len(self.module) + 1, len(self.function))


Producer = Union[ReadSpec, SqlSpec, PythonSpec]


@compact_pickle
@dataclass(frozen=True, slots=True)
class WriteSpec:
    connection: str
    path: str  # template
    rendered_path: str
    format: Format
    options: Mapping[str, Any]
    rendered_options: Mapping[str, Any]
    span: Span  # of the path


@compact_pickle
@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 1  # total tries, 1 = no retry
    backoff: float = 0.0  # seconds before the second try, doubling each time


@compact_pickle
@dataclass(frozen=True, slots=True)
class RuleText:
    """A contract/validation/check expression, kept as text with its location."""

    text: str
    span: Span
    origin: TextOrigin | None = None


@compact_pickle
@dataclass(frozen=True, slots=True)
class Node:
    name: NodeId
    kind: NodeKind
    pipeline: str
    file: str  # project-relative path of the YAML file that defines it
    span: Span
    producer: Producer
    writes: tuple[WriteSpec, ...] = ()
    depends_on: tuple[NodeId, ...] | None = None  # as given; None = infer
    depends_on_span: Span | None = None
    contracts: tuple[RuleText, ...] = ()
    validate: tuple[RuleText, ...] = ()
    retry: Retry = Retry()
    timeout: float | None = None
    always_run: bool = False
    version: str | None = None
    tags: frozenset[str] = frozenset()
    description: str | None = None
    vars_used: frozenset[str] = frozenset()
    env_used: Mapping[str, str] = field(default_factory=dict)  # name -> digest of its value


@compact_pickle
@dataclass(frozen=True, slots=True)
class Check:
    """A cross-node circuit breaker: a DAG node that produces no table."""

    name: NodeId
    pipeline: str
    file: str
    span: Span
    rule: RuleText
    on_fail: OnFail = OnFail.HALT
    tags: frozenset[str] = frozenset()
    description: str | None = None
    vars_used: frozenset[str] = frozenset()


class EngineKind(str, Enum):
    DUCKDB = "duckdb"
    SPARK = "spark"


@compact_pickle
@dataclass(frozen=True, slots=True)
class Target:
    """Where and on what a project is built (`targets:` in odibi.yaml; `--target NAME`).

    A project without `targets:` has one, `default`, on DuckDB. The first target declared
    is the default: its build state is `.odibi/` and its lock `odibi.lock`, as for a
    project without targets; any other keeps its state in `.odibi/targets/NAME/` and its
    lock in `odibi.NAME.lock` (`odibi.targets`)."""

    name: str
    engine: EngineKind = EngineKind.DUCKDB
    default: bool = True
    master: str | None = None  # Spark: `local[4]`, `spark://host:7077`, ...
    remote: str | None = None  # Spark Connect: `sc://host:15002`
    warehouse: str | None = None  # rendered: a local absolute path or a URI; None: in state
    conf: Mapping[str, str] = field(default_factory=dict)  # Spark configuration
    span: Span | None = None  # where it is declared (None: the implicit default)

    @property
    def key(self) -> str | None:
        """How commands and the state name it: None for the default target."""
        return None if self.default else self.name


DEFAULT_TARGET = Target("default")


@compact_pickle
@dataclass(frozen=True, slots=True)
class Project:
    name: str
    root: Path  # absolute
    config_file: Path
    connections: Mapping[str, Connection]
    vars: Mapping[str, Scalar]  # after --var overrides
    nodes: Mapping[NodeId, Node]  # in declaration order
    checks: Mapping[NodeId, Check]
    pipelines: tuple[str, ...]
    files: tuple[str, ...]  # project-relative YAML files that make up the project
    python_path: tuple[Path, ...]
    python_path_text: tuple[str, ...] = (".",)
    pipeline_patterns: tuple[str, ...] = ()  # the `pipelines:` globs, as written
    description: str | None = None
    var_spans: Mapping[str, Span] = field(default_factory=dict)
    build_target: Target = DEFAULT_TARGET  # the target this command builds on
    sql_dialect: EngineKind = EngineKind.DUCKDB  # the dialect the project's SQL is written in
    sql_dialect_span: Span | None = None

    @property
    def binds_columns(self) -> bool:
        """Whether SQL is bound to its inputs' columns before a build (README, "Column
        binding"): DuckDB SQL on a DuckDB target (binding is DuckDB's)."""
        return self.build_target.engine is EngineKind.DUCKDB \
            and self.sql_dialect is EngineKind.DUCKDB

    def kind_of(self, name: NodeId) -> NodeKind:
        node = self.nodes.get(name)
        return node.kind if node is not None else NodeKind.CHECK

    def target(self, name: NodeId) -> Node | Check:
        node = self.nodes.get(name)
        return node if node is not None else self.checks[name]
