"""The Engine interface (DESIGN.md §11): everything that touches data goes through it.

The core speaks only engine-neutral terms here: a stored output is an `OutputRef` (a node
and the fingerprint it was built with), a node's *current* output is named by the node
(`Relation`), files are `Location`s, rules are measured from the neutral `Query` of
`odibi.expr.measures`; what differs between engines is declared in `Capabilities`, which
the core asks, never an engine's name. How an engine keeps outputs (DuckDB: a store table
per version and a view per node), names them in SQL, or hands them to Python is its own
business; `odibi.engines.open_engine` is the one place that picks an engine.

An `Engine` owns a warehouse; each worker thread gets its own `Session`. A session builds
one node's output at a time:

    begin -> produce (read | run_sql | create_from_frame) into a new OutputRef
          -> rules (columns, measure) -> describe -> export* -> make_current -> commit

With `Capabilities.transactions` all of that commits together, and nothing a failed step
made is ever visible. Without, `begin`/`commit`/`rollback` do nothing and the order above
is what keeps a failure safe: the new version is made current last, so a failure leaves
the node's current output as it was (the half-made version is an orphan `gc` drops).
Outputs are content-addressed: earlier versions stay stored, so `restore` points a node
back at one without recomputing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from odibi.config.model import ReadSpec, WriteSpec
from odibi.ids import Digest, NodeId, OutputRef

if TYPE_CHECKING:
    from odibi.expr.measures import Query

__all__ = ["Access", "Capabilities", "Catalog", "Engine", "EngineError", "EngineInterrupted",
           "EngineOptions", "Location", "OutputRef", "Relation", "Schema", "Session", "TableInfo",
           "WarehouseBusy", "WarehouseDamaged", "WarehouseUnavailable"]

Schema = tuple[tuple[str, str], ...]  # (column, type as the engine writes it), in order

Relation = OutputRef | NodeId
"""What a query reads: a stored version (`OutputRef`), or a node's current output (its
`NodeId`: what SQL reads when it names the node)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where data is read from or written to, resolved by the engine (a local file's
    absolute path, as a URI-less string, for the engines of today)."""

    uri: str

    @staticmethod
    def file(path: Path) -> Location:
        return Location(str(path))

    @property
    def path(self) -> Path:
        """The local file (every engine of today reads and writes local files)."""
        return Path(self.uri)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What differs between engines, declared (as SQLMesh's engine adapters do)."""

    transactions: bool  # a node's output, exports and current pointer commit together
    views: bool  # current outputs are views in the warehouse: a restore can be deferred
    #              until the warehouse is next opened (`Engine.restore` then catches up)
    interrupt: bool  # a running query can be interrupted in place (timeouts, Ctrl-C)
    dialect: str  # the SQL dialect `run_sql` speaks (sqlglot's name for it)
    frame: str  # the DataFrame type Python nodes receive and return


@dataclass(frozen=True, slots=True)
class TableInfo:
    rows: int
    schema: tuple[str, ...]  # "column TYPE", in column order
    digest: Digest  # order-insensitive content digest (schema included)


@dataclass(frozen=True, slots=True)
class Catalog:
    """What a warehouse holds: every stored version, and each node's current one."""

    stored: frozenset[OutputRef]
    current: Mapping[NodeId, OutputRef]


