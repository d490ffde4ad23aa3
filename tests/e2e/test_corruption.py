"""Damage done to a built project outside odibi (issue #9, "Corruption"): a truncated or
garbage odibi.lock, a deleted or garbage warehouse, a store table dropped by hand. Each
gets a warning that says what was found, and the next build rebuilds exactly what the
damage took (nothing, for the lock, which is only a projection of `.odibi/state.db`),
giving the outputs and the lock of an undamaged build.

A deleted or modified export and a view dropped by hand are in test_incremental.py
(`test_deleted_export_is_reexported`, `test_modified_export_is_reexported`,
`test_output_dropped_by_hand_rebuilds_that_node_only`); a garbage `state.db` in
tests/unit/test_state.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_incremental import (
    SHOP_CHECKS, SHOP_TABLES, assert_noop, build, edit_node, executed, odibi, odibi_outputs,
    outcomes, warehouse,
)


def built_shop(shop: Path) -> tuple[bytes, dict, dict[str, bytes]]:
    """Build the shop: (its lock, its outputs, its exports' bytes)."""
    build(shop)
    exports = {p.name: p.read_bytes() for p in sorted((shop / "output").iterdir())}
    return (shop / "odibi.lock").read_bytes(), odibi_outputs(shop, SHOP_TABLES), exports


def build_warned(root: Path) -> tuple[dict, str]:
    """`odibi build --json` (which prints its warnings on stderr): (report, stderr)."""
    r = odibi(root, "build", "--json", "-j", "2")
    assert r.code == 0, r.text
    return json.loads(r.out), r.err


def assert_intact(shop: Path, lock: bytes, outputs: dict, exports: dict[str, bytes]) -> None:
    assert (shop / "odibi.lock").read_bytes() == lock
    assert odibi_outputs(shop, SHOP_TABLES) == outputs
    assert {p.name: p.read_bytes() for p in sorted((shop / "output").iterdir())} == exports
    assert not list(shop.glob(".odibi.lock.*")), "a temp file of the lock was left behind"
    assert_noop(shop)


# -- odibi.lock ----------------------------------------------------------------------------
def _cut(at: str, more: int = 0):
    """Truncate the lock `more` bytes after the first occurrence of `at`."""
    def damage(lock: bytes) -> bytes:
        return lock[:lock.index(at.encode()) + len(at) + more]
    return damage


LOCK_DAMAGE = {
    "empty": (lambda lock: b"", "it is empty"),
    "header only": (_cut("same bytes.\n"), "it has no version"),
    "inside a string": (_cut('fingerprint = "', 3), "it does not parse (Unterminated string"),
    "inside a table name": (_cut("[nodes.stg_"), "it does not parse ("),
    "half the file": (lambda lock: lock[:len(lock) // 2 + 7], "it does not parse ("),
    "binary garbage": (lambda lock: bytes(range(256)) * 8, "it is unreadable"),
    "text garbage": (lambda lock: b"all work and no play\n" * 50, "it does not parse ("),
    "merge conflict": (lambda lock: lock.replace(b"version = 1\n",
                                                 b"<<<<<<< HEAD\nversion = 1\n=======\n"),
                       "it does not parse ("),
    "old version": (lambda lock: lock.replace(b"version = 1\n", b"version = 0\n"),
                    "lock version 0 is not 1"),
}


@pytest.mark.parametrize("damage", list(LOCK_DAMAGE))
def test_a_damaged_lock_is_reported_and_rewritten_and_nothing_runs(shop: Path,
                                                                   damage: str) -> None:
    lock, outputs, exports = built_shop(shop)
    how, problem = LOCK_DAMAGE[damage]
    (shop / "odibi.lock").write_bytes(how(lock))

    report, err = build_warned(shop)
    assert outcomes(report) == {}, report
    assert f"warning: odibi.lock was unreadable ({problem}" in err, err
    assert "rewrote it from the build state" in err
    assert "Traceback" not in err
    assert_intact(shop, lock, outputs, exports)


def test_a_lock_damaged_during_a_build_that_changes_something_is_reported(shop: Path) -> None:
    lock, _, _ = built_shop(shop)
    (shop / "odibi.lock").write_bytes(lock[:len(lock) // 3])
    edit_node(shop, "daily_revenue", "round(sum(amount), 2)", "round(sum(amount), 1)")
    report, err = build_warned(shop)
    assert executed(report) == {"daily_revenue"}
    assert "warning: odibi.lock was unreadable (it does not parse (" in err, err
    # the rewritten lock is the whole lock: an edit of daily_revenue changes its entry only
    assert (shop / "odibi.lock").read_text().count("\n[nodes.") == lock.decode().count(
        "\n[nodes.")


# -- the warehouse ---------------------------------------------------------------------------
def test_a_deleted_warehouse_is_reported_and_everything_it_held_is_rebuilt(shop: Path) -> None:
    lock, outputs, exports = built_shop(shop)
    (shop / ".odibi" / "warehouse.duckdb").unlink()

    report, err = build_warned(shop)
    assert (f"warning: the warehouse .odibi/warehouse.duckdb is missing: the "
            f"{len(SHOP_TABLES)} nodes stored in it are rebuilt") in err, err
    assert executed(report) == set(SHOP_TABLES)
    # the checks read nothing new: the rebuilt outputs are the same
    assert {n: o for n, o in outcomes(report).items() if n in SHOP_CHECKS} == \
        {n: "cut off" for n in SHOP_CHECKS}
    assert_intact(shop, lock, outputs, exports)


def test_a_garbage_warehouse_is_moved_aside_and_everything_is_rebuilt(shop: Path) -> None:
    lock, outputs, exports = built_shop(shop)
    garbage = b"not a database\x00" * 1000
    (shop / ".odibi" / "warehouse.duckdb").write_bytes(garbage)

    r = odibi(shop, "explain")  # a read-only command moves nothing
    assert r.code == 0, r.text
    assert "warning: the warehouse warehouse.duckdb is not a DuckDB database; treating its " \
           "outputs as missing" in r.err, r.err
    assert (shop / ".odibi" / "warehouse.duckdb").read_bytes() == garbage

    report, err = build_warned(shop)
    assert "warning: the warehouse was not a DuckDB database; moved it to " \
           "warehouse.duckdb.corrupt-" in err, err
    assert err.count("warning:") == 1, err
    assert executed(report) == set(SHOP_TABLES)
    (aside,) = (shop / ".odibi").glob("warehouse.duckdb.corrupt-*")
    assert aside.read_bytes() == garbage  # kept for whoever wants to look at it
    assert_intact(shop, lock, outputs, exports)


def test_a_store_table_dropped_by_hand_is_reported_and_only_its_node_rebuilt(
        shop: Path) -> None:
    lock, outputs, exports = built_shop(shop)
    with warehouse(shop, read_only=False) as con:
        (table,) = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = "
                               "'odibi_store' AND table_name LIKE 'stg_customers__%'").fetchone()
        con.execute(f'DROP TABLE odibi_store."{table}"')

    report, err = build_warned(shop)
    assert "warning: 1 stored output is missing from the warehouse (stg_customers): " \
           "rebuilt" in err, err
    assert executed(report) == {"stg_customers"}
    assert_intact(shop, lock, outputs, exports)
