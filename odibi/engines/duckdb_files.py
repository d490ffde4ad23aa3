"""The DuckDB warehouse's files, as seen from outside: where it is, and a stamp of it
(size, mtime, inode of the database file and its WAL). Light on purpose: a no-op build
asks only this of the engine, and imports nothing else of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

WAREHOUSE = "warehouse.duckdb"  # under the project's .odibi/


def warehouse_path(root: Path, target: str | None = None) -> Path:
    """`.odibi/warehouse.duckdb`, or that of a target other than the default."""
    from odibi.paths import state_dir

    return state_dir(root, target) / WAREHOUSE


def stamp(path: Path) -> str | None:
    """Size/mtime/inode of the warehouse file and its WAL (None: there is none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    wal = Path(str(path) + ".wal")
    w = os.stat(wal) if wal.exists() else None
    return json.dumps([st.st_size, st.st_mtime_ns, st.st_ino,
                       [w.st_size, w.st_mtime_ns] if w else None])
