"""Engines: everything that touches data (`odibi.engines.base` is the interface).

`open_engine` is the one place that picks an engine for a project: the rest of odibi
names no engine. Opening is cheap (nothing is imported or connected until the engine
is first used, when `EngineOptions.lazy`). What odibi asks of an engine besides
building (`odibi.engines.tools`) is opened here too, from the same engine: a binder
(`open_binder`, `read_schemas`, `engine_version`), a scratch engine for tests
(`open_scratch`) and samples of built outputs (`sample`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from odibi.config.model import ReadSpec, Target
    from odibi.engines.base import Access, Engine, EngineOptions, Relation, Schema
    from odibi.engines.spark_setup import SetupProblem
    from odibi.engines.tools import Binder, Rows, SampleStep, Scratch

_ENGINE = "duckdb"  # the distribution of the engine `open_engine` opens (its version)
_VERSION: list[str] = []


def open_engine(root: Path, options: EngineOptions,
                on_open: Callable[[Engine], None] | None = None,
                target: Target | None = None, app: str = "odibi") -> Engine:
    """The engine of `target` (None: the default, DuckDB) for the project at `root`: its
    warehouse under the target's `.odibi/` directory, or where the target says. Raises
    WarehouseUnavailable (WarehouseBusy, WarehouseDamaged) unless `options.lazy`."""
    from odibi.config.model import EngineKind

    if target is not None and target.engine is EngineKind.SPARK:
        from odibi.engines.spark_engine import SparkEngine

        return SparkEngine(target, spark_warehouse(root, target), options, on_open, app)
    from odibi.engines.duckdb_engine import DuckDBEngine
    from odibi.engines.duckdb_files import warehouse_path

    return DuckDBEngine(warehouse_path(root, target.key if target else None), options, on_open)


def preflight(root: Path, target: Target) -> SetupProblem | None:
    """What keeps `target` from computing (no Java, no pyspark, an unreachable master, a
    warehouse it cannot write), found without starting anything; None: nothing."""
    from odibi.config.model import EngineKind
    from odibi.config.targets import is_uri

    if target.engine is not EngineKind.SPARK:
        return None
    from odibi.engines.spark_setup import preflight as spark_preflight

    where = spark_warehouse(root, target)
    return spark_preflight(target, None if is_uri(where) else Path(where), root)


def spark_warehouse(root: Path, target: Target) -> str:
    """Where a Spark target keeps its outputs: its `warehouse:`, else under its state."""
    from odibi.paths import state_dir

    return target.warehouse or str(state_dir(root, target.key) / "spark-warehouse")


def warehouse_stamp(root: Path, target: Target | None = None) -> str | None:
    """`Engine.stamp()` of the project's warehouse, without importing the engine (what a
    no-op build asks): None when there is no warehouse."""
    from odibi.config.model import EngineKind

    if target is not None and target.engine is EngineKind.SPARK:
        from odibi.config.targets import is_uri
        from odibi.engines.spark_files import local_stamp

        where = spark_warehouse(root, target)
        return f"remote {where}" if is_uri(where) else local_stamp(Path(where))
    from odibi.engines.duckdb_files import stamp, warehouse_path

    return stamp(warehouse_path(root, target.key if target else None))


def engine_version() -> str:
    """The installed engine's version, read from its package metadata (nothing is
    imported): a bound schema is that engine's answer, and another version may answer
    otherwise."""
    if not _VERSION:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _VERSION.append(version(_ENGINE))
        except PackageNotFoundError:  # pragma: no cover - the engine is a dependency
            _VERSION.append("?")
    return _VERSION[0]


def open_binder() -> Binder:
    """A binder of the engine's SQL, in memory, reaching no file (connected at once)."""
    from odibi.engines.duckdb_bind import DuckDBBinder

    return DuckDBBinder()


def read_schemas(items: Sequence[tuple[Sequence[Path], ReadSpec]]) -> list[Schema | str]:
    """Each read's schema, as the engine's reader gives it with the node's options (from
    the files' header or metadata, not their data), or the engine's message when it
    cannot read them. Reaches exactly these files."""
    from odibi.engines.duckdb_bind import read_schemas as read

    return read(items)


def open_scratch(access: Access, dialect: str = "duckdb") -> Scratch:
    """A scratch engine for test cases (`odibi.engines.tools.Scratch`) where SQL of
    `dialect` (a project's `sql_dialect`) runs: DuckDB in memory, whose SQL reaches only
    the files of `access`; for Spark SQL, a local Spark session (started when the first
    case runs). Close it when done."""
    from odibi.config.model import EngineKind

    if dialect == EngineKind.SPARK:
        from odibi.engines.spark_fixtures import SparkScratch

        return SparkScratch(access)
    from odibi.engines.duckdb_fixtures import DuckDBScratch

    return DuckDBScratch(access)


def scratch_problem(dialect: str) -> SetupProblem | None:
    """What keeps `open_scratch(..., dialect)` from running cases (Spark: no pyspark, no
    Java), found without starting anything; None: nothing."""
    from odibi.config.model import EngineKind, Target

    if dialect != EngineKind.SPARK:
        return None
    from odibi.engines.spark_setup import preflight as spark_preflight

    return spark_preflight(Target("scratch", EngineKind.SPARK, master="local[2]"), None,
                           named=False)


def sample(engine: Engine, relations: Mapping[str, Relation], plan: Sequence[SampleStep],
           rows: int) -> dict[str, Rows]:
    """Up to `rows` rows of each input of `plan` (in `engine`, one `open_engine` opened;
    `relations`: where each input is read from), following the plan: an input with no
    key to match gets its first rows (sorted by all columns: the same every time), any
    other the rows that join, on every key, the rows sampled before it (else its first)."""
    from odibi.engines.sample_sql import duckdb_sample, sample_sql, spark_sample

    sql = spark_sample(engine) if engine.capabilities.dialect == "spark" \
        else duckdb_sample(engine)
    return sample_sql(sql, relations, plan, rows)
