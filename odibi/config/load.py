"""YAML files -> `Project`: every check that needs no SQL parser and no data.

`load_project(root)` reads `odibi.yaml` and the pipeline files it names, checks every key
and type (unknown keys get a did-you-mean), substitutes ``${vars.X}`` / ``${env:X}``,
and returns frozen model values. Errors are `ConfigError`s pointing at file:line:col,
inside string values where that is where the mistake is. Dependencies, SQL and Python
functions are resolved later (`odibi.resolve`).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from odibi.config.model import (
    Check,
    Connection,
    Node,
    Piece,
    Producer,
    Project,
    PythonSpec,
    ReadSpec,
    RuleText,
    Scalar,
    SqlSpec,
    WriteSpec,
)
from odibi.config.fields import (
    DBT_NODE_KEYS,
    File,
    check_inside,
    check_keys,
    expect_map,
    file_format,
    opt_bool,
    opt_str,
    plain_structure,
    plain_value,
    req_str,
    retry_of,
    rules_of,
    str_list,
    strip_sql,
    tags_of,
    timeout_of,
    type_name,
    version_of,
)
from odibi.config.model import EngineKind
from odibi.config.sqlfile import sql_source
from odibi.config.targets import ENGINES, choose_target, merged_connections, sql_dialect
from odibi.config.substitute import Substituter, VarOverride, parse_var_overrides

__all__ = ["PROJECT_FILE", "VarOverride", "find_project_root", "load_project",
           "parse_var_overrides", "pipeline_files"]
from odibi.config.ytree import YMap, YSeq, read_bytes
from odibi.errors import ConfigError, Span, TextOrigin, UsageError, did_you_mean
from odibi.paths import shown
from odibi.ids import NAME_RE, Format, NodeId, NodeKind, OnFail

PROJECT_FILE = "odibi.yaml"

PROJECT_KEYS = {"project", "description", "connections", "vars", "pipelines", "nodes", "checks",
                "python_path", "targets", "sql_dialect"}
PIPELINE_KEYS = {"pipeline", "description", "tags", "nodes", "checks"}
NODE_KEYS = {"name", "description", "tags", "read", "sql", "python", "write", "depends_on",
             "contracts", "validate", "retry", "timeout", "always_run", "version", "owner", "meta"}
CHECK_KEYS = {"name", "assert", "on_fail", "description", "tags", "owner", "meta"}
CONNECTION_KEYS = {"type", "base_path", "description"}
LOCATION_KEYS = {"connection", "path", "format", "options"}
RETRY_KEYS = {"attempts", "backoff"}
CONNECTION_TYPES = ("local",)
PRODUCERS = ("read", "sql", "python")

_SUB_RE = re.compile(r"\$(\$?)\{([^}]*)\}")
_VAR_RE = re.compile(r"\s*vars\.([A-Za-z_][A-Za-z0-9_]*)\s*\Z")
_ENV_RE = re.compile(r"\s*env:([A-Za-z_][A-Za-z0-9_]*)\s*\Z")
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*\Z")
_PY_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def pipeline_files(root: Path, patterns: tuple[str, ...]) -> list[str]:
    """The pipeline files `patterns` match, project-relative, in order, without repeats."""
    result: list[str] = []
    for pattern in patterns:
        for m in sorted(glob.glob(pattern, root_dir=root, recursive=True)):
            rel = Path(m).as_posix()
            if rel not in result and rel != PROJECT_FILE and (root / m).is_file():
                result.append(rel)
    return result


def find_project_root(start: Path) -> Path:
    """`start` if it holds odibi.yaml; no walking upwards (explicit is better: use -C)."""
    if (start / PROJECT_FILE).is_file():
        return start
    raise ConfigError(f"no {PROJECT_FILE} in {start}",
                      hint="run odibi in a project directory, pass -C DIR, or create one "
                           "with 'odibi init DIR'")


class _Loader:
    """One load of one project. Holds the project-wide tables while nodes are built."""

    def __init__(self, root: Path, overrides: list[VarOverride], env: Mapping[str, str],
                 read_file: Callable[[Path], tuple[Any, bytes]],
                 read_sql: Callable[[Path], bytes], target: str | None = None) -> None:
        self.root = root.resolve()
        self.wanted_target = target
        self.overrides = overrides
        self.env = env
        self.read_file = read_file
        self.read_sql = read_sql
        self.connections: dict[str, Connection] = {}
        self.nodes: dict[NodeId, Node] = {}
        self.checks: dict[NodeId, Check] = {}
        self.names: dict[str, tuple[str, Span]] = {}  # lower-cased -> (name, first place)
        self.files: list[str] = []
        self.pipelines: list[str] = []
        self.sub: Substituter

    def _read(self, rel: str) -> tuple[Any, File]:
        path = self.root / rel
        raw, data = self.read_file(path)
        self.files.append(rel)
        return raw, File(path, rel, data)

    # -- the project file -------------------------------------------------------------
    def load(self) -> Project:
        raw, f = self._read(PROJECT_FILE)
        if raw is None:
            raise ConfigError(f"{PROJECT_FILE} is empty", span=Span(f.path, 1, 1),
                              hint="start from 'odibi init DIR'")
        top = expect_map(raw, f, None, PROJECT_FILE)
        check_keys(top, PROJECT_KEYS, f, PROJECT_FILE)
        if "project" not in top:
            raise ConfigError(f"{PROJECT_FILE} has no 'project' (the project's name)",
                              span=f.at(top.mark), hint="add a line: project: NAME")
        name = req_str(top, "project", f, PROJECT_FILE)
        description = opt_str(top, "description", f, PROJECT_FILE)
        variables = self._vars(top, f)
        self.sub = Substituter(variables, self.env)
        target, overrides = choose_target(top, f, self.sub, self.root, self.wanted_target)
        dialect, dialect_span = sql_dialect(top, f, target.engine if target.default
                                            else self._default_engine(top))
        self._connections(merged_connections(top, overrides), top, f)
        python_text, python_path = self._python_path(top, f)
        if "nodes" in top or "checks" in top:
            self.pipelines.append(name)
            self._pipeline_body(top, f, name, frozenset())
        patterns = tuple(str_list(top["pipelines"], f, top.value_marks.get("pipelines"),
                                   "pipelines")) if top.get("pipelines") is not None else ()
        for rel in self._pipeline_files(top, f):
            self._pipeline_file(rel)
        return Project(
            name=name, root=self.root, config_file=self.root / PROJECT_FILE,
            connections=self.connections, vars=variables, nodes=self.nodes, checks=self.checks,
            pipelines=tuple(self.pipelines), files=tuple(self.files), python_path=python_path,
            python_path_text=python_text, pipeline_patterns=patterns, description=description,
            build_target=target, sql_dialect=dialect, sql_dialect_span=dialect_span,
        )

    def _default_engine(self, top: YMap) -> EngineKind:
        """The engine of the first target (the default dialect of the project's SQL)."""
        first = next(iter(top["targets"].values()))
        engine = first.get("engine") if isinstance(first, YMap) else None
        return EngineKind(engine) if engine in ENGINES else EngineKind.DUCKDB

    def _vars(self, top: YMap, f: File) -> dict[str, Scalar]:
        raw = top.get("vars")
        raw = YMap() if raw is None else expect_map(raw, f, top.value_marks.get("vars"), "vars")
        result: dict[str, Scalar] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not NAME_RE.match(key):
                raise ConfigError(f"invalid variable name '{key}'", span=f.key(raw, key),
                                  hint="names are letters, digits and _, not starting with a digit")
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"variable '{key}' must be a string, number or boolean, "
                                  f"got {type_name(value)}", span=f.value(raw, key))
            result[key] = value
        for o in self.overrides:
            if o.name not in result:
                raise UsageError(f"--var {o.name}: no such variable in {PROJECT_FILE}",
                                 span=o.span, hint=did_you_mean(o.name, result)
                                 or "define it under vars: first")
            result[o.name] = o.value
        return result

    def _connections(self, raw: Any, top: YMap, f: File) -> None:
        if raw is None:
            return
        raw = expect_map(raw, f, top.value_marks.get("connections"), "connections")
        for name, body in raw.items():
            span = f.key(raw, name)
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise ConfigError(f"invalid connection name '{name}'", span=span)
            what = f"connection '{name}'"
            body = expect_map(body, f, raw.value_marks.get(name), what)
            check_keys(body, CONNECTION_KEYS, f, what)
            ctype = body.get("type", "local")
            if ctype not in CONNECTION_TYPES:
                raise ConfigError(f"{what}: unknown type '{ctype}'", span=f.value(body, "type"),
                                  hint=f"supported: {', '.join(CONNECTION_TYPES)}")
            base = req_str(body, "base_path", f, what)
            rendered = self.sub.render(base, f.origin(body, "base_path"), what)
            self.sub.take_used()
            try:
                root = Path(rendered).expanduser()
            except RuntimeError:
                raise ConfigError(f"{what}: cannot expand '{rendered}' (no such user)",
                                  span=f.value(body, "base_path")) from None
            root = (root if root.is_absolute() else self.root / root).resolve()
            self.connections[name] = Connection(name, ctype, base, root, span)

    def _python_path(self, top: YMap, f: File) -> tuple[tuple[str, ...], tuple[Path, ...]]:
        raw = top.get("python_path", ["."])
        items = str_list(raw, f, top.value_marks.get("python_path"), "python_path")
        return tuple(items), tuple((self.root / p).resolve() for p in items)

    def _pipeline_files(self, top: YMap, f: File) -> list[str]:
        raw = top.get("pipelines")
        if raw is None:
            return []
        patterns = str_list(raw, f, top.value_marks.get("pipelines"), "pipelines")
        for i, pattern in enumerate(patterns):
            if not pipeline_files(self.root, (pattern,)):
                mark = raw.item_marks[i] if isinstance(raw, YSeq) else top.value_marks["pipelines"]
                raise ConfigError(f"pipelines: '{pattern}' matches no file", span=f.at(mark),
                                  hint="patterns are relative to the project directory "
                                       "(where odibi.yaml is)")
        return pipeline_files(self.root, tuple(patterns))

    # -- pipeline files ---------------------------------------------------------------
    def _pipeline_file(self, rel: str) -> None:
        raw, f = self._read(rel)
        if raw is None:
            raise ConfigError("pipeline file is empty", span=Span(f.path, 1, 1))
        body = expect_map(raw, f, None, "pipeline file")
        check_keys(body, PIPELINE_KEYS, f, "pipeline file")
        name = req_str(body, "pipeline", f, "pipeline file")
        if not NAME_RE.match(name):
            raise ConfigError(f"invalid pipeline name '{name}'", span=f.value(body, "pipeline"))
        if name in self.pipelines:
            raise ConfigError(f"pipeline '{name}' is defined twice", span=f.value(body, "pipeline"))
        self.pipelines.append(name)
        self._pipeline_body(body, f, name, tags_of(body, f, f"pipeline '{name}'"))

    def _pipeline_body(self, body: YMap, f: File, pipeline: str, tags: frozenset[str]) -> None:
        for section, build in (("nodes", self._node), ("checks", self._check)):
            raw = body.get(section)
            if raw is None:
                continue
            if not isinstance(raw, YSeq):
                raise ConfigError(f"'{section}' must be a list, got {type_name(raw)}",
                                  span=f.value(body, section),
                                  hint=f"write each entry as '- name: ...' under {section}:")
            for i, item in enumerate(raw):
                item = expect_map(item, f, raw.item_marks[i], f"an entry of {section}")
                build(item, f, pipeline, tags)

    def _claim_name(self, item: YMap, f: File, what: str) -> NodeId:
        name = req_str(item, "name", f, what)
        span = f.value(item, "name")
        if not NAME_RE.match(name):
            raise ConfigError(f"invalid {what} name '{name}'", span=span,
                              hint="names are identifiers: letters, digits and _, not "
                                   "starting with a digit (they become table names)")
        first = self.names.get(name.lower())
        if first is not None:
            other, where = first
            message = f"duplicate name '{name}'"
            if other != name:
                message += f": the same table name as '{other}' (names are case-insensitive)"
            raise ConfigError(message, span=span, node=name,
                              hint=f"first defined at {shown(where.file, self.root)}:{where.line}")
        self.names[name.lower()] = (name, span)
        return NodeId(name)

    def _node(self, item: YMap, f: File, pipeline: str, ptags: frozenset[str]) -> None:
        check_keys(item, NODE_KEYS, f, "node", DBT_NODE_KEYS)
        name = self._claim_name(item, f, "node")
        what = f"node '{name}'"
        given = [p for p in PRODUCERS if p in item]
        if not given:
            raise ConfigError(f"{what} has no producer", span=f.key(item, "name"), node=name,
                              hint="give exactly one of: read, sql, python")
        if len(given) > 1:
            raise ConfigError(f"{what} has {len(given)} producers ({', '.join(given)})",
                              span=f.key(item, given[1]), node=name,
                              hint="a node has exactly one of: read, sql, python")
        self.sub.take_used()
        self.sub.take_env()
        producer: Producer
        kind = NodeKind(given[0])
        if kind is NodeKind.READ:
            producer = self._read_spec(item, f, what)
        elif kind is NodeKind.SQL:
            producer = self._sql(item, f, what)
        else:
            producer = self._python(item, f, what)
        vars_used, env_used = self.sub.take_used(), self.sub.take_env()
        # what a write uses counts towards its write key (re-export), not the node's data
        writes = self._writes(item, f, what)
        self.sub.take_used()
        self.sub.take_env()
        deps = item.get("depends_on")
        depends_on = None
        if deps is not None:
            names = str_list(deps, f, item.value_marks.get("depends_on"), f"{what}: depends_on")
            for d in names:
                if not NAME_RE.match(d):
                    raise ConfigError(f"{what}: depends_on: invalid name '{d}'",
                                      span=f.value(item, "depends_on"), node=name)
            depends_on = tuple(NodeId(d) for d in dict.fromkeys(names))
        self.nodes[name] = Node(
            name=name, kind=kind, pipeline=pipeline, file=f.rel, span=f.value(item, "name"),
            producer=producer, writes=writes, depends_on=depends_on,
            depends_on_span=f.value(item, "depends_on") if deps is not None else None,
            contracts=rules_of(item, "contracts", f, what),
            validate=rules_of(item, "validate", f, what),
            retry=retry_of(item, f, what), timeout=timeout_of(item, f, what),
            always_run=opt_bool(item, "always_run", f, what),
            version=version_of(item, f, what), tags=ptags | tags_of(item, f, what),
            description=opt_str(item, "description", f, what), vars_used=vars_used,
            env_used=env_used,
        )

    def _check(self, item: YMap, f: File, pipeline: str, ptags: frozenset[str]) -> None:
        check_keys(item, CHECK_KEYS, f, "check")
        name = self._claim_name(item, f, "check")
        what = f"check '{name}'"
        self.sub.take_used()
        self.sub.take_env()
        text = req_str(item, "assert", f, what)
        origin = f.origin(item, "assert")
        self.sub.render(text, origin, what)  # validates substitutions; the rule keeps the template
        raw_on_fail = item.get("on_fail", "halt")
        try:
            on_fail = OnFail(raw_on_fail)
        except ValueError:
            raise ConfigError(f"{what}: on_fail must be 'halt' or 'warn', got '{raw_on_fail}'",
                              span=f.value(item, "on_fail"), node=name) from None
        self.checks[name] = Check(
            name=name, pipeline=pipeline, file=f.rel, span=f.value(item, "name"),
            rule=RuleText(text, origin.span, origin), on_fail=on_fail,
            tags=ptags | tags_of(item, f, what), description=opt_str(item, "description", f, what),
            vars_used=self.sub.take_used(),
        )

    # -- producers and writes ---------------------------------------------------------
    def _location(self, body: YMap, f: File, what: str, section: str) -> tuple[
            str, str, str, Format, dict[str, Any], dict[str, Any], Span]:
        check_keys(body, LOCATION_KEYS, f, f"{what}: {section}")
        conn_name = req_str(body, "connection", f, f"{what}: {section}")
        conn = self.connections.get(conn_name)
        if conn is None:
            known = ", ".join(self.connections) or "none defined"
            raise ConfigError(f"{what}: unknown connection '{conn_name}'",
                              span=f.value(body, "connection"),
                              hint=did_you_mean(conn_name, self.connections)
                              or f"connections: {known}")
        # the connection's variables count as this node's: they decide what it reads (its
        # environment variables count through the files they lead to)
        self.sub.render(conn.base_path, TextOrigin(conn.span.file, conn.span.line, 1), what,
                        track_env=False)
        path = req_str(body, "path", f, f"{what}: {section}")
        path_span = f.value(body, "path")
        if f.origin(body, "path").style in ("'", '"'):
            path_span = Span(path_span.file, path_span.line, path_span.col + 1)
        rendered = self.sub.render(path, f.origin(body, "path"), what)
        check_inside(conn, rendered, path_span, what)
        fmt = file_format(body, rendered, f, what)
        options: dict[str, Any] = {}
        rendered_options: dict[str, Any] = {}
        raw_opts = body.get("options")
        if raw_opts is not None:
            raw_opts = expect_map(raw_opts, f, body.value_marks.get("options"),
                                   f"{what}: {section}.options")
            for key, value in raw_opts.items():
                plain_structure(value, f.value(raw_opts, key), f"{what}: option '{key}'")
                options[str(key)] = plain_value(value)
                rendered_options[str(key)] = self.sub.render_value(value, f, raw_opts, key, what)
        return conn_name, path, rendered, fmt, options, rendered_options, path_span

    def _read_spec(self, item: YMap, f: File, what: str) -> ReadSpec:
        body = expect_map(item["read"], f, item.value_marks.get("read"), f"{what}: read")
        conn, path, rendered, fmt, options, rendered_options, span = \
            self._location(body, f, what, "read")
        return ReadSpec(conn, path, rendered, fmt, options, rendered_options, span)

    def _sql(self, item: YMap, f: File, what: str) -> SqlSpec:
        source = sql_source(item, f, what, self.root, self.read_sql)
        template = strip_sql(source.text)
        pieces: list[Piece] = []
        rendered = self.sub.render(template, source.origin, what, pieces=pieces)
        return SqlSpec(template, rendered, source.origin, source.file, tuple(pieces))

    def _python(self, item: YMap, f: File, what: str) -> PythonSpec:
        ref = item["python"]
        m = _PY_RE.match(ref) if isinstance(ref, str) else None
        if m is None:
            raise ConfigError(f"{what}: python must be 'module:function', got {ref!r}",
                              span=f.value(item, "python"),
                              hint="e.g. python: transforms.value:score")
        return PythonSpec(m.group(1), m.group(2), f.origin(item, "python"))

    def _writes(self, item: YMap, f: File, what: str) -> tuple[WriteSpec, ...]:
        raw = item.get("write")
        if raw is None:
            return ()
        entries: list[tuple[Any, tuple[int, int]]]
        if isinstance(raw, YSeq):
            entries = list(zip(raw, raw.item_marks))
        else:
            entries = [(raw, item.value_marks["write"])]
        writes: list[WriteSpec] = []
        seen: set[tuple[str, str]] = set()
        for body, mark in entries:
            body = expect_map(body, f, mark, f"{what}: write")
            conn, path, rendered, fmt, options, rendered_options, span = \
                self._location(body, f, what, "write")
            if any(c in rendered for c in "*?["):
                raise ConfigError(f"{what}: a write path cannot be a glob", span=span)
            if (conn, rendered) in seen:
                raise ConfigError(f"{what}: writes '{path}' twice", span=span)
            seen.add((conn, rendered))
            writes.append(WriteSpec(conn, path, rendered, fmt, options, rendered_options, span))
        return tuple(writes)


def load_project(root: Path, overrides: list[VarOverride] | None = None,
                 env: Mapping[str, str] | None = None,
                 read_file: Callable[[Path], tuple[Any, bytes]] | None = None,
                 read_sql: Callable[[Path], bytes] = read_bytes,
                 target: str | None = None) -> Project:
    """Load and check the project in `root`. Pure apart from reading the YAML files (through
    `read_file`, which a caller may back with a cache) and the .sql files nodes name
    (through `read_sql`, which a caller may watch to know what the project was made from)."""
    if read_file is None:
        from odibi.config.yaml_load import read_yaml_file as read_file
    return _Loader(root, overrides or [], os.environ if env is None else env, read_file,
                   read_sql, target).load()
