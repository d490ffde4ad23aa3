"""History: how long each node took last time (`durations`, for the live board's
estimates) and one row per build (`runs`, for `odibi history`). Written by builds only."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from odibi.ids import NodeId
from odibi.state.db import Db

# (id, started, finished or None while it runs, command, status, summary)
Run = tuple[int, float, float | None, str, str | None, dict[str, Any]]


class History:
    """The build history of a state, over its one connection."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def durations(self) -> dict[NodeId, float]:
        return {NodeId(n): s for n, s in self._db.rows("SELECT name, seconds FROM durations")}

    def put_durations(self, items: Mapping[str, float]) -> None:
        self._db.write("INSERT OR REPLACE INTO durations VALUES (?, ?)", list(items.items()))

    def start_run(self, command: str) -> int | None:
        """The id of a new run, or None when this command keeps no history."""
        con = self._db.writer()
        if con is None:
            return None
        with con:
            cur = con.execute("INSERT INTO runs (started, command) VALUES (?, ?)",
                              (time.time(), command))
        return cur.lastrowid

    def finish_run(self, run_id: int | None, status: str, summary: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        self._db.write("UPDATE runs SET finished = ?, status = ?, summary = ? WHERE id = ?",
                       [(time.time(), status, json.dumps(summary, sort_keys=True), run_id)])

    def runs(self, limit: int = 20) -> list[Run]:
        """The last `limit` runs, newest first."""
        rows = self._db.rows("SELECT id, started, finished, command, status, summary FROM runs "
                             "ORDER BY id DESC LIMIT ?", (limit,))
        return [(i, s, f, c, st, json.loads(sm) if sm else {}) for i, s, f, c, st, sm in rows]
