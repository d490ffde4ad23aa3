"""The build state under `.odibi/state.db`: what was built from what, and caches.

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
    repoint(name)                    nodes restored without opening the warehouse: their
                                     view is repointed at their trace's table when a build
                                     next opens it

Durability: WAL journal; each node's record is committed on its own as the node finishes
(after its output is committed in the warehouse), so a crash loses at most the nodes that
were running. An unreadable or old database is moved aside with a warning and the build
starts from nothing (it errs towards rebuilding).
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from odibi.ids import Digest, NodeId, OutputRef
from odibi.sql import SqlInfo, TableRef
from odibi.trace import Export, Trace, TraceParts, stored_of

__all__ = ["Export", "State", "StateCorrupt", "Trace", "TraceParts"]

SCHEMA_VERSION = 2
STATE_DIR = ".odibi"

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
    """Owner of `.odibi/state.db`. One instance per command; not shared across threads
    (the executor's scheduling thread is the only writer during a build)."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        """`create=True` (builds): make `.odibi/` and own the state. `create=False` (read-only
        commands): use the state if it exists, never create it, never wait for a build."""
        self.writable_state = create
        self.recorded: dict[NodeId, Trace] = {}  # what this instance recorded (newest)
        self.dir = root / STATE_DIR
        self.path = self.dir / "state.db"
        self.warnings: list[str] = []
        self.writable = create
        self._con: sqlite3.Connection | None = None
        self._held: list[tuple[str, list[tuple[Any, ...]]]] | None = None
        if create:
            if self.dir.exists() and not self.dir.is_dir():
                from odibi.errors import UsageError

                raise UsageError(f"{self.dir} is a file; odibi keeps its build state in a "
                                 f"directory of that name", hint=f"move {self.dir} away")
            self.dir.mkdir(exist_ok=True)
        if self.path.exists() or create:
            self._open()

    # -- connection ---------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._con = self._connect()
            version = self._con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                  (str(SCHEMA_VERSION),))
                self._con.commit()
            elif version[0] != str(SCHEMA_VERSION):
                raise StateCorrupt(f"build state version {version[0]} is not {SCHEMA_VERSION}")
        except (sqlite3.DatabaseError, StateCorrupt) as e:
            if self._con is not None:
                self._con.close()
                self._con = None
            if not self.writable:
                self.warnings.append(f"build state is unreadable ({e}); treating as nothing built")
                return
            aside = self.path.with_name(f"state.db.corrupt-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    os.replace(p, Path(str(aside) + suffix))
            self.warnings.append(f"build state was unreadable ({e}); moved it to {aside.name} "
                                 "and starting from nothing built")
            self._con = self._connect()
            self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION),))
            self._con.commit()

    def _connect(self) -> sqlite3.Connection:
        # a build holds the write lock only for one node's record at a time; a read-only
        # command that finds it busy skips its cache writes rather than wait
        con = sqlite3.connect(self.path, timeout=30 if self.writable_state else 0.2,
                              check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(_SCHEMA)
        return con

    @property
    def available(self) -> bool:
        return self._con is not None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _q(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if self._con is None:
            return []
        return self._con.execute(sql, tuple(args)).fetchall()

    def hold_caches(self) -> None:
        """A project's first build loads it before `.odibi/` exists (a mistake must write
        nothing): keep its cache writes (parsed YAML, SQL, the resolved project) in memory,
        for `replay` into the state created once the project is found valid."""
        if self._con is None:
            self._held = []

    @property
    def holding(self) -> bool:
        return self._held is not None

    def held(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        return list(self._held or [])

    def replay(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        for sql, rows in writes:
            self._write(sql, rows)

    def _write(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        if self._con is None and self._held is not None and "_cache" in sql:
            self._held.append((sql, [tuple(r) for r in rows]))
            return
        if self._con is None or not self.writable:
            return
        try:
            with self._con:
                self._con.executemany(sql, [tuple(r) for r in rows])
        except sqlite3.OperationalError:
            if "_cache" in sql:
                return  # a cache write that lost a race with a build: harmless
            raise

    # -- meta ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        rows = self._q("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._write("DELETE FROM meta WHERE key = ?", [(key,)])
        else:
            self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(key, value)])

    # -- traces -------------------------------------------------------------------------
    def fingerprints(self) -> dict[NodeId, Digest]:
        return {NodeId(n): Digest(f) for n, f in self._q("SELECT name, fingerprint FROM nodes")}

    def traces(self, names: Iterable[str] | None = None) -> dict[NodeId, Trace]:
        if names is None:
            rows = self._q("SELECT name, trace FROM nodes")
        else:
            wanted = list(names)
            rows = []
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                rows += self._q(f"SELECT name, trace FROM nodes WHERE name IN "
                                f"({','.join('?' * len(chunk))})", chunk)
        out: dict[NodeId, Trace] = {}
        for n, t in rows:
            try:
                out[NodeId(n)] = Trace.from_json(t)
            except (ValueError, KeyError, TypeError):
                self.warnings.append(f"the build record of '{n}' is unreadable; it will be "
                                     "rebuilt")
        return out

    def record(self, name: str, trace: Trace) -> None:
        """Make a node's successful build durable (and forget its last failure); the
        version is remembered too, so reverting to it later restores it."""
        if self._con is None:
            return
        text = trace.to_json()
        self.recorded[NodeId(name)] = trace
        with self._con:
            self._con.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)",
                              (name, trace.fingerprint, text))
            self._con.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                              (name, trace.fingerprint, text, time.time()))
            self._con.execute("DELETE FROM failures WHERE name = ?", (name,))

    def record_many(self, items: list[tuple[str, Trace]], *, repoint: bool = False) -> None:
        """`record` for many nodes in one transaction (restores done together). With
        `repoint`, the warehouse was not touched: its views are to follow these traces
        (`pending_views`) the next time it is opened."""
        if self._con is None:
            return
        now = time.time()
        self.recorded.update((NodeId(n), t) for n, t in items)
        with self._con:
            for name, trace in items:
                text = trace.to_json()
                self._con.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)",
                                  (name, trace.fingerprint, text))
                self._con.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                                  (name, trace.fingerprint, text, now))
                self._con.execute("DELETE FROM failures WHERE name = ?", (name,))
                if repoint and trace.stored:
                    self._con.execute("INSERT OR IGNORE INTO repoint VALUES (?)", (name,))

    def pending_views(self) -> dict[NodeId, OutputRef | None]:
        """Nodes whose current output the warehouse has not caught up with (restored without
        opening it): node -> the version it should name (None: unreadable, rebuilt)."""
        rows = self._q("SELECT r.name, n.trace FROM repoint AS r LEFT JOIN nodes AS n "
                       "USING (name)")
        out: dict[NodeId, OutputRef | None] = {}
        for name, text in rows:
            try:
                stored = Trace.from_json(text).stored if text else None
            except (ValueError, KeyError, TypeError):
                stored = None  # an unreadable record is rebuilt anyway
            out[NodeId(name)] = stored
        return out

    def views_synced(self, names: Iterable[str]) -> None:
        self._write("DELETE FROM repoint WHERE name = ?", ([n] for n in names))

    def version(self, name: str, fingerprint: str) -> Trace | None:
        rows = self._q("SELECT trace FROM versions WHERE name = ? AND fingerprint = ?",
                       (name, fingerprint))
        try:
            return Trace.from_json(rows[0][0]) if rows else None
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable version is one we cannot restore: rebuild

    def versions(self) -> list[tuple[NodeId, Digest, OutputRef | None, float]]:
        """(node, fingerprint, its stored output (None: a check), built at) of every
        stored version."""
        out = []
        for n, f, t, b in self._q("SELECT name, fingerprint, trace, built FROM versions"):
            out.append((NodeId(n), Digest(f), stored_of(json.loads(t)), float(b)))
        return out

    def forget_versions(self, items: Iterable[tuple[str, str]]) -> None:
        self._write("DELETE FROM versions WHERE name = ? AND fingerprint = ?", items)

    def record_failure(self, name: str, fingerprint: str, message: str) -> None:
        self._write("INSERT OR REPLACE INTO failures VALUES (?, ?, ?)",
                    [(name, fingerprint, message)])

    def failures(self) -> dict[NodeId, tuple[Digest, str]]:
        return {NodeId(n): (Digest(f), m)
                for n, f, m in self._q("SELECT name, fingerprint, message FROM failures")}

    def forget(self, names: Iterable[str]) -> None:
        self._write("DELETE FROM nodes WHERE name = ?", [(n,) for n in names])

    # -- caches -------------------------------------------------------------------------
    def get_sql(self, keys: list[Digest]) -> dict[Digest, SqlInfo]:
        if self._con is None or not keys:
            return {}
        found: dict[Digest, SqlInfo] = {}
        if len(keys) > 200:  # one scan beats thousands of lookups
            wanted = set(keys)
            for k, tree, tables in self._q("SELECT key, tree, tables FROM sql_cache"):
                if k in wanted:
                    found[Digest(k)] = _sql_info(tree, tables)
            return found
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for k, tree, tables in self._q(
                    f"SELECT key, tree, tables FROM sql_cache WHERE key IN "
                    f"({','.join('?' * len(chunk))})", chunk):
                found[Digest(k)] = _sql_info(tree, tables)
        return found

    def put_sql(self, items: Mapping[Digest, SqlInfo]) -> None:
        self._write("INSERT OR REPLACE INTO sql_cache VALUES (?, ?, ?)",
                    [(k, v.tree, json.dumps([[t.name, t.offset] for t in v.tables]))
                     for k, v in items.items()])

    def get_schema(self, key: Digest) -> tuple[tuple[str, str], ...] | None:
        rows = self._q("SELECT schema FROM schema_cache WHERE key = ?", (key,))
        try:
            return tuple((str(c), str(t)) for c, t in json.loads(rows[0][0])) if rows else None
        except (ValueError, TypeError):
            return None  # an unreadable entry is a miss

    def put_schemas(self, items: Mapping[Digest, tuple[tuple[str, str], ...]]) -> None:
        """Kept by any command that has the state open, read-only ones too: a cache entry
        is a fact about its key, never a record of a build."""
        rows = [(k, json.dumps(v)) for k, v in items.items()]
        if self._con is None or self.writable or self._held is not None:
            self._write("INSERT OR REPLACE INTO schema_cache VALUES (?, ?)", rows)
            return
        try:
            with self._con:
                self._con.executemany("INSERT OR REPLACE INTO schema_cache VALUES (?, ?)", rows)
        except sqlite3.OperationalError:
            pass  # busy (a build is writing) or read-only storage: the next command binds

    def file_stamps(self) -> dict[str, tuple[int, int, int, Digest]]:
        return {p: (s, m, i, Digest(d)) for p, s, m, i, d in
                self._q("SELECT path, size, mtime_ns, inode, digest FROM file_cache")}

    def put_file_stamps(self, items: Mapping[str, tuple[int, int, int, Digest]]) -> None:
        self._write("INSERT OR REPLACE INTO file_cache VALUES (?, ?, ?, ?, ?)",
                    [(p, *v) for p, v in items.items()])

    def get_yaml(self, path: str, key: str) -> Any | None:
        rows = self._q("SELECT data FROM yaml_cache WHERE path = ? AND key = ?", (path, key))
        if not rows:
            return None
        try:
            return pickle.loads(rows[0][0])
        except Exception:  # noqa: BLE001 - a stale cache entry is simply a miss
            return None

    def put_yaml(self, path: str, key: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO yaml_cache VALUES (?, ?, ?)",
                    [(path, key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))])

    def get_project(self, root: str, fresh: Callable[[Any], bool]) -> Any | None:
        """The cached project of `root`, if `fresh(what it was made from)` says it still
        holds (checked before the project itself is unpickled)."""
        rows = self._q("SELECT made, data FROM project_cache WHERE root = ?", (root,))
        if not rows:
            return None
        try:
            if not fresh(pickle.loads(rows[0][0])):
                return None
            return pickle.loads(rows[0][1])
        except Exception:  # noqa: BLE001 - a stale or foreign entry is a miss
            return None

    def put_project(self, root: str, made: Any, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO project_cache VALUES (?, ?, ?)",
                    [(root, pickle.dumps(made, protocol=pickle.HIGHEST_PROTOCOL),
                      pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))])

    # -- timings and history ------------------------------------------------------------
    def durations(self) -> dict[NodeId, float]:
        return {NodeId(n): s for n, s in self._q("SELECT name, seconds FROM durations")}

    def put_durations(self, items: Mapping[str, float]) -> None:
        self._write("INSERT OR REPLACE INTO durations VALUES (?, ?)", list(items.items()))

    def start_run(self, command: str) -> int | None:
        if self._con is None or not self.writable:
            return None
        with self._con:
            cur = self._con.execute("INSERT INTO runs (started, command) VALUES (?, ?)",
                                    (time.time(), command))
        return cur.lastrowid

    def finish_run(self, run_id: int | None, status: str, summary: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        self._write("UPDATE runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                    [(time.time(), status, json.dumps(summary, sort_keys=True), run_id)])

    def runs(self, limit: int = 20) -> list[tuple[int, float, float | None, str, str | None,
                                                  dict[str, Any]]]:
        rows = self._q("SELECT id, started, finished, command, status, summary FROM runs "
                       "ORDER BY id DESC LIMIT ?", (limit,))
        return [(i, s, f, c, st, json.loads(sm) if sm else {}) for i, s, f, c, st, sm in rows]


def _sql_info(tree: str, tables: str) -> SqlInfo:
    return SqlInfo(Digest(tree), tuple(TableRef(n, o) for n, o in json.loads(tables)))
