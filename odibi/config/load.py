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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odibi.config.model import (
    Check,
    Connection,
    Node,
    Producer,
    Project,
    PythonSpec,
    ReadSpec,
    Retry,
    RuleText,
    Scalar,
    SqlSpec,
    WriteSpec,
)
from odibi.config.ytree import YMap, YSeq
from odibi.errors import ConfigError, Span, TextOrigin, UsageError, did_you_mean
from odibi.ids import FORMAT_BY_SUFFIX, NAME_RE, Format, NodeId, NodeKind, OnFail

PROJECT_FILE = "odibi.yaml"

PROJECT_KEYS = {"project", "description", "connections", "vars", "pipelines", "nodes", "checks",
                "python_path"}
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


@dataclass(frozen=True, slots=True)
class VarOverride:
    """`--var NAME=VALUE` from the command line, with where NAME is in its text."""

    name: str
    value: Scalar
    span: Span


class _File:
    """Where values come from: one YAML file, for spans."""

    __slots__ = ("path", "rel", "data", "_lines")

    def __init__(self, path: Path, rel: str, data: bytes) -> None:
        self.path = str(path)
        self.rel = rel
        self.data = data
        self._lines: list[str] | None = None

    def at(self, mark: tuple[int, int], width: int = 1) -> Span:
        return Span(self.path, mark[0], mark[1], width=width)

    def key(self, m: YMap, key: str) -> Span:
        return self.at(m.key_marks.get(key, m.mark), len(str(key)))

    def value(self, m: YMap, key: str) -> Span:
        return self.at(m.value_marks.get(key, m.mark))

    def origin(self, m: YMap | YSeq, key: Any) -> TextOrigin:
        """Where the string value `m[key]` (or item `m[key]` of a sequence) starts."""
        if isinstance(m, YSeq):
            mark, style = m.item_marks[key], m.item_styles[key]
        else:
            mark, style = m.value_marks.get(key, m.mark), m.value_styles.get(key, "")
        indent = self._block_indent(mark[0]) if style in ("|", ">") else 0
        return TextOrigin(self.path, mark[0], mark[1], style, indent)

    def _block_indent(self, indicator_line: int) -> int:
        if self._lines is None:
            self._lines = self.data.decode("utf-8").splitlines()
        for line in self._lines[indicator_line:]:
            if line.strip():
                return len(line) - len(line.lstrip(" ")) + 1
        return 1


_TYPE_NAMES = ((bool, "true or false"), (str, "a string"), (int, "an integer"),
               (float, "a number"), (list, "a list"), (dict, "a mapping"), (type(None), "empty"))


def _type_name(value: Any) -> str:
    for t, name in _TYPE_NAMES:
        if isinstance(value, t):
            return name
    return type(value).__name__


class Substituter:
    """Expands ``${vars.X}`` and ``${env:X}``; ``$${`` is a literal ``${``. Records which
    vars each rendering used (`used`), never storing environment values."""

    def __init__(self, variables: Mapping[str, Scalar], env: Mapping[str, str]) -> None:
        self.vars = variables
        self.env = env
        self.used: set[str] = set()
        self.env_used: set[str] = set()

    def render(self, template: str, origin: TextOrigin, what: str, *, track_env: bool = True
               ) -> str:
        if "$" not in template:
            return template

        def replace(m: re.Match[str]) -> str:
            if m.group(1):  # $${...}: escaped
                return "${" + m.group(2) + "}"
            inner = m.group(2)
            span = origin.span_at(template, m.start(), m.end() - m.start())
            if vm := _VAR_RE.match(inner):
                name = vm.group(1)
                if name not in self.vars:
                    raise ConfigError(f"{what}: undefined variable '{name}' in ${{{inner}}}",
                                      span=span, hint=did_you_mean(name, self.vars)
                                      or "define it under vars: in odibi.yaml")
                self.used.add(name)
                return _render_scalar(self.vars[name])
            if em := _ENV_RE.match(inner):
                name = em.group(1)
                if name not in self.env:
                    raise ConfigError(f"{what}: environment variable {name} is not set "
                                      f"(${{{inner}}})", span=span)
                if track_env:
                    self.env_used.add(name)
                return self.env[name]
            raise ConfigError(f"{what}: unknown substitution ${{{inner}}}", span=span,
                              hint="use ${vars.NAME} or ${env:NAME}; write $${ for a literal ${")

        return _SUB_RE.sub(replace, template)

    def render_value(self, value: Any, f: _File, m: YMap | YSeq, key: Any, what: str) -> Any:
        """Render every string inside an option value (scalars, lists, mappings)."""
        if isinstance(value, str):
            return self.render(value, f.origin(m, key), what)
        if isinstance(value, YMap):
            return {k: self.render_value(v, f, value, k, what) for k, v in value.items()}
        if isinstance(value, YSeq):
            return [self.render_value(v, f, value, i, what) for i, v in enumerate(value)]
        return value

    def take_used(self) -> frozenset[str]:
        used, self.used = frozenset(self.used), set()
        return used

    def take_env(self) -> Mapping[str, str]:
        """Digests of the environment variables used since the last call (never values)."""
        from odibi.hashing import digest_parts

        used = {n: digest_parts("env", n, self.env[n]) for n in sorted(self.env_used)}
        self.env_used = set()
        return used


