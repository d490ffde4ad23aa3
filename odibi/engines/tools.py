"""What odibi asks of an engine besides building (`odibi.engines.base` is the build's
interface), in the same engine-neutral terms:

- binding SQL to its inputs' columns without data (`validate`, a build's pre-flight):
  a `Binder`, and read nodes' schemas (`odibi.engines.open_binder`, `read_schemas`);
- a scratch engine that runs one node on fixtures (`odibi test`, the pytest plugin,
  `test --generate`): `Scratch` (`odibi.engines.open_scratch`), in memory, nothing
  kept;
- samples of built outputs that join (`odibi test --generate`): the sampling plan
  (`SampleStep`s, planned by `odibi.testing.joins`) that `odibi.engines.sample` follows.

None of it is needed by a build's jobs; each engine implements it under `odibi/engines/`
(DuckDB: duckdb_bind.py, duckdb_fixtures.py; Spark: spark_fixtures.py; both: sample_sql.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from odibi.engines.base import Capabilities, EngineError, Relation, Schema, Session
from odibi.ids import NodeId

__all__ = ["BindFailure", "BindProblem", "Binder", "Fixture", "FixtureError", "FixtureProblem",
           "JoinKey", "MissingColumn", "Rows", "SampleStep", "Scratch", "ScratchSession"]


# -- binding ---------------------------------------------------------------------------
class BindProblem(Enum):
    COLUMN = "column"  # a column no input (or CTE, or subquery) has
    MISSING = "missing"  # a function or type the engine does not know
    TABLE = "table"  # a table the engine does not know (not a node read by name)
    EXTENSION = "extension"  # what it needs is in an extension the sandbox does not load
    FILE = "file"  # the sandbox refused a file (`name`: the file)
    OUTSIDE = "outside"  # the sandbox refused something else: a database, a setting
    NESTED = "nested"  # a statement handed to query() that is not one SELECT
    INPUTS = "inputs"  # the stand-ins of the inputs do not bind (a schema odibi cannot use)
    OTHER = "other"  # any other error the engine gives (types, aggregates, ...)


@dataclass(frozen=True, slots=True)
class BindFailure:
    """Why a statement does not bind, and where: `offset` (characters into the node's
    text, None when unknown) and `width` underline the culprit."""

    problem: BindProblem
    message: str  # the engine's message, its first line
    offset: int | None = None
    width: int = 1
    name: str | None = None  # the column, table, function or file concerned
    candidates: tuple[str, ...] = ()  # names the engine had in scope
    suggestion: str | None = None  # the engine's own "did you mean"


class Binder(Protocol):
    """Binds statements without data, reaching no file; one thread uses it."""

    def bind(self, text: str, inputs: Mapping[str, Schema]) -> Schema | BindFailure:
        """The schema of `text`'s result, given its inputs' schemas (by the names the
        statement reads them by); never runs it."""
        ...
    def close(self) -> None: ...


# -- a scratch engine for tests ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fixture:
    """Rows a test gives, as exactly one of: `rows` (YAML values, every row naming the
    same columns), `csv` text with a header, or a `file` (.csv or .parquet). `schema`
    gives some columns their types (in the engine's type names)."""

    rows: tuple[Mapping[str, Any], ...] | None = None
    csv: str | None = None
    file: Path | None = None
    schema: Mapping[str, str] = field(default_factory=dict)


class FixtureProblem(Enum):
    TYPE = "type"  # `schema` names a type the engine does not know (`column`)
    UNREADABLE = "unreadable"  # the csv text or the file cannot be read
    NO_COLUMN = "no column"  # `schema` types a column (`column`) the file lacks (`columns`)
    UNLOADABLE = "unloadable"  # the rows cannot be made a relation (mixed types, a cast)


class FixtureError(EngineError):
    """A fixture the engine cannot load: the test's mistake. `detail`: the engine's own
    words, one line. A TYPE problem names the engine (`engine`) and some of its types
    (`examples`), for the message."""

    def __init__(self, problem: FixtureProblem, detail: str, column: str | None = None,
                 columns: Sequence[str] = (), *, engine: str = "", examples: str = "") -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail
        self.column = column
        self.columns = tuple(columns)
        self.engine = engine
        self.examples = examples


@dataclass(frozen=True, slots=True)
class Rows:
    """A relation's contents: its columns, their types (as the engine writes them), and
    its rows as tuples of plain Python values."""

    columns: Sequence[str]
    types: Sequence[str]
    rows: Sequence[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class MissingColumn:
    """A node failed because a relation it reads lacks `column` (`table`: the relation
    the engine named, when it named one)."""

    column: str
    table: str | None = None


class ScratchSession(Session, Protocol):
    """A build's session (so that `run_job` runs a node on it exactly as a build does)
    that can also load fixtures, read relations whole, and forget what it made."""

    def load(self, node: NodeId, fixture: Fixture) -> None:
        """Make `fixture` the current output of `node` (what SQL reads by that name, and
        a Python node gets as its input). Raises FixtureError."""
        ...
    def rows(self, relation: Relation, *, order: bool = False) -> Rows:
        """Every row of `relation`; with `order`, sorted by all columns, first to last
        (a stable order), else as the engine gives them."""
        ...
    def missing_column(self, error: str) -> MissingColumn | None:
        """Whether a node's failure (its message, as `run_job` gives it) says that a
        relation lacks a column, and which."""
        ...
    def clear(self) -> None:
        """Forget everything made through this session: loaded fixtures, stored outputs,
        current outputs (so that the next session starts from nothing)."""
        ...


class Scratch(Protocol):
    """An in-memory engine of the project's kind: no warehouse, nothing kept after
    `close`. Its SQL reaches only the files it was opened with (and its own scratch
    files); each test case runs on a session of its own, one after another."""

    capabilities: Capabilities

    def session(self) -> ScratchSession: ...
    def close(self) -> None: ...


# -- sampling built outputs --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JoinKey:
    """Rows of `left` and `right` join where `left_columns[i] = right_columns[i]` for every
    i. `left` is the input the statement names first; there is one key per pair of inputs."""

    left: str
    right: str
    left_columns: tuple[str, ...]
    right_columns: tuple[str, ...]

    def columns_of(self, name: str) -> tuple[str, ...]:
        return self.left_columns if name == self.left else self.right_columns

    def other(self, name: str) -> str:
        return self.right if name == self.left else self.left


@dataclass(frozen=True, slots=True)
class SampleStep:
    """Sample `input`: its first rows when `match` is empty; else the rows that match, on
    every key in `match`, rows sampled from the inputs before it."""

    input: str
    match: tuple[JoinKey, ...]
