"""Column binding: each SQL node checked against its inputs' columns, in DAG order, before
anything runs (`odibi validate`: every SQL node; `odibi build`: the ones it will run).

Every node on the way gets an output schema, without touching its data:

    read     its files' header or metadata, through the engine's reader with the node's
             options (`odibi.engines.read_schemas`); cached by the files' digests and
             the options
    sql      its rendered SQL bound against empty stand-ins of its inputs, by the
             engine's `Binder` (`odibi.engines.open_binder`: in memory, reaching no
             file); cached by the SQL and its inputs' schemas
    python   (and a read of files another node exports) the schema its last build
             recorded, trusted only while its code and its inputs' schemas are those it
             was built from; otherwise it is `Unknown`, and so is every SQL node below it
             ("not checked", with the root cause: a note, never an error)
    fixed    (a build's nodes that do not run) the schema of the output they keep

A statement that does not bind is a `SqlError` at its place in the YAML (or `.sql`
file), with a did-you-mean from the columns in scope. Guarantees: nothing is run on
data; no file outside the read nodes' own is reached; the engine (DuckDB) is imported
only when something is missing from the cache (a second `validate` binds only what
changed), and an empty `check` costs nothing at all. The engine's work is behind
`odibi.engines` (DuckDB's in engines/duckdb_bind.py); what to bind, when, and how a
failure is told are decided here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from odibi.config.model import Node, ReadSpec, SqlSpec
from odibi.engines import engine_version
from odibi.engines.base import Schema
from odibi.errors import SqlError, did_you_mean
from odibi.fingerprint import FileDigests, OwnParts, canon, chain, exported_paths, own_parts
from odibi.hashing import digest_parts
from odibi.ids import Digest, NodeId, NodeKind, Status
from odibi.planner import Plan
from odibi.resolve import Resolved, sql_span
from odibi.state import State
from odibi.trace import Trace

if TYPE_CHECKING:
    from odibi.engines.tools import Binder, BindFailure, BindProblem

SCHEME = "bind-1"  # part of every cache key: bump when what a key stands for changes


class SchemaCache(Protocol):
    def get_schema(self, key: Digest) -> Schema | None: ...
    def put_schemas(self, items: Mapping[Digest, Schema]) -> None: ...


@dataclass(frozen=True, slots=True)
class Unknown:
    """Why a node's output schema cannot be known before it runs: `cause` is the node at
    the root (a Python node never built, ...), `why` says what about it."""

    cause: NodeId
    why: str


@dataclass(frozen=True, slots=True)
class Binding:
    """What a binding pass found: `bound`, the SQL nodes checked (in DAG order);
    `unchecked`, those it could not check and why; `fresh`, how many schemas DuckDB
    worked out in this pass (the others came from the cache)."""

    bound: tuple[NodeId, ...] = ()
    unchecked: Mapping[NodeId, Unknown] = field(default_factory=dict)
    fresh: int = 0


def bind_nodes(resolved: Resolved, check: Iterable[NodeId], *, own: Mapping[NodeId, OwnParts],
               traces: Mapping[NodeId, Trace], fixed: Collection[NodeId] = frozenset(),
               cache: SchemaCache | None = None,
               redact: Mapping[str, str] | None = None) -> Binding:
    """Bind the SQL nodes of `check` (others are ignored), in DAG order, with whatever
    schemas above them that takes. `fixed` nodes keep the output their trace records
    (`traces`); `own` holds the own fingerprint parts of every read and Python node on
    the way. Raises SqlError at the first statement that does not bind."""
    project = resolved.project
    wanted = [n for n in check if n in project.nodes and project.nodes[n].kind is NodeKind.SQL]
    if not wanted:
        return Binding()
    order = _needed(resolved, wanted, fixed)
    run = _Pass(resolved, own, traces, fixed, cache, redact or {})
    try:
        run.read_all([n for n in order if n not in fixed])
        for n in order:
            run.visit(n)
    finally:
        run.close()
    chosen = set(wanted)
    return Binding(tuple(n for n in order if n in chosen and n in run.checked),
                   {n: u for n, u in run.unknown.items() if n in chosen and n not in run.checked},
                   run.fresh)


def _needed(resolved: Resolved, check: list[NodeId], fixed: Collection[NodeId]) -> list[NodeId]:
    """`check` and everything above it up to the fixed nodes, in DAG order."""
    seen: set[NodeId] = set()
    stack = list(check)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n not in fixed:
            stack.extend(resolved.deps(n))
    return resolved.graph.ordered(seen)


class _Pass:
    """One binding pass; its state lives for one `bind_nodes` call, in one thread."""

    def __init__(self, resolved: Resolved, own: Mapping[NodeId, OwnParts],
                 traces: Mapping[NodeId, Trace], fixed: Collection[NodeId],
                 cache: SchemaCache | None, redact: Mapping[str, str]) -> None:
        self.resolved = resolved
        self.own = own
        self.traces = traces
        self.fixed = fixed
        self.cache = cache
        self.redact = redact
        self.schemas: dict[NodeId, Schema] = {}
        self.checked: set[NodeId] = set()  # SQL nodes whose statement binds
        self.unknown: dict[NodeId, Unknown] = {}
        self.new: dict[Digest, Schema] = {}
        self.fresh = 0
        self._binder: Binder | None = None

    def visit(self, n: NodeId) -> None:
        if n in self.schemas or n in self.unknown:
            return
        node = self.resolved.project.nodes[n]
        if n in self.fixed:
            self._settle(n, self._recorded_schema(n, self.traces.get(n)))
        elif node.kind is NodeKind.SQL:
            self._settle(n, self._bind(n, node))
        else:  # python, or a read of files that other nodes export
            self._settle(n, self._as_built(n, node))

    def _settle(self, n: NodeId, found: Schema | Unknown) -> None:
        if isinstance(found, Unknown):
            self.unknown[n] = found
        else:
            self.schemas[n] = found

    def _blocked(self, n: NodeId) -> Unknown | None:
        return next((self.unknown[d] for d in self.resolved.deps(n) if d in self.unknown), None)

    # -- sql ----------------------------------------------------------------------------
    def _bind(self, n: NodeId, node: Node) -> Schema | Unknown:
        blocked = self._blocked(n)
        if blocked is not None:
            return blocked
        spec = node.producer
        assert isinstance(spec, SqlSpec)
        inputs = {d: self.schemas[d] for d in self.resolved.deps(n)}
        key = digest_parts(SCHEME, engine_version(), "sql", spec.rendered, canon(inputs))
        cacheable = not node.env_used  # (its schema could hold an environment value)
        hit = self.cache.get_schema(key) if self.cache is not None and cacheable else None
        if hit is None:
            from odibi.engines.tools import BindFailure, BindProblem

            found = self.binder().bind(spec.rendered, inputs)
            if isinstance(found, BindFailure):
                if found.problem is BindProblem.INPUTS:
                    return Unknown(n, f"cannot be bound on its inputs' recorded schemas "
                                      f"({found.message})")
                raise located(n, spec, found, inputs, self.resolved, self.redact)
            self.fresh += 1
            if cacheable:
                self.new[key] = found
            hit = found
        self.checked.add(n)
        return hit

    def binder(self) -> Binder:
        if self._binder is None:
            from odibi.engines import open_binder

            self._binder = open_binder()
        return self._binder

    # -- reads --------------------------------------------------------------------------
    def read_all(self, names: list[NodeId]) -> None:
        """Every read node of its own files, at once: from the cache, or DuckDB's readers
        in one sandboxed connection that reaches exactly the files still to sniff."""
        project = self.resolved.project
        todo: list[tuple[NodeId, Digest, tuple[Path, ...], ReadSpec]] = []
        for n in names:
            node = project.nodes[n]
            spec = node.producer
            if not isinstance(spec, ReadSpec) or self._reads_exports(n):
                continue
            parts = self.own[n]
            files = tuple(project.connections[key.partition(":")[0]].root
                          / key.partition(":")[2] for key in parts.sources)
            key = digest_parts(SCHEME, engine_version(), "read", spec.format.value,
                               canon(dict(spec.rendered_options)),
                               canon(sorted((k, d) for k, (d, _) in parts.sources.items())))
            hit = self.cache.get_schema(key) if self.cache is not None else None
            if hit is not None:
                self.schemas[n] = hit
            elif not files:
                self.unknown[n] = Unknown(n, "has no file to read")
            else:
                todo.append((n, key, files, spec))
        if not todo:
            return
        from odibi.engines import read_schemas

        for (n, key, _, _), found in zip(todo, read_schemas([(f, s) for _, _, f, s in todo])):
            if isinstance(found, str):
                self.unknown[n] = Unknown(n, f"cannot be read: {_redacted(found, self.redact)}")
            else:
                self.schemas[n] = found
                self.new[key] = found
                self.fresh += 1

    def _reads_exports(self, n: NodeId) -> bool:
        nodes = self.resolved.project.nodes
        return any(nodes[d].writes for d in self.resolved.deps(n))

    # -- python nodes and reads of exports: as last built -----------------------------
    def _as_built(self, n: NodeId, node: Node) -> Schema | Unknown:
        """The schema the last build recorded, while it still holds: the node's own parts
        are those it was built with, and each input gives the schema it gave then."""
        blocked = self._blocked(n)
        if blocked is not None:
            return blocked
        trace = self.traces.get(n)
        if trace is None:
            return Unknown(n, "has never been built")
        if chain(self.own[n].digest, trace.parts.upstream) != trace.fingerprint:
            return Unknown(n, "changed since its last build")
        for d in self.resolved.deps(n):
            before = self.traces.get(d)
            if before is None or trace.inputs.get(d) != before.output or \
                    parse_schema(before.schema) != self.schemas.get(d):
                return Unknown(n, "has inputs that changed since its last build")
        return self._recorded_schema(n, trace)

    def _recorded_schema(self, n: NodeId, trace: Trace | None) -> Schema | Unknown:
        if trace is None:
            return Unknown(n, "has never been built")
        schema = parse_schema(trace.schema)
        if schema is None:
            return Unknown(n, "has a recorded schema odibi cannot read (rebuild it)")
        return schema

    def close(self) -> None:
        if self._binder is not None:
            self._binder.close()
        if self.cache is not None and self.new:
            self.cache.put_schemas(self.new)


# -- errors ----------------------------------------------------------------------------
def located(n: NodeId, spec: SqlSpec, failure: BindFailure, inputs: Mapping[NodeId, Schema],
            resolved: Resolved, redact: Mapping[str, str]) -> SqlError:
    """A statement that does not bind, as an error at its place in the node's text."""
    from odibi.engines.tools import BindProblem

    span = sql_span(spec, failure.offset, failure.width)
    message = _redacted(failure.message, redact)
    hint: str | None = None
    match failure.problem:
        case BindProblem.COLUMN:
            name = failure.name or "?"
            text = f"node '{n}': SQL: column '{name}' not found"
            pool = list(dict.fromkeys([*failure.candidates,
                                       *(c for s in inputs.values() for c, _ in s)]))
            hint = _column_hint(name, pool, inputs)
        case BindProblem.TABLE:
            text = f"node '{n}': SQL: {message}"
            hint = ("a node reads other nodes by name in its FROM clause, so that odibi sees "
                    "the dependency (query_table() and other schemas are not followed)")
        case BindProblem.EXTENSION:
            text = f"node '{n}': SQL: {message}"
            hint = ("odibi runs SQL in DuckDB's sandbox, where no extension is installed or "
                    "loaded (json, parquet and icu are built in)")
        case BindProblem.MISSING:
            text = f"node '{n}': SQL: {message}"
            hint = f"did you mean '{failure.suggestion}'?" if failure.suggestion else None
        case BindProblem.FILE | BindProblem.OUTSIDE:
            text = _outside(n, failure.problem, failure.name, message)
            hint = ("add a read node for that file, so that odibi fingerprints it (SQL runs in "
                    "DuckDB's sandbox, which reaches no file, database or extension)")
        case BindProblem.NESTED:
            text = f"node '{n}': SQL hands query() a statement that is not one SELECT: {message}"
            hint = "a node is one SELECT over its inputs; files come in through read nodes"
        case _:
            text = f"node '{n}': SQL: {message}"
    return SqlError(text, span=span, node=n, hint=hint)