def _render_scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def find_project_root(start: Path) -> Path:
    """`start` if it holds odibi.yaml; no walking upwards (explicit is better: use -C)."""
    if (start / PROJECT_FILE).is_file():
        return start
    raise ConfigError(f"no {PROJECT_FILE} in {start}",
                      hint="run odibi in a project directory, pass -C DIR, or create one "
                           "with 'odibi init DIR'")


def parse_var_overrides(items: list[str]) -> list[VarOverride]:
    """`--var K=V` values; V is read as a YAML scalar (5 -> int, true -> bool)."""
    result: list[VarOverride] = []
    for item in items:
        text = f"--var {item}"
        key, sep, raw = item.partition("=")
        name = key.strip()
        lead = len(key) - len(key.lstrip())
        span = Span("<--var>", 1, 7 + lead, text=text, width=max(1, len(name)))
        if not sep or not NAME_RE.match(name):
            raise UsageError(f"--var expects NAME=VALUE, got '{item}'", span=span,
                             hint=f"e.g. --var {name or 'NAME'}=5")
        from odibi.config.yaml_load import parse_yaml

        try:
            value = parse_yaml(raw, "<--var>") if raw.strip() else raw
        except ConfigError:
            value = raw
        if not isinstance(value, (str, int, float, bool)):
            value = raw
        result.append(VarOverride(name, value, span))
    return result


