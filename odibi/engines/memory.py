"""A fake engine: the `Engine` interface over Python rows in memory, recording every call.

It is the second implementation that keeps `odibi.engines.base` honest, and what the
scheduler's unit tests run on (tests/unit/test_scheduler.py, as ninja's build_test.cc runs
on its FakeCommandRunner): standard library only, so those tests import neither duckdb nor
pandas, and run in milliseconds.

The warehouse is `stored` {OutputRef: Table} and `current` {NodeId: OutputRef}. A session's
changes are staged and applied together on `commit` (`Capabilities.transactions`), or
dropped on `rollback`; outside a transaction a change applies at once (DuckDB's
autocommit). Earlier versions stay stored until `drop`, so `restore` never recomputes.
With `transactions=False` (a capability a test may choose) begin/commit/rollback do
nothing and every change applies at once, as on an engine without transactions.

What a node's SQL computes is not parsed: the test scripts it per node (`Behaviour`). An
unscripted node's SQL produces one row derived from its text, so an edited SQL changes the
output digest and an unchanged one does not (early cutoff). A behaviour can fail, hang
until interrupted (`interrupt` raises EngineInterrupted in the running call, as DuckDB
does; an interrupt with no call running is lost, as in DuckDB), or wait on a gate, which is
how a test holds nodes running at once.

Every call is recorded, in order and thread-safely, in `calls`: `("run_sql", node)`,
`("make_current", node, version)`, `("export", node, path)`, `("commit",)`, ... (each
method's name, then its node, version or path). `max_running` is the most producing calls
(read, run_sql, create_from_frame) that ever ran at once: "slots never exceeded".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.config.model import ReadSpec, WriteSpec
from odibi.engines.base import (Capabilities, Catalog, EngineError, EngineInterrupted,
                                Location, Relation, TableInfo, WarehouseBusy,
                                WarehouseDamaged)
from odibi.engines.memory_rows import Table, read_files, write_file
from odibi.engines.memory_rules import Data, measure
from odibi.hashing import digest_parts, digest_text
from odibi.ids import NodeId, OutputRef

if TYPE_CHECKING:
    from odibi.expr.measures import Query

__all__ = ["MEMORY", "Behaviour", "MemoryEngine", "MemorySession", "Table"]

MEMORY = Capabilities(transactions=True, views=False, interrupt=True,
                      dialect="duckdb",  # it runs no SQL: the project's is DuckDB's
                      frame="list[dict]")
LIMIT = 10.0  # seconds a hang or a gate waits at most: a test that forgets one fails, not hangs
POLL = 0.002  # seconds between looks at a gate (an interrupt wakes a waiting call at once)

Call = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a node's producing calls (read, run_sql, create_from_frame) do, each time: set
    `entered`; wait for `gate` to open, or `hang` (both until interrupted); then raise
    EngineError(`error`), or go on: run_sql produces `rows` (None: the default row of its
    SQL text), read reads its files, create_from_frame stores its frame. `export_error`
    fails the node's exports instead."""

    rows: Sequence[Mapping[str, Any]] | None = None
    columns: tuple[str, ...] = ()  # of `rows` that are empty (or to order them)
    error: str | None = None
    hang: bool = False
    gate: threading.Event | None = None
    entered: threading.Event | None = None
    export_error: str | None = None