@dataclass(frozen=True, slots=True)
class Access:
    """The files an engine's SQL may touch (its sandbox): `reads` as they are, `writes`
    (export destinations), and everything under `directories`."""

    reads: tuple[Path, ...] = ()
    writes: tuple[Path, ...] = ()
    directories: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How a command opens the engine (`odibi.engines.open_engine`)."""

    python_path: tuple[Path, ...] = ()
    read_only: bool = False
    lazy: bool = False  # connect (and import the engine's library) on first use only
    redact: Mapping[str, str] | None = None  # {secret value: placeholder} in every error
    source_bytes: int = 0  # what the project reads: sizes a warehouse created now
    access: Access = Access()
    threads: int | None = None


class Session(Protocol):
    """One worker's connection. Not thread-safe: one thread uses it at a time, another
    may call `interrupt`."""

    def begin(self) -> None: ...
    # each producer stores a new version `out` and returns how many rows it holds
    def read(self, out: OutputRef, sources: Sequence[Location], spec: ReadSpec) -> int: ...
    def run_sql(self, out: OutputRef, sql: str, inputs: Sequence[NodeId] = ()) -> int:
        """`inputs`: the nodes `sql` reads by name."""
        ...
    def frames(self, inputs: Mapping[str, Relation], pandas: Iterable[str] = ()
               ) -> dict[str, Any]:
        """Each input as the engine's DataFrame (`Capabilities.frame`), by parameter; those
        of `pandas` as pandas DataFrames."""
        ...
    def create_from_frame(self, out: OutputRef, frame: Any) -> int:
        """Store what a Python node returned (an EngineError names a wrong type)."""
        ...
    def describe(self, out: OutputRef, rows: int) -> TableInfo: ...
    def columns(self, relation: Relation) -> dict[str, str]:
        """column -> type (as the engine writes it), in column order."""
        ...
    def is_text(self, column_type: str) -> bool:
        """Whether a column of this type (as `columns` writes it) holds text: a key of text
        compared with one of numbers is refused before anything runs."""
        ...
    def measure(self, query: Query, relations: Mapping[str, Relation]) -> dict[str, Any]:
        """Take the measures of `query` (`odibi.expr.measures`), reading each dataset it
        names from `relations[dataset]`: {measure key: plain Python value}."""
        ...
    def export(self, out: OutputRef, write: WriteSpec, dest: Location) -> None:
        """Write a stored version to `dest`, whole or not at all (a temporary file renamed
        into place)."""
        ...
    def make_current(self, node: NodeId, out: OutputRef) -> None:
        """From now on (once committed) `node` names the version `out`."""
        ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...


class Engine(Protocol):
    capabilities: Capabilities
    where: Path  # the warehouse, for messages

    @property
    def exists(self) -> bool:
        """Whether the warehouse exists at all (checked without connecting)."""
        ...
    @property
    def is_open(self) -> bool:
        """Whether the warehouse is connected (a lazy engine connects on first use)."""
        ...
    def open(self) -> None:
        """Connect now, if not yet (raises WarehouseUnavailable)."""
        ...
    def stamp(self) -> str | None:
        """The warehouse as seen from outside (its files' stamps), without connecting or
        importing anything: if it is what odibi recorded when it last closed it, nothing
        changed it since. None: there is no warehouse."""
        ...
    def catalog(self) -> Catalog:
        """What the warehouse holds (raises WarehouseBusy, WarehouseDamaged)."""
        ...
    def set_aside(self) -> str:
        """Move a damaged warehouse out of the way (the next build starts a new one);
        returns what it is now called."""
        ...
    def session(self) -> Session: ...
    def prepare_python(self) -> None:
        """Load what Python nodes need (the DataFrame library) once, up front."""
        ...
    def restore(self, current: Mapping[NodeId, OutputRef]) -> None:
        """Make these stored versions current, together (versions the warehouse no longer
        holds are skipped: the planner reports those outputs missing)."""
        ...
    def drop(self, outputs: Iterable[OutputRef], nodes: Iterable[NodeId]) -> None:
        """Forget stored versions, and nodes' current outputs, together."""
        ...
    def used_bytes(self) -> int: ...
    def name_of(self, out: OutputRef) -> str:
        """Where a user finds a stored version in the warehouse (messages, --json)."""
        ...
    def preview(self, relation: Relation, limit: int
                ) -> tuple[list[str], list[tuple[Any, ...]], int]:
        """(columns, the first `limit` rows, the row count)."""
        ...
    def close(self) -> None: ...


class EngineError(Exception):
    """A node's data work failed (bad SQL at run time, unreadable file, a Python error)."""


class WarehouseUnavailable(EngineError):
    """The warehouse could not be opened."""


class WarehouseBusy(WarehouseUnavailable):
    """Another process holds the warehouse."""


class WarehouseDamaged(WarehouseUnavailable):
    """The warehouse is not one this engine can read (`Engine.set_aside` moves it).
    `kind`: what it should have been, for messages ("a DuckDB database")."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class EngineInterrupted(EngineError):
    """The running query was interrupted (Ctrl-C, --fail-fast, a timeout)."""