class _Loader:
    """One load of one project. Holds the project-wide tables while nodes are built."""

    def __init__(self, root: Path, overrides: list[VarOverride], env: Mapping[str, str],
                 read_file: Callable[[Path], tuple[Any, bytes]]) -> None:
        self.root = root.resolve()
        self.overrides = overrides
        self.env = env
        self.read_file = read_file
        self.connections: dict[str, Connection] = {}
        self.nodes: dict[NodeId, Node] = {}
        self.checks: dict[NodeId, Check] = {}
        self.names: dict[str, tuple[str, Span]] = {}  # lower-cased -> (name, first place)
        self.files: list[str] = []
        self.pipelines: list[str] = []
        self.sub: Substituter

    def _read(self, rel: str) -> tuple[Any, _File]:
        path = self.root / rel
        raw, data = self.read_file(path)
        self.files.append(rel)
        return raw, _File(path, rel, data)

    # -- the project file -------------------------------------------------------------
    def load(self) -> Project:
        raw, f = self._read(PROJECT_FILE)
        if raw is None:
            raise ConfigError(f"{PROJECT_FILE} is empty", span=Span(f.path, 1, 1),
                              hint="start from 'odibi init DIR'")
        top = _expect_map(raw, f, None, PROJECT_FILE)
        _check_keys(top, PROJECT_KEYS, f, PROJECT_FILE)
        if "project" not in top:
            raise ConfigError(f"{PROJECT_FILE} has no 'project' (the project's name)",
                              span=f.at(top.mark), hint="add a line: project: NAME")
        name = _req_str(top, "project", f, PROJECT_FILE)
        description = _opt_str(top, "description", f, PROJECT_FILE)
        variables = self._vars(top, f)
        self.sub = Substituter(variables, self.env)
        self._connections(top, f)
        python_text, python_path = self._python_path(top, f)
        if "nodes" in top or "checks" in top:
            self.pipelines.append(name)
            self._pipeline_body(top, f, name, frozenset())
        for rel in self._pipeline_files(top, f):
            self._pipeline_file(rel)
        return Project(
            name=name, root=self.root, config_file=self.root / PROJECT_FILE,
            connections=self.connections, vars=variables, nodes=self.nodes, checks=self.checks,
            pipelines=tuple(self.pipelines), files=tuple(self.files), python_path=python_path,
            python_path_text=python_text, description=description,
        )

    def _vars(self, top: YMap, f: _File) -> dict[str, Scalar]:
        raw = top.get("vars")
        raw = YMap() if raw is None else _expect_map(raw, f, top.value_marks.get("vars"), "vars")
        result: dict[str, Scalar] = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not NAME_RE.match(key):
                raise ConfigError(f"invalid variable name '{key}'", span=f.key(raw, key),
                                  hint="names are letters, digits and _, not starting with a digit")
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"variable '{key}' must be a string, number or boolean, "
                                  f"got {_type_name(value)}", span=f.value(raw, key))
            result[key] = value
        for o in self.overrides:
            if o.name not in result:
                raise UsageError(f"--var {o.name}: no such variable in {PROJECT_FILE}",
                                 span=o.span, hint=did_you_mean(o.name, result)
                                 or "define it under vars: first")
            result[o.name] = o.value
        return result

    def _connections(self, top: YMap, f: _File) -> None:
        raw = top.get("connections")
        if raw is None:
            return
        raw = _expect_map(raw, f, top.value_marks.get("connections"), "connections")
        for name, body in raw.items():
            span = f.key(raw, name)
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise ConfigError(f"invalid connection name '{name}'", span=span)
            what = f"connection '{name}'"
            body = _expect_map(body, f, raw.value_marks.get(name), what)
            _check_keys(body, CONNECTION_KEYS, f, what)
            ctype = body.get("type", "local")
            if ctype not in CONNECTION_TYPES:
                raise ConfigError(f"{what}: unknown type '{ctype}'", span=f.value(body, "type"),
                                  hint=f"supported: {', '.join(CONNECTION_TYPES)}")
            base = _req_str(body, "base_path", f, what)
            rendered = self.sub.render(base, f.origin(body, "base_path"), what)
            self.sub.take_used()
            try:
                root = Path(rendered).expanduser()
            except RuntimeError:
                raise ConfigError(f"{what}: cannot expand '{rendered}' (no such user)",
                                  span=f.value(body, "base_path")) from None
            root = (root if root.is_absolute() else self.root / root).resolve()
            self.connections[name] = Connection(name, ctype, base, root, span)

    def _python_path(self, top: YMap, f: _File) -> tuple[tuple[str, ...], tuple[Path, ...]]:
        raw = top.get("python_path", ["."])
        items = _str_list(raw, f, top.value_marks.get("python_path"), "python_path")
        return tuple(items), tuple((self.root / p).resolve() for p in items)

    def _pipeline_files(self, top: YMap, f: _File) -> list[str]:
        raw = top.get("pipelines")
        if raw is None:
            return []
        patterns = _str_list(raw, f, top.value_marks.get("pipelines"), "pipelines")
        result: list[str] = []
        for i, pattern in enumerate(patterns):
            mark = raw.item_marks[i] if isinstance(raw, YSeq) else top.value_marks["pipelines"]
            matches = sorted(glob.glob(pattern, root_dir=self.root, recursive=True))
            matches = [m for m in matches if (self.root / m).is_file()]
            if not matches:
                raise ConfigError(f"pipelines: '{pattern}' matches no file", span=f.at(mark),
                                  hint="patterns are relative to the project directory "
                                       "(where odibi.yaml is)")
            for m in matches:
                rel = Path(m).as_posix()
                if rel not in result and rel != PROJECT_FILE:
                    result.append(rel)
        return result

    # -- pipeline files ---------------------------------------------------------------
    def _pipeline_file(self, rel: str) -> None:
        raw, f = self._read(rel)
        if raw is None:
            raise ConfigError("pipeline file is empty", span=Span(f.path, 1, 1))
        body = _expect_map(raw, f, None, "pipeline file")
        _check_keys(body, PIPELINE_KEYS, f, "pipeline file")
        name = _req_str(body, "pipeline", f, "pipeline file")
        if not NAME_RE.match(name):
            raise ConfigError(f"invalid pipeline name '{name}'", span=f.value(body, "pipeline"))
        if name in self.pipelines:
            raise ConfigError(f"pipeline '{name}' is defined twice", span=f.value(body, "pipeline"))
        self.pipelines.append(name)
        self._pipeline_body(body, f, name, _tags(body, f, f"pipeline '{name}'"))

    def _pipeline_body(self, body: YMap, f: _File, pipeline: str, tags: frozenset[str]) -> None:
        for section, build in (("nodes", self._node), ("checks", self._check)):
            raw = body.get(section)
            if raw is None:
                continue
            if not isinstance(raw, YSeq):
                raise ConfigError(f"'{section}' must be a list, got {_type_name(raw)}",
                                  span=f.value(body, section),
                                  hint=f"write each entry as '- name: ...' under {section}:")
            for i, item in enumerate(raw):
                item = _expect_map(item, f, raw.item_marks[i], f"an entry of {section}")
                build(item, f, pipeline, tags)

    def _claim_name(self, item: YMap, f: _File, what: str) -> NodeId:
        name = _req_str(item, "name", f, what)
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
                              hint=f"first defined at {_rel(where.file, self.root)}:{where.line}")
        self.names[name.lower()] = (name, span)
        return NodeId(name)

    def _node(self, item: YMap, f: _File, pipeline: str, ptags: frozenset[str]) -> None:
        _check_keys(item, NODE_KEYS, f, "node")
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
            names = _str_list(deps, f, item.value_marks.get("depends_on"), f"{what}: depends_on")
            for d in names:
                if not NAME_RE.match(d):
                    raise ConfigError(f"{what}: depends_on: invalid name '{d}'",
                                      span=f.value(item, "depends_on"), node=name)
            depends_on = tuple(NodeId(d) for d in dict.fromkeys(names))
        self.nodes[name] = Node(
            name=name, kind=kind, pipeline=pipeline, file=f.rel, span=f.value(item, "name"),
            producer=producer, writes=writes, depends_on=depends_on,
            depends_on_span=f.value(item, "depends_on") if deps is not None else None,
            contracts=_rules(item, "contracts", f, what),
            validate=_rules(item, "validate", f, what),
            retry=_retry(item, f, what), timeout=_timeout(item, f, what),
            always_run=_opt_bool(item, "always_run", f, what),
            version=_version(item, f, what), tags=ptags | _tags(item, f, what),
            description=_opt_str(item, "description", f, what), vars_used=vars_used,
            env_used=env_used,
        )

    def _check(self, item: YMap, f: _File, pipeline: str, ptags: frozenset[str]) -> None:
        _check_keys(item, CHECK_KEYS, f, "check")
        name = self._claim_name(item, f, "check")
        what = f"check '{name}'"
        self.sub.take_used()
        self.sub.take_env()
        text = _req_str(item, "assert", f, what)
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
            tags=ptags | _tags(item, f, what), description=_opt_str(item, "description", f, what),
            vars_used=self.sub.take_used(),
        )

    # -- producers and writes ---------------------------------------------------------
    def _location(self, body: YMap, f: _File, what: str, section: str) -> tuple[
            str, str, str, Format, dict[str, Any], dict[str, Any], Span]:
        _check_keys(body, LOCATION_KEYS, f, f"{what}: {section}")
        conn_name = _req_str(body, "connection", f, f"{what}: {section}")
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
        path = _req_str(body, "path", f, f"{what}: {section}")
        path_span = f.value(body, "path")
        if f.origin(body, "path").style in ("'", '"'):
            path_span = Span(path_span.file, path_span.line, path_span.col + 1)
        rendered = self.sub.render(path, f.origin(body, "path"), what)
        _check_inside(conn, rendered, path_span, what)
        fmt = _format(body, rendered, f, what)
        options: dict[str, Any] = {}
        rendered_options: dict[str, Any] = {}
        raw_opts = body.get("options")
        if raw_opts is not None:
            raw_opts = _expect_map(raw_opts, f, body.value_marks.get("options"),
                                   f"{what}: {section}.options")
            for key, value in raw_opts.items():
                _plain_structure(value, f.value(raw_opts, key), f"{what}: option '{key}'")
                options[str(key)] = _plain(value)
                rendered_options[str(key)] = self.sub.render_value(value, f, raw_opts, key, what)
        return conn_name, path, rendered, fmt, options, rendered_options, path_span

    def _read_spec(self, item: YMap, f: _File, what: str) -> ReadSpec:
        body = _expect_map(item["read"], f, item.value_marks.get("read"), f"{what}: read")
        conn, path, rendered, fmt, options, rendered_options, span = \
            self._location(body, f, what, "read")
        return ReadSpec(conn, path, rendered, fmt, options, rendered_options, span)

    def _sql(self, item: YMap, f: _File, what: str) -> SqlSpec:
        text = item["sql"]
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{what}: sql must be a non-empty SELECT statement",
                              span=f.value(item, "sql"))
        template = _strip_sql(text)
        origin = f.origin(item, "sql")
        rendered = self.sub.render(template, origin, what)
        return SqlSpec(template, rendered, origin)

    def _python(self, item: YMap, f: _File, what: str) -> PythonSpec:
        ref = item["python"]
        m = _PY_RE.match(ref) if isinstance(ref, str) else None
        if m is None:
            raise ConfigError(f"{what}: python must be 'module:function', got {ref!r}",
                              span=f.value(item, "python"),
                              hint="e.g. python: transforms.value:score")
        return PythonSpec(m.group(1), m.group(2), f.origin(item, "python"))

    def _writes(self, item: YMap, f: _File, what: str) -> tuple[WriteSpec, ...]:
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
            body = _expect_map(body, f, mark, f"{what}: write")
            conn, path, rendered, fmt, options, rendered_options, span = \
                self._location(body, f, what, "write")
            if any(c in rendered for c in "*?["):
                raise ConfigError(f"{what}: a write path cannot be a glob", span=span)
            if (conn, rendered) in seen:
                raise ConfigError(f"{what}: writes '{path}' twice", span=span)
            seen.add((conn, rendered))
            writes.append(WriteSpec(conn, path, rendered, fmt, options, rendered_options, span))
        return tuple(writes)


