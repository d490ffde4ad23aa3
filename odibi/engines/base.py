"""The Engine interface (DESIGN.md §11): everything that touches data goes through it.

An `Engine` owns a warehouse; each worker thread gets its own `Session` (for DuckDB, a
cursor: separate connections to one database, so queries really overlap). A session
builds one node's output at a time, as one transaction:

    begin(node) -> produce (read | run_sql | run_python) -> describe -> export* -> commit

and nothing a failed step made is ever visible. Outputs are content-addressed: a node's
output lives in a store table named after its fingerprint, and the node's own name is a
view of the current one, so an earlier version can be restored without recomputing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from odibi.config.model import ReadSpec, WriteSpec
from odibi.ids import Digest, NodeId


Schema = tuple[tuple[str, str], ...]  # (column, type as the engine writes it), in order


@dataclass(frozen=True, slots=True)
class TableInfo:
    rows: int
    schema: tuple[str, ...]  # "column TYPE", in column order
    digest: Digest  # order-insensitive content digest (schema included)


class Session(Protocol):
    def begin(self) -> None: ...
    # each producer creates `table` and returns how many rows it holds
    def read(self, table: str, files: Sequence[Path], spec: ReadSpec) -> int: ...
    def run_sql(self, table: str, sql: str) -> int: ...
    def frames(self, inputs: Mapping[str, NodeId]) -> dict[str, Any]: ...
    def create_from_frame(self, table: str, frame: Any) -> int: ...
    def describe(self, table: str, rows: int) -> TableInfo: ...
    def columns(self, table: str) -> dict[str, str]: ...
    def measure(self, table: str, measures: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Aggregates over `table` (read as `t`), in one query: {key: value}."""
        ...
    def measure_queries(self, relations: Mapping[str, str], queries: Sequence[tuple[str, str]]
                        ) -> dict[str, Any]:
        """Scalar queries, each reading the relations named in `relations` (name -> table),
        in one statement: {key: value}, as plain Python values (lists, dicts, scalars)."""
        ...
    def publish(self, name: NodeId, table: str) -> None: ...
    def export(self, name: NodeId, write: WriteSpec, dest: Path) -> None: ...
    def drop(self, table: str) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...


class Engine(Protocol):
    @property
    def is_open(self) -> bool:
        """Whether the warehouse is connected (a lazy engine connects on first use)."""
        ...
    def open(self) -> None:
        """Connect now, if not yet (raises WarehouseUnavailable)."""
        ...
    def session(self) -> Session: ...
    def prepare_python(self) -> None: ...
    def outputs(self) -> tuple[frozenset[str], Mapping[NodeId, str]]:
        """(store tables, {node view: store table it points at})."""
        ...
    def store_table(self, name: NodeId, fingerprint: Digest) -> str: ...
    def view(self, name: NodeId) -> str:
        """How SQL names a node's current output (its view)."""
        ...
    def drop_tables(self, tables: Iterable[str], views: Iterable[NodeId]) -> None:
        """Drop store tables and node views, in one transaction."""
        ...
    def repoint(self, views: Mapping[NodeId, str]) -> None:
        """Point node views at these store tables, in one transaction."""
        ...
    def used_bytes(self) -> int: ...
    def preview(self, table: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]], int]: ...
    def close(self) -> None: ...


class EngineError(Exception):
    """A node's data work failed (bad SQL at run time, unreadable file, a Python error)."""


class WarehouseUnavailable(EngineError):
    """The warehouse could not be opened (another program holds it, or it is damaged)."""


class EngineInterrupted(EngineError):
    """The running query was interrupted (Ctrl-C, --fail-fast, a timeout)."""
