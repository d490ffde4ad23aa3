"""Build records: what was built from what (`nodes`, `versions`), the last failed attempt
(`failures`), and the nodes whose current output the warehouse has not caught up with
(`repoint`). A record write is never held back nor dropped when it fails: a node counts
as built only once its record is durable, so a failure to write one must stop the build."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from odibi.ids import Digest, NodeId, OutputRef
from odibi.state.db import Db
from odibi.trace import Trace, stored_of

_UNREADABLE = (ValueError, KeyError, TypeError)


class Records:
    """The build records of a state, over its one connection. Written by the executor's
    scheduling thread only (one node's record at a time, as it finishes)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self.recorded: dict[NodeId, Trace] = {}  # what this command recorded (newest)

    def fingerprints(self) -> dict[NodeId, Digest]:
        return {NodeId(n): Digest(f)
                for n, f in self._db.rows("SELECT name, fingerprint FROM nodes")}

    def traces(self, names: Iterable[str] | None = None) -> dict[NodeId, Trace]:
        """The current record of each node (of `names`, if given). An unreadable record
        is left out with a warning: the node is rebuilt."""
        if names is None:
            rows = self._db.rows("SELECT name, trace FROM nodes")
        else:
            rows = self._db.rows_in("SELECT name, trace FROM nodes WHERE name IN ({marks})",
                                    list(names))
        out: dict[NodeId, Trace] = {}
        for n, t in rows:
            try:
                out[NodeId(n)] = Trace.from_json(t)
            except _UNREADABLE:
                self._db.warnings.append(f"the build record of '{n}' is unreadable; it will "
                                         "be rebuilt")
        return out

    def record(self, name: str, trace: Trace) -> None:
        """Make a node's successful build durable (and forget its last failure); the
        version is remembered too, so reverting to it later restores it."""
        self.record_many([(name, trace)])

    def record_many(self, items: list[tuple[str, Trace]], *, deferred: bool = False) -> None:
        """`record` for many nodes in one transaction (restores done together). With
        `deferred`, the warehouse was not opened: it is still to catch up with these
        records (`pending_restores`) the next time a build opens it."""
        con = self._db.writer()
        if con is None:
            return
        now = time.time()
        self.recorded.update((NodeId(n), t) for n, t in items)
        with con:
            for name, trace in items:
                text = trace.to_json()
                con.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)",
                            (name, trace.fingerprint, text))
                con.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?)",
                            (name, trace.fingerprint, text, now))
                con.execute("DELETE FROM failures WHERE name = ?", (name,))
                if deferred and trace.stored:
                    con.execute("INSERT OR IGNORE INTO repoint VALUES (?)", (name,))

    def pending_restores(self) -> dict[NodeId, OutputRef | None]:
        """Nodes restored without opening the warehouse, which has not caught up with
        them yet: node -> the stored version that is its output (None if its record is
        gone or unreadable: it is rebuilt anyway)."""
        rows = self._db.rows("SELECT r.name, n.trace FROM repoint AS r LEFT JOIN nodes AS n "
                             "USING (name)")
        out: dict[NodeId, OutputRef | None] = {}
        for name, text in rows:
            try:
                out[NodeId(name)] = Trace.from_json(text).stored if text else None
            except _UNREADABLE:
                out[NodeId(name)] = None
        return out

    def versions(self) -> list[tuple[NodeId, Digest, OutputRef | None, float]]:
        """(node, fingerprint, its stored output (None: a check), built at) of every
        stored version."""
        return [(NodeId(n), Digest(f), stored_of(json.loads(t)), float(b)) for n, f, t, b
                in self._db.rows("SELECT name, fingerprint, trace, built FROM versions")]

    def restores_applied(self, names: Iterable[str]) -> None:
        """The warehouse has caught up with these nodes' records."""
        self._db.write("DELETE FROM repoint WHERE name = ?", ([n] for n in names))

    def version(self, name: str, fingerprint: str) -> Trace | None:
        """The stored version of `name` built with `fingerprint`, if one is remembered."""
        rows = self._db.rows("SELECT trace FROM versions WHERE name = ? AND fingerprint = ?",
                             (name, fingerprint))
        try:
            return Trace.from_json(rows[0][0]) if rows else None
        except _UNREADABLE:
            return None  # an unreadable version is one we cannot restore: rebuild

    def forget_versions(self, items: Iterable[tuple[str, str]]) -> None:
        self._db.write("DELETE FROM versions WHERE name = ? AND fingerprint = ?", items)

    def record_failure(self, name: str, fingerprint: str, message: str) -> None:
        self._db.write("INSERT OR REPLACE INTO failures VALUES (?, ?, ?)",
                       [(name, fingerprint, message)])

    def failures(self) -> dict[NodeId, tuple[Digest, str]]:
        return {NodeId(n): (Digest(f), m) for n, f, m
                in self._db.rows("SELECT name, fingerprint, message FROM failures")}

    def forget(self, names: Iterable[str]) -> None:
        """Forget the current record of nodes no longer in the project (their stored
        versions stay until `gc`)."""
        self._db.write("DELETE FROM nodes WHERE name = ?", [(n,) for n in names])
