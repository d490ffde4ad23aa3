"""A build state written by an earlier odibi: its records name each stored version by the
DuckDB table that held it (`"table": "odibi_store.\\"<node>__<16 hex>\\""`, '' for checks)
instead of an engine-neutral reference. Upgrading must rebuild nothing, and restores of
versions recorded that way must still work."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import run_cli
from tests.e2e.test_executor import build, executed, outcomes
from tests.e2e.test_incremental import edit_node


def as_written_before(root: Path) -> int:
    """Rewrite every record of the state in the earlier form; the number rewritten."""
    con = sqlite3.connect(root / ".odibi" / "state.db")
    count = 0
    with con:
        for table, key in (("nodes", "name"), ("versions", "name, fingerprint")):
            for row in con.execute(f"SELECT {key}, trace FROM {table}").fetchall():
                d = json.loads(row[-1])
                if "stored" not in d:
                    continue  # (written in the earlier form already)
                stored = d.pop("stored")
                d["table"] = (f'odibi_store."{stored[0]}__{stored[1]}"' if stored else "")
                where = " AND ".join(f"{k.strip()} = ?" for k in key.split(","))
                con.execute(f"UPDATE {table} SET trace = ? WHERE {where}",
                            (json.dumps(d, sort_keys=True, separators=(",", ":")), *row[:-1]))
                count += 1
    con.close()
    return count


def test_records_of_an_earlier_odibi_rebuild_nothing_and_still_restore(shop: Path) -> None:
    build(shop)
    assert as_written_before(shop) > 0
    lock = (shop / "odibi.lock").read_bytes()
    report = build(shop)
    assert executed(report) == set(), outcomes(report)  # every record read as it was meant
    assert (shop / "odibi.lock").read_bytes() == lock
    rows = shown_rows(shop, "stg_payments")
    assert rows > 0
    # an edit, then its revert: the version recorded in the earlier form is restored
    edit_node(shop, "stg_payments", "WHERE amount > 0", "WHERE amount > 10")
    assert "stg_payments" in executed(build(shop))
    assert shown_rows(shop, "stg_payments") < rows  # (the shop has payments of 0 < amount <= 10)
    as_written_before(shop)
    edit_node(shop, "stg_payments", "WHERE amount > 10", "WHERE amount > 0")
    reverted = outcomes(build(shop))
    assert reverted["stg_payments"] == "restored", reverted
    assert "built" not in reverted.values(), reverted
    assert shown_rows(shop, "stg_payments") == rows  # the restored version is current


def shown_rows(root: Path, node: str) -> int:
    r = run_cli("-C", str(root), "show", node, "--json", "--limit", "1")
    assert r.code == 0, r.text
    return int(json.loads(r.out)["rows"])