# -- small validators ---------------------------------------------------------------------
def _rel(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _expect_map(value: Any, f: _File, mark: tuple[int, int] | None, what: str) -> YMap:
    if isinstance(value, YMap):
        return value
    span = f.at(mark) if mark else Span(f.path, 1, 1)
    raise ConfigError(f"{what} must be a mapping (key: value), got {_type_name(value)}", span=span)


def _check_keys(m: YMap, allowed: set[str], f: _File, what: str) -> None:
    for key in m:
        if key not in allowed:
            raise ConfigError(f"unknown key '{key}' in {what}", span=f.key(m, str(key)),
                              hint=did_you_mean(str(key), sorted(allowed))
                              or f"allowed: {', '.join(sorted(allowed))}")


def _req_str(m: YMap, key: str, f: _File, what: str) -> str:
    if key not in m:
        raise ConfigError(f"{what}: missing '{key}'", span=f.at(m.mark))
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        raise ConfigError(f"{what}: '{key}' must be a non-empty string, got {_type_name(value)}",
                          span=f.value(m, key))
    return str(value)


def _opt_str(m: YMap, key: str, f: _File, what: str) -> str | None:
    value = m.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{what}: '{key}' must be a string, got {_type_name(value)}",
                          span=f.value(m, key))
    return value