class MemorySession:
    """One worker's connection: changes staged until `commit`. One thread uses it at a
    time; another may call `interrupt`."""

    def __init__(self, engine: MemoryEngine) -> None:
        self._engine = engine
        self._stored: dict[OutputRef, Table] = {}  # staged, in this transaction
        self._current: dict[NodeId, OutputRef] = {}
        self._in_txn = False
        self._interrupted = threading.Event()
        self._running: NodeId | None = None  # the node of the producing call under way

    # -- transactions --------------------------------------------------------------------
    def begin(self) -> None:
        self._engine.record("begin")
        if not self._engine.capabilities.transactions:
            return
        if self._in_txn:
            raise EngineError("cannot start a transaction within a transaction")
        self._in_txn = True

    def commit(self) -> None:
        self._engine.record("commit")
        if not self._engine.capabilities.transactions:
            return
        if not self._in_txn:
            raise EngineError("cannot commit: no transaction is active")
        self._engine.apply(self._stored, self._current)
        self._end()

    def rollback(self) -> None:
        if self._in_txn:  # (run_job rolls back after every attempt, committed or not)
            self._engine.record("rollback")
            self._end()

    def _end(self) -> None:
        self._stored, self._current, self._in_txn = {}, {}, False

    def _stage(self, stored: Mapping[OutputRef, Table], current: Mapping[NodeId, OutputRef]
               ) -> None:
        if self._in_txn:
            self._stored.update(stored)
            self._current.update(current)
        else:
            self._engine.apply(stored, current)

    # -- producing outputs ---------------------------------------------------------------
    def read(self, out: OutputRef, sources: Sequence[Location], spec: ReadSpec) -> int:
        with self._producing("read", out):
            if not sources:
                raise EngineError(f"no file matches {spec.rendered_path}")
            return self._put(out, read_files([s.path for s in sources], spec))

    def run_sql(self, out: OutputRef, sql: str, inputs: Sequence[NodeId] = ()) -> int:
        with self._producing("run_sql", out) as behaviour:
            if behaviour.rows is None:
                return self._put(out, Table.of([{"digest": digest_text(sql)}]))
            return self._put(out, Table.of(behaviour.rows, behaviour.columns))

    def create_from_frame(self, out: OutputRef, frame: Any) -> int:
        with self._producing("create_from_frame", out):
            if not isinstance(frame, list) or not all(isinstance(r, Mapping) for r in frame):
                raise EngineError(f"must return a list of dicts, returned {type(frame).__name__}")
            return self._put(out, Table.of(frame))

    def _put(self, out: OutputRef, table: Table) -> int:
        self._stage({out: table}, {})
        return len(table.rows)

    @contextmanager
    def _producing(self, method: str, out: OutputRef) -> Iterator[Behaviour]:
        """A producing call: recorded, counted as running, scripted."""
        engine = self._engine
        engine.record(method, out.node)
        behaviour = engine.script.get(out.node, Behaviour())
        self._interrupted.clear()  # an interrupt reaches only a call under way (DuckDB)
        self._running = out.node
        engine.started(out.node)
        try:
            if behaviour.entered is not None:
                behaviour.entered.set()
            self._wait(behaviour)
            if behaviour.error is not None:
                raise EngineError(behaviour.error)
            yield behaviour
        finally:
            self._running = None
            engine.stopped(out.node)

    def _wait(self, behaviour: Behaviour) -> None:
        deadline = time.monotonic() + LIMIT
        while behaviour.hang or (behaviour.gate is not None and not behaviour.gate.is_set()):
            if self._interrupted.wait(POLL):
                raise EngineInterrupted("interrupted")
            if time.monotonic() > deadline:
                raise EngineError(f"{'hung' if behaviour.hang else 'gated'} for {LIMIT:g}s: "
                                  "nothing interrupted it (a test forgot to)")
        if self._interrupted.is_set():
            raise EngineInterrupted("interrupted")

    # -- reading -------------------------------------------------------------------------
    def table(self, relation: Relation) -> Table:
        """A stored version, or a node's current one, as this session sees it (its own
        staged changes first)."""
        if isinstance(relation, OutputRef):
            ref: OutputRef | None = relation
        else:
            ref = self._current.get(relation) or self._engine.current_of(relation)
        found = self._stored.get(ref) if ref is not None else None
        found = found or (self._engine.stored_table(ref) if ref is not None else None)
        if found is None:
            raise EngineError(f"no output {_name(relation)} in the warehouse")
        return found

    def frames(self, inputs: Mapping[str, Relation], pandas: Iterable[str] = ()
               ) -> dict[str, Any]:
        self._engine.record("frames", *(_name(r) for r in inputs.values()))
        return {param: self.table(r).dicts() for param, r in inputs.items()}

    def describe(self, out: OutputRef, rows: int) -> TableInfo:
        self._engine.record("describe", out.node)
        table = self.table(out)
        schema = tuple(f"{c} {t}" for c, t in table.schema)
        return TableInfo(rows, schema, digest_parts("table", json.dumps(schema), str(rows),
                                                    str(table.content_sum())))

    def columns(self, relation: Relation) -> dict[str, str]:
        self._engine.record("columns", _name(relation))
        return dict(self.table(relation).schema)

    def is_text(self, column_type: str) -> bool:
        return column_type == "VARCHAR"  # (the fake names types as DuckDB does)

    def measure(self, query: Query, relations: Mapping[str, Relation]) -> dict[str, Any]:
        self._engine.record("measure", *(_name(r) for r in relations.values()))
        t = Data(self.table(relations[query.dataset]))
        p = Data(self.table(relations[query.parent])) if query.parent is not None else None
        return {m.key: measure(m.what, t, p) for m in query.measures}

    # -- the rest of a node's work -------------------------------------------------------
    def export(self, out: OutputRef, write: WriteSpec, dest: Location) -> None:
        self._engine.record("export", out.node, dest.path)
        error = self._engine.script.get(out.node, Behaviour()).export_error
        if error is not None:
            raise EngineError(error)
        write_file(self.table(out), write, dest.path)

    def make_current(self, node: NodeId, out: OutputRef) -> None:
        self._engine.record("make_current", node, out.version)
        self.table(out)  # a version that is not stored is an error, as a view of nothing
        self._stage({}, {node: out})

    def interrupt(self) -> None:
        self._engine.record("interrupt", self._running)
        self._interrupted.set()

    def close(self) -> None:
        self.rollback()


