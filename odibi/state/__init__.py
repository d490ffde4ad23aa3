"""The build state under `.odibi/state.db`: what was built from what, caches, history.

A SQLite database (the standard library's `sqlite3`), so the planner reads it without
importing DuckDB. Tables:

    meta(key, value)                 schema version; warehouse file stamp
    nodes(name, fingerprint, trace)  one Trace per node: its current output
    versions(name, fingerprint, trace, built)   every stored output version (until gc)
    failures(name, fingerprint, message)   the last failed attempt, per node
    sql_cache(key, tree, tables)     SQL analysis by text digest
    schema_cache(key, schema)        output schemas worked out without data (`bind`): of a
                                     read by its files' digests and options, of a SQL
                                     node by its SQL and its inputs' schemas; written by
                                     read-only commands too (`validate`, `build -n`)
    file_cache(path, size, mtime_ns, inode, digest)   source digests by stat
    yaml_cache(path, key, data)      each YAML file's last parse, keyed by its content digest
    project_cache(root, data)        the last loaded and resolved project, and what it was
                                     loaded from (file and module digests, overrides)
    durations(name, seconds)         how long each node took last time
    runs(id, ...)                    build history
    repoint(name)                    nodes whose current output the warehouse has not
                                     caught up with (restored without opening it): the
                                     warehouse makes their recorded version current when a
                                     build next opens it

Durability: WAL journal; each node's record is committed on its own as the node finishes
(after its output is committed in the warehouse), so a crash loses at most the nodes that
were running. An unreadable or old database is moved aside with a warning and the build
starts from nothing (it errs towards rebuilding).

`State` opens the database and owns its one connection; three parts read and write it,
each with its own rule for a write (see their modules): `state.records` (nodes, versions,
failures, pending restores: never held, never dropped on failure), `state.caches` (held
in memory during a first build, dropped when they lose a race with a build) and
`state.history` (durations, runs). `meta` stays here.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from odibi.state.caches import Caches, HeldWrites
from odibi.state.db import Db
from odibi.state.history import History
from odibi.state.records import Records
from odibi.trace import Export, Trace, TraceParts

from odibi.paths import STATE_DIR, state_dir  # noqa: E402 - re-exported

__all__ = ["STATE_DIR", "state_dir", "Caches", "Export", "History", "Records", "State", "StateCorrupt", "Trace",
           "TraceParts"]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                                  trace TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (name TEXT NOT NULL, fingerprint TEXT NOT NULL,
                                     trace TEXT NOT NULL, built REAL NOT NULL,
                                     PRIMARY KEY (name, fingerprint));
CREATE TABLE IF NOT EXISTS failures (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                                     message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sql_cache (key TEXT PRIMARY KEY, tree TEXT NOT NULL,
                                      tables TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schema_cache (key TEXT PRIMARY KEY, schema TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS file_cache (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
                                       mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
                                       digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS yaml_cache (path TEXT PRIMARY KEY, key TEXT NOT NULL,
                                       data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS project_cache (root TEXT PRIMARY KEY, made BLOB NOT NULL,
                                          data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS durations (name TEXT PRIMARY KEY, seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS repoint (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL,
                                 finished REAL, command TEXT NOT NULL, status TEXT,
                                 summary TEXT);
"""


class StateCorrupt(Exception):
    pass


class State:
    """Owner of `.odibi/state.db` and its one connection. One instance per command; not
    shared across threads (the executor's scheduling thread is the only writer during a
    build). Its parts: `records`, `caches`, `history`."""

    def __init__(self, root: Path, *, create: bool = True, target: str | None = None) -> None:
        """`create=True` (builds): make `.odibi/` and own the state. `create=False` (read-only
        commands): use the state if it exists, never create it, never wait for a build.
        `target`: a target other than the default keeps its own (`state_dir`)."""
        self.dir = state_dir(root, target)
        self.path = self.dir / "state.db"
        self._db = Db(writable=create)
        self.records = Records(self._db)
        self.caches = Caches(self._db)
        self.history = History(self._db)
        if create:
            if self.dir.exists() and not self.dir.is_dir():
                from odibi.errors import UsageError

                raise UsageError(f"{self.dir} is a file; odibi keeps its build state in a "
                                 f"directory of that name", hint=f"move {self.dir} away")
            self.dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or create:
            self._open()

    @property
    def writable(self) -> bool:
        return self._db.writable

    @property
    def warnings(self) -> list[str]:
        """What opening or reading the state met (an unreadable db or record)."""
        return self._db.warnings

    @property
    def available(self) -> bool:
        return self._db.con is not None

    def close(self) -> None:
        self._db.close()

    # -- opening ------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._db.con = con = self._connect()
            version = con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                self._stamp_version(con)
            elif version[0] != str(SCHEMA_VERSION):
                raise StateCorrupt(f"build state version {version[0]} is not {SCHEMA_VERSION}")
        except (sqlite3.DatabaseError, StateCorrupt) as e:
            self._db.close()
            if not self.writable:
                self.warnings.append(f"build state is unreadable ({e}); treating as nothing built")
                return
            aside = self._move_aside()
            self.warnings.append(f"build state was unreadable ({e}); moved it to {aside} "
                                 "and starting from nothing built")
            self._db.con = con = self._connect()
            self._stamp_version(con)

    def _move_aside(self) -> str:
        """Move the database (and its WAL files) aside; the name it was given."""
        aside = self.path.with_name(f"state.db.corrupt-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                os.replace(p, Path(str(aside) + suffix))
        return aside.name

    @staticmethod
    def _stamp_version(con: sqlite3.Connection) -> None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        con.commit()

    def _connect(self) -> sqlite3.Connection:
        # a build holds the write lock only for one node's record at a time; a read-only
        # command that finds it busy skips its cache writes rather than wait
        con = sqlite3.connect(self.path, timeout=30 if self.writable else 0.2,
                              check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(_SCHEMA)
        return con

    # -- a first build: caches held until the state exists ------------------------------
    def hold_caches(self) -> None:
        """A project's first build loads it before `.odibi/` exists (a mistake must write
        nothing): keep its cache writes (parsed YAML, SQL, the resolved project) in memory,
        for `replay` into the state created once the project is found valid."""
        self.caches.hold()

    @property
    def holding(self) -> bool:
        return self.caches.holding

    def held(self) -> HeldWrites:
        return self.caches.held()

    def replay(self, writes: HeldWrites) -> None:
        self.caches.replay(writes)

    # -- meta ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        rows = self._db.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.write("DELETE FROM meta WHERE key = ?", [(key,)])
        else:
            self._db.write("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(key, value)])