def _opt_bool(m: YMap, key: str, f: _File, what: str) -> bool:
    value = m.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: '{key}' must be true or false, got {value!r}",
                          span=f.value(m, key))
    return value


def _str_list(value: Any, f: _File, m: tuple[int, int] | None, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        span = f.at(m) if m else None
        raise ConfigError(f"{what} must be a list of strings, got {_type_name(value)}", span=span)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            marks = value.item_marks if isinstance(value, YSeq) else [m or (1, 1)] * len(value)
            raise ConfigError(f"{what}: each entry must be a string, got {_type_name(item)}",
                              span=f.at(marks[i]))
    return list(value)


def _tags(m: YMap, f: _File, what: str) -> frozenset[str]:
    if "tags" not in m:
        return frozenset()
    tags = _str_list(m["tags"], f, m.value_marks.get("tags"), f"{what}: 'tags'")
    for t in tags:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", t):
            raise ConfigError(f"{what}: invalid tag '{t}'", span=f.value(m, "tags"),
                              hint="tags are letters, digits, '_', '-' and '.'")
    return frozenset(tags)


def _rules(m: YMap, key: str, f: _File, what: str) -> tuple[RuleText, ...]:
    if key not in m:
        return ()
    raw = m[key]
    if isinstance(raw, str):
        items, origins = [raw], [f.origin(m, key)]
    elif isinstance(raw, YSeq):
        items, origins = list(raw), [f.origin(raw, i) for i in range(len(raw))]
    else:
        raise ConfigError(f"{what}: '{key}' must be a list of rules, got {_type_name(raw)}",
                          span=f.value(m, key))
    rules = []
    for item, origin in zip(items, origins):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{what}: each entry of '{key}' must be a rule written as text, "
                              f"got {_type_name(item)}", span=origin.span,
                              hint="quote rules that contain ': ' or start with a bracket")
        rules.append(RuleText(item, origin.span, origin))
    return tuple(rules)