def _outside(n: NodeId, problem: BindProblem, name: str | None, message: str) -> str:
    """What a statement the sandbox stopped reached for (a file, a database)."""
    from odibi.engines.tools import BindProblem

    if problem is BindProblem.FILE:
        return f"node '{n}': SQL reads the file {name}, which is not one of its inputs"
    if name:
        return f"node '{n}': SQL reaches {name}, outside its inputs"
    return f"node '{n}': SQL reaches outside its inputs: {message}"


def _column_hint(name: str, pool: list[str], inputs: Mapping[NodeId, Schema]) -> str | None:
    """A did-you-mean; unless it is a near certainty (`amout` -> `amount`), followed by
    the inputs' columns, so a renamed column is found as fast as a typo."""
    import difflib

    close = did_you_mean(name, pool)
    if close is not None and max(difflib.SequenceMatcher(None, name, c).ratio()
                                 for c in pool) >= 0.8:
        return close
    listed = []
    for node, schema in inputs.items():
        cols = [c for c, _ in schema]
        listed.append(f"{node} has " + ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else ""))
    if not listed:
        return close
    return f"{close} {'; '.join(listed)}" if close else "; ".join(listed)


def _redacted(text: str, redact: Mapping[str, str]) -> str:
    for value, placeholder in redact.items():
        text = text.replace(value, placeholder)
    return text


