"""Engines: everything that touches data (`odibi.engines.base` is the interface).

`open_engine` is the one place that picks an engine for a project: the rest of odibi
names no engine. Opening is cheap (nothing is imported or connected until the engine
is first used, when `EngineOptions.lazy`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from odibi.engines.base import Engine, EngineOptions


def open_engine(root: Path, options: EngineOptions,
                on_open: Callable[[Engine], None] | None = None) -> Engine:
    """The engine of the project at `root` (its warehouse under `.odibi/`). Raises
    WarehouseUnavailable (WarehouseBusy, WarehouseDamaged) unless `options.lazy`."""
    from odibi.engines.duckdb_engine import WAREHOUSE, DuckDBEngine

    return DuckDBEngine(root / ".odibi" / WAREHOUSE, options, on_open)
