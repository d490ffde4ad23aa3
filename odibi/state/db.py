"""The one SQLite connection to `.odibi/state.db`, shared by the state's three parts
(`Records`, `Caches`, `History`). `State` opens it and closes it; the parts only read and
write through it, so what a write may do (be dropped, be held, raise) is decided by the
part it goes through, never by its SQL text."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

Row = tuple[Any, ...]

_CHUNK = 500  # SQLite's limit on host parameters is 999 in old builds


class Db:
    """The connection (`None`: no state to use, as for a read-only command before the
    first build), whether this command may write (builds: yes; read-only commands: no)
    and the warnings met while opening or reading (each said once, by the command)."""

    __slots__ = ("con", "warnings", "writable")

    def __init__(self, *, writable: bool) -> None:
        self.con: sqlite3.Connection | None = None
        self.writable = writable
        self.warnings: list[str] = []

    def rows(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        """The rows of a query; none when there is no state."""
        if self.con is None:
            return []
        return self.con.execute(sql, tuple(args)).fetchall()

    def rows_in(self, sql: str, keys: Sequence[Any]) -> list[Row]:
        """`sql` with `{marks}` standing for an `IN (...)` list, run over `keys` in chunks."""
        out: list[Row] = []
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            out += self.rows(sql.format(marks=",".join("?" * len(chunk))), chunk)
        return out

    def writer(self) -> sqlite3.Connection | None:
        """The connection, if this command may write the state (used as `with con:` for
        one transaction); `None` drops the write."""
        return self.con if self.writable else None

    def write(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """A write a later build depends on, in one transaction: dropped when this command
        may not write; a failure (busy past the timeout, disk full) raises."""
        con = self.writer()
        if con is None:
            return
        with con:
            con.executemany(sql, [tuple(r) for r in rows])

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
