"""Caches: facts about their keys, never records of a build. A SQL text's analysis
(`sql_cache`), its translation to another dialect (`transpile_cache`), an output schema worked out without data (`schema_cache`), a source file's
digest by its stat (`file_cache`), a YAML file's parse (`yaml_cache`) and the last resolved
project (`project_cache`).

Because an entry only says what its key means, every write goes through one rule
(`Caches._put`):
- a project's first build loads it before `.odibi/` exists (a mistake must write nothing):
  its cache writes are held in memory (`hold`) and replayed into the state created once
  the project is found valid (`replay`);
- a cache write that finds the database busy (a build holds it) or unwritable is dropped:
  it lost a race with a build, which is harmless (the next command recomputes);
- only builds write caches, but for schemas: any command that has the state open keeps
  the schemas it worked out (`validate`, `build -n` bind too).
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from odibi.ids import Digest
from odibi.sql import SqlInfo, TableRef
from odibi.state.db import Db, Row

# cache writes held in memory during a first build: (SQL, rows) in the order made
HeldWrites = list[tuple[str, list[Row]]]
Schema = tuple[tuple[str, str], ...]
FileStamp = tuple[int, int, int, Digest]  # size, mtime_ns, inode, digest

_SCAN_OVER = 200  # keys: one scan of the table beats that many lookups


class Caches:
    """The caches of a state, over its one connection (see the module docstring for what
    becomes of a write)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._held: HeldWrites | None = None

    # -- the rule every write follows ---------------------------------------------------
    def hold(self) -> None:
        """Keep this command's cache writes in memory (there is no state to write yet)."""
        if self._db.con is None:
            self._held = []

    @property
    def holding(self) -> bool:
        return self._held is not None

    def held(self) -> HeldWrites:
        return list(self._held or [])

    def replay(self, writes: HeldWrites) -> None:
        for sql, rows in writes:
            self._put(sql, rows)

    def _put(self, sql: str, rows: Iterable[Iterable[Any]], *, read_only_too: bool = False
             ) -> None:
        rows = [tuple(r) for r in rows]
        con = self._db.con
        if con is None:
            if self._held is not None:
                self._held.append((sql, rows))
            return
        if not (self._db.writable or read_only_too):
            return
        try:
            with con:
                con.executemany(sql, rows)
        except sqlite3.OperationalError:
            pass  # busy (a build is writing) or read-only storage: harmless

    # -- SQL analysis -------------------------------------------------------------------
    def get_sql(self, keys: list[Digest]) -> dict[Digest, SqlInfo]:
        if not keys:
            return {}
        if len(keys) > _SCAN_OVER:
            wanted = set(keys)
            rows = [r for r in self._db.rows("SELECT key, tree, tables FROM sql_cache")
                    if r[0] in wanted]
        else:
            rows = self._db.rows_in("SELECT key, tree, tables FROM sql_cache WHERE key IN "
                                    "({marks})", keys)
        return {Digest(k): _sql_info(tree, tables) for k, tree, tables in rows}

    def put_sql(self, items: Mapping[Digest, SqlInfo]) -> None:
        self._put("INSERT OR REPLACE INTO sql_cache VALUES (?, ?, ?)",
                  [(k, v.tree, json.dumps([[t.name, t.offset] for t in v.tables]))
                   for k, v in items.items()])

    # -- translations to another dialect ----------------------------------------------
    def get_transpiled(self, keys: list[Digest]) -> dict[Digest, str]:
        if not keys:
            return {}
        rows = self._db.rows_in("SELECT key, sql FROM transpile_cache WHERE key IN ({marks})",
                                keys)
        return {Digest(k): str(v) for k, v in rows}

    def put_transpiled(self, items: Mapping[Digest, str]) -> None:
        self._put("INSERT OR REPLACE INTO transpile_cache VALUES (?, ?)", list(items.items()))

    # -- schemas ------------------------------------------------------------------------
    def get_schema(self, key: Digest) -> Schema | None:
        rows = self._db.rows("SELECT schema FROM schema_cache WHERE key = ?", (key,))
        try:
            return tuple((str(c), str(t)) for c, t in json.loads(rows[0][0])) if rows else None
        except (ValueError, TypeError):
            return None  # an unreadable entry is a miss

    def put_schemas(self, items: Mapping[Digest, Schema]) -> None:
        """Kept by any command that has the state open, read-only ones too."""
        self._put("INSERT OR REPLACE INTO schema_cache VALUES (?, ?)",
                  [(k, json.dumps(v)) for k, v in items.items()], read_only_too=True)

    # -- source files -------------------------------------------------------------------
    def file_stamps(self) -> dict[str, FileStamp]:
        return {p: (s, m, i, Digest(d)) for p, s, m, i, d in
                self._db.rows("SELECT path, size, mtime_ns, inode, digest FROM file_cache")}

    def put_file_stamps(self, items: Mapping[str, FileStamp]) -> None:
        self._put("INSERT OR REPLACE INTO file_cache VALUES (?, ?, ?, ?, ?)",
                  [(p, *v) for p, v in items.items()])

    # -- YAML files and the resolved project --------------------------------------------
    def get_yaml(self, path: str, key: str) -> Any | None:
        rows = self._db.rows("SELECT data FROM yaml_cache WHERE path = ? AND key = ?",
                             (path, key))
        if not rows:
            return None
        try:
            return pickle.loads(rows[0][0])
        except Exception:  # noqa: BLE001 - a stale cache entry is simply a miss
            return None

    def put_yaml(self, path: str, key: str, value: Any) -> None:
        self._put("INSERT OR REPLACE INTO yaml_cache VALUES (?, ?, ?)",
                  [(path, key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))])

    def get_project(self, root: str, fresh: Callable[[Any], bool]) -> Any | None:
        """The cached project of `root`, if `fresh(what it was made from)` says it still
        holds (checked before the project itself is unpickled)."""
        rows = self._db.rows("SELECT made, data FROM project_cache WHERE root = ?", (root,))
        if not rows:
            return None
        try:
            if not fresh(pickle.loads(rows[0][0])):
                return None
            return pickle.loads(rows[0][1])
        except Exception:  # noqa: BLE001 - a stale or foreign entry is a miss
            return None

    def put_project(self, root: str, made: Any, value: Any) -> None:
        self._put("INSERT OR REPLACE INTO project_cache VALUES (?, ?, ?)",
                  [(root, pickle.dumps(made, protocol=pickle.HIGHEST_PROTOCOL),
                    pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))])


def _sql_info(tree: str, tables: str) -> SqlInfo:
    return SqlInfo(Digest(tree), tuple(TableRef(n, o) for n, o in json.loads(tables)))