# -- schemas as text -------------------------------------------------------------------
_TYPE = re.compile(r'(?:"NULL"|[A-Z][A-Z0-9_]*(?: WITH TIME ZONE)?)(?:\(.*\))?(?:\[\d*\])*\Z',
                   re.S)


def parse_schema(columns: Iterable[str]) -> Schema | None:
    """A trace's schema ("name TYPE" strings, names unquoted) as (name, type) pairs, or
    None if one cannot be read. A name may hold spaces, so each string is split at the
    first space after which a whole DuckDB type follows."""
    out = []
    for text in columns:
        for i, c in enumerate(text):
            if c == " " and _is_type(text[i + 1:]):
                out.append((text[:i], text[i + 1:]))
                break
        else:
            return None
    return tuple(out) or None


def _is_type(text: str) -> bool:
    if not _TYPE.match(text):
        return False
    depth, quote = 0, ""
    for c in text:
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not quote


# -- the commands' passes --------------------------------------------------------------
def bind_project(resolved: Resolved, state: State, redact: Mapping[str, str] | None = None
                 ) -> Binding:
    """`odibi validate`: every SQL node, from nothing but the project and what earlier
    builds recorded (Python nodes' schemas)."""
    project = resolved.project
    check = [n for n, node in project.nodes.items() if node.kind is NodeKind.SQL]
    if not check:
        return Binding()
    files = FileDigests(state.caches.file_stamps())
    exported = exported_paths(resolved)
    own = {n: own_parts(resolved, n, files, exported) for n, node in project.nodes.items()
           if node.kind is not NodeKind.SQL}
    opaque = any(node.kind is NodeKind.PYTHON or (node.kind is NodeKind.READ and any(
        project.nodes[d].writes for d in resolved.deps(n))) for n, node in project.nodes.items())
    traces = state.records.traces() if opaque else {}
    cache = state.caches if state.available else None
    return bind_nodes(resolved, check, own=own, traces=traces, cache=cache, redact=redact)


def bind_plan(resolved: Resolved, plan: Plan, *, own: Mapping[NodeId, OwnParts],
              traces: Mapping[NodeId, Trace], stored: Mapping[tuple[NodeId, Digest], Trace],
              cache: SchemaCache | None, redact: Mapping[str, str] | None = None) -> Binding:
    """A build: the SQL nodes it will run (status rebuild). Every node that does not run
    keeps the output its trace records (a restore: the stored version's); nodes that
    run above them get their schemas in this same pass."""
    runs = {s.node for s in plan.steps if s.status is Status.REBUILD}
    nodes = resolved.project.nodes
    check = [n for n in runs if n in nodes and nodes[n].kind is NodeKind.SQL]
    if not check:
        return Binding()
    kept = dict(traces)
    for s in plan.steps:
        if s.status is Status.RESTORE:
            kept[s.node] = stored[(s.node, s.fingerprint)]
    fixed = frozenset(n for n in nodes if n not in runs)
    return bind_nodes(resolved, check, own=own, traces=kept, fixed=fixed, cache=cache,
                      redact=redact)