class MemoryEngine:
    """A warehouse in memory, kept across builds for as long as the object lives (as a
    warehouse file is): build, edit `script`, build again. `busy` / `damaged` make
    `open` fail as a warehouse held by another process or unreadable would."""

    def __init__(self, script: Mapping[NodeId | str, Behaviour] | None = None, *,
                 capabilities: Capabilities = MEMORY, lazy: bool = True) -> None:
        self.capabilities = capabilities
        self.where = Path("<memory>")
        self.script: dict[NodeId, Behaviour] = {NodeId(n): b for n, b in (script or {}).items()}
        self.stored: dict[OutputRef, Table] = {}
        self.current: dict[NodeId, OutputRef] = {}
        self.calls: list[Call] = []
        self.running: dict[NodeId, int] = {}  # node -> producing calls under way
        self.max_running = 0
        self.busy = False
        self.damaged = False
        self._lock = threading.Condition()
        self._open = False
        self._created = False
        self._generation = 0  # bumped by every change: what `stamp` shows
        self._set_aside = 0
        if not lazy:
            self.open()

    # -- what tests read -----------------------------------------------------------------
    def record(self, method: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((method, *args))

    def called(self, method: str) -> list[Call]:
        """The calls of `method`, in order, without the method's name."""
        with self._lock:
            return [c[1:] for c in self.calls if c[0] == method]

    def rows(self, node: NodeId | str) -> list[dict[str, Any]]:
        """A node's current output, as a Python node would receive it."""
        ref = self.current_of(NodeId(node))
        table = self.stored_table(ref) if ref is not None else None
        if table is None:
            raise KeyError(f"{node} has no current output")
        return table.dicts()

    def wait_running(self, *nodes: NodeId | str, timeout: float = LIMIT) -> bool:
        """Wait until each of `nodes` is in a producing call, all at once."""
        with self._lock:
            return self._lock.wait_for(lambda: all(n in self.running for n in nodes), timeout)

    def started(self, node: NodeId) -> None:
        with self._lock:
            self.running[node] = self.running.get(node, 0) + 1
            self.max_running = max(self.max_running, sum(self.running.values()))
            self._lock.notify_all()

    def stopped(self, node: NodeId) -> None:
        with self._lock:
            self.running[node] -= 1
            if not self.running[node]:
                del self.running[node]

    # -- the warehouse, for sessions -----------------------------------------------------
    def current_of(self, node: NodeId) -> OutputRef | None:
        with self._lock:
            return self.current.get(node)

    def stored_table(self, ref: OutputRef) -> Table | None:
        with self._lock:
            return self.stored.get(ref)

    def apply(self, stored: Mapping[OutputRef, Table], current: Mapping[NodeId, OutputRef]
              ) -> None:
        with self._lock:
            self.stored.update(stored)
            self.current.update(current)
            if stored or current:
                self._generation += 1

    # -- the Engine protocol -------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self._created

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        if self._open:
            return
        self.record("open")
        if self.busy:
            raise WarehouseBusy("the memory warehouse is held by another process")
        if self.damaged:
            raise WarehouseDamaged("the memory warehouse is damaged", "a memory warehouse")
        self._open = self._created = True

    def stamp(self) -> str | None:
        self.record("stamp")
        return f"memory:{self._generation}" if self._created else None

    def catalog(self) -> Catalog:
        self.open()
        self.record("catalog")
        with self._lock:
            return Catalog(frozenset(self.stored), dict(self.current))

    def set_aside(self) -> str:
        self.record("set_aside")
        with self._lock:
            self.stored.clear()
            self.current.clear()
            self._set_aside += 1
            self._generation += 1
        self.damaged = False
        return f"memory-warehouse.damaged-{self._set_aside}"

    def session(self) -> MemorySession:
        self.open()
        self.record("session")
        return MemorySession(self)

    def prepare_python(self) -> None:
        self.record("prepare_python")

    def restore(self, current: Mapping[NodeId, OutputRef]) -> None:
        self.open()
        self.record("restore", *sorted((n, ref.version) for n, ref in current.items()))
        with self._lock:  # (re-entrant: `apply` takes it too)
            self.apply({}, {n: ref for n, ref in current.items() if ref in self.stored})

    def drop(self, outputs: Iterable[OutputRef], nodes: Iterable[NodeId]) -> None:
        self.open()
        outputs, nodes = list(outputs), list(nodes)
        self.record("drop", *sorted(outputs), *sorted(nodes))
        with self._lock:
            for ref in outputs:
                self.stored.pop(ref, None)
            for n in nodes:
                self.current.pop(n, None)
            self._generation += 1

    def used_bytes(self) -> int:
        self.record("used_bytes")
        with self._lock:
            return sum(t.size() for t in self.stored.values())

    def name_of(self, out: OutputRef) -> str:
        return f"{out.node}@{out.version}"

    def preview(self, relation: Relation, limit: int
                ) -> tuple[list[str], list[tuple[Any, ...]], int]:
        self.record("preview", _name(relation))
        table = MemorySession(self).table(relation)
        return [c for c, _ in table.schema], list(table.rows[:limit]), len(table.rows)

    def close(self) -> None:
        if self._open:
            self.record("close")
        self._open = False


def _name(relation: Relation) -> str:
    """How a call record names what it reads: `node` or `node@version`."""
    if isinstance(relation, OutputRef):
        return f"{relation.node}@{relation.version}"
    return str(relation)