def _retry(m: YMap, f: _File, what: str) -> Retry:
    raw = m.get("retry")
    if raw is None:
        return Retry()
    span = f.value(m, "retry")
    if isinstance(raw, int) and not isinstance(raw, bool):
        attempts, backoff = raw, 0.0
    else:
        body = _expect_map(raw, f, m.value_marks.get("retry"), f"{what}: retry")
        _check_keys(body, RETRY_KEYS, f, f"{what}: retry")
        attempts = body.get("attempts", 2)
        if "attempts" in body:
            span = f.value(body, "attempts")
        backoff = _seconds(body.get("backoff", 0), f.value(body, "backoff"), what, "retry.backoff",
                           allow_zero=True)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(f"{what}: retry attempts must be a whole number >= 1, got {attempts!r}",
                          span=span)
    return Retry(attempts, backoff)


def _timeout(m: YMap, f: _File, what: str) -> float | None:
    if m.get("timeout") is None:
        return None
    return _seconds(m["timeout"], f.value(m, "timeout"), what, "timeout", allow_zero=False)


def _seconds(raw: Any, span: Span, what: str, key: str, *, allow_zero: bool) -> float:
    value: float | None = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and (dm := _DURATION_RE.match(raw)):
        value = float(dm.group(1)) * _DURATION_UNITS[dm.group(2)]
    if value is None or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{what}: '{key}' must be a positive number of seconds or a duration "
                          f"like '30s', '5m', got {raw!r}", span=span)
    return value


def _version(m: YMap, f: _File, what: str) -> str | None:
    raw = m.get("version")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ConfigError(f"{what}: 'version' must be a string or number", span=f.value(m, "version"))
    return str(raw)


def _format(body: YMap, rendered: str, f: _File, what: str) -> Format:
    raw = body.get("format")
    if raw is None:
        suffix = Path(rendered.rstrip("*")).suffix.lower()
        fmt = FORMAT_BY_SUFFIX.get(suffix)
        if fmt is None:
            raise ConfigError(f"{what}: cannot tell the format of '{rendered}'",
                              span=f.value(body, "path"),
                              hint="add format: csv, parquet or json")
        return fmt
    try:
        return Format(str(raw).lower())
    except ValueError:
        names = [x.value for x in Format]
        raise ConfigError(f"{what}: unknown format '{raw}'", span=f.value(body, "format"),
                          hint=did_you_mean(str(raw).lower(), names)
                          or f"supported: {', '.join(names)}") from None


def _plain_structure(value: Any, span: Span, what: str) -> None:
    if value is None:
        raise ConfigError(f"{what} has no value", span=span)
    if isinstance(value, (dict, list)):
        for v in value.values() if isinstance(value, dict) else value:
            _plain_structure(v, span, what)


def _plain(value: Any) -> Any:
    """Strip position bookkeeping: YMap/YSeq -> dict/list."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_inside(conn: Connection, rendered: str, span: Span, what: str) -> None:
    """A path must stay inside its connection's base_path, symlinks included."""
    where = f"connection '{conn.name}' (base_path: {conn.base_path})"
    if os.path.isabs(rendered) or rendered.startswith("~"):
        raise ConfigError(f"{what}: path '{rendered}' must be relative to {where}", span=span,
                          hint="add a connection for that directory instead")
    # the part before the first glob character is a real path; resolve its symlinks
    prefix = re.split(r"[*?\[]", rendered, maxsplit=1)[0]
    target = (conn.root / prefix).resolve()
    if target != conn.root and conn.root not in target.parents:
        raise ConfigError(f"{what}: path '{rendered}' leaves {where}", span=span,
                          hint="add a connection for that directory instead")


def _strip_sql(text: str) -> str:
    text = text.rstrip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def load_project(root: Path, overrides: list[VarOverride] | None = None,
                 env: Mapping[str, str] | None = None,
                 read_file: Callable[[Path], tuple[Any, bytes]] | None = None) -> Project:
    """Load and check the project in `root`. Pure apart from reading the YAML files (through
    `read_file`, which a caller may back with a cache)."""
    if read_file is None:
        from odibi.config.yaml_load import read_yaml_file as read_file
    return _Loader(root, overrides or [], os.environ if env is None else env, read_file).load()
