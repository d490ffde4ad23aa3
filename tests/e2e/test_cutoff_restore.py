"""Smarter rebuilds (DESIGN §2-§3): early cutoff, restore on revert, metadata-only
changes, saved plans and gc, on real projects through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.e2e.test_incremental import (
    GEN_CONST,
    GEN_ORDER,
    GEN_PARENTS,
    SHOP_CHECKS,
    SHOP_ORDER,
    SHOP_PARENTS,
    SHOP_TABLES,
    SQL_NODE,
    VAR_NODE,
    VAR_OF,
    assert_noop,
    build,
    closure,
    cutoff_closure,
    edit_node,
    executed,
    explain,
    make_gen,
    new_cut,
    odibi,
    odibi_outputs,
    outcomes,
    write_later,
    reference,
    replace_text,
    summaries,
)


@pytest.mark.parametrize("case", ["gen-version-middle", "gen-version-leaf",
                                  "shop-version-stg_orders", "shop-payments-csv"])
def test_early_cutoff(tmp_path: Path, shop: Path, case: str) -> None:
    """DESIGN §2 'Early cutoff' and §3 status `cut off`: the plan (made before anything runs)
    lists the whole closure, but while the build runs a rebuilt node whose output is
    identical to its previous output does not re-execute the dependants that were waiting
    only on it; and the next build finds them up to date."""
    version = ["config changed: version (unset) -> '2'"]
    if case.startswith("gen"):
        root, order, parents = make_gen(tmp_path / "gen"), GEN_ORDER, GEN_PARENTS
        node, own = SQL_NODE[case.rsplit("-", 1)[1]], version
    else:
        root, order, parents = shop, SHOP_ORDER, SHOP_PARENTS
        node, own = ("stg_orders", version) if case == "shop-version-stg_orders" else \
            ("raw_payments", ["source changed: data/payments.csv (same size)"])

    def edit() -> None:
        if own is version:
            edit_node(root, node, f"- name: {node}\n", f"- name: {node}\n    version: 2\n")
        else:  # a payment's amount: outstanding amounts change, which customer_segments drops
            replace_text(root / "data" / "payments.csv", "5003,1004,paypal,50.44,",
                         "5003,1004,paypal,40.44,")

    tables = [n for n in order if n not in SHOP_CHECKS]  # checks have no output
    build(root)
    before = reference(root, order)
    edit()
    after = reference(root, order)
    plan = explain(root)
    assert {n for n, e in plan.items() if e["status"] == "rebuild"} == \
        closure(parents, order, {node})
    assert summaries(plan[node]) == own
    want = cutoff_closure(parents, order, {node}, before, after)
    report = build(root)
    assert report["ok"] is True
    assert executed(report) == want, (
        f"expected only {sorted(want)} to execute; also ran "
        f"{sorted(executed(report) - want)}, whose inputs' contents did not change")
    # a check that read a changed output ran, with the verdict the reference gives
    assert {n: o for n, o in outcomes(report).items() if n in SHOP_CHECKS and n in want} == \
        {n: after[n] for n in want if n in SHOP_CHECKS}
    assert odibi_outputs(root, tables) == {n: after[n] for n in tables}
    assert_noop(root)




# -- restore on revert -------------------------------------------------------------------------
COUNTING_SEGMENTS = """\
import pathlib

import pandas as pd

CALLS = pathlib.Path(__file__).resolve().parent.parent / "calls.txt"


def segment(customer_orders: pd.DataFrame) -> pd.DataFrame:
    with CALLS.open("a") as f:
        f.write("segment\\n")
    df = customer_orders[["customer_id", "name", "country", "orders", "revenue"]].copy()
    df["segment"] = "regular"
    df.loc[df["revenue"] >= 500.0, "segment"] = "vip"
    df.loc[df["orders"] == 0, "segment"] = "dormant"
    return df.sort_values("customer_id").reset_index(drop=True)
"""


def calls(root: Path) -> int:
    path = root / "calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_revert_restores_without_running_anything(shop: Path) -> None:
    """Edit a SQL, build, revert it, build: the revert runs nothing (the Python node that
    counts its calls is not called) and every output equals the original build."""
    write_later(shop / "transforms" / "segments.py", COUNTING_SEGMENTS)
    build(shop)
    original = odibi_outputs(shop, SHOP_TABLES)
    exports = {p.name: p.read_bytes() for p in (shop / "output").iterdir()}
    assert calls(shop) == 1
    edit_node(shop, "stg_orders", "AND amount > ${vars.min_amount}", "AND amount > 100")
    edited = build(shop)
    assert "customer_segments" in executed(edited)
    assert calls(shop) == 2
    edit_node(shop, "stg_orders", "AND amount > 100", "AND amount > ${vars.min_amount}")
    plan = explain(shop)
    changed = {n for n, e in plan.items() if e["status"] != "up-to-date"}
    assert changed == closure(SHOP_PARENTS, SHOP_ORDER, {"stg_orders"})
    assert {plan[n]["status"] for n in changed} == {"restore"}
    # a revert reads as one: the headline says what came back, the evidence what changed
    assert summaries(plan["stg_orders"])[:2] == [
        "a stored version matches (sql, var min_amount = 0 as in an earlier build)",
        "sql changed"]
    assert summaries(plan["customer_orders"])[0] == \
        "a stored version matches (upstream order_payments as in an earlier build)"
    r = odibi(shop, "explain")
    assert r.out.splitlines()[-1] == f"0 to run, {len(changed)} to restore, " \
        f"{len(plan) - len(changed)} up to date"
    assert "restore: a stored version matches (sql, var min_amount = 0 as in an earlier " \
        "build)" in r.out
    report = build(shop)
    assert executed(report) == set()
    assert {n for n, o in outcomes(report).items() if o == "restored"} == changed
    assert calls(shop) == 2, "the revert ran the Python node"
    assert odibi_outputs(shop, SHOP_TABLES) == original
    assert {p.name: p.read_bytes() for p in (shop / "output").iterdir()} == exports
    assert_noop(shop)


def show(root: Path, node: str) -> tuple[list[str], list[dict]]:
    r = odibi(root, "show", node, "--limit", "100000", "--json")
    assert r.code == 0, r.text
    data = json.loads(r.out)
    return data["columns"], sorted(data["data"], key=lambda row: json.dumps(row, sort_keys=True))


def test_a_build_that_only_restores_leaves_the_warehouse_closed_and_nothing_reads_stale_data(
        tmp_path: Path) -> None:
    """A revert whose closure exports nothing is recorded in the state without opening the
    warehouse (that is what makes it instant). Everything that reads data must still see
    the restored versions: `odibi show`, a node rebuilt by a later build on top of a
    restored one, and the warehouse's own views as soon as a build or gc opens it."""
    root = make_gen(tmp_path / "gen")
    node = SQL_NODE["middle"]
    below = closure(GEN_PARENTS, GEN_ORDER, {node})
    leaf = next(n for n in reversed(GEN_ORDER) if n in below and n != node)
    build(root)
    original = odibi_outputs(root, GEN_ORDER)
    shown_before = {n: show(root, n) for n in (node, leaf)}
    old = f"WHERE v > {GEN_CONST[node]}"
    edit_node(root, node, old, f"WHERE v > {new_cut(node)}")
    build(root)
    assert odibi_outputs(root, [node]) != {node: original[node]}  # the edit changed it
    edit_node(root, node, f"WHERE v > {new_cut(node)}", old)
    warehouse = root / ".odibi" / "warehouse.duckdb"
    stamp = (warehouse.stat().st_size, warehouse.stat().st_mtime_ns)
    report = build(root)
    assert executed(report) == set()
    assert {n for n, o in outcomes(report).items() if o == "restored"} == below
    assert (warehouse.stat().st_size, warehouse.stat().st_mtime_ns) == stamp, \
        "a restore-only build wrote to the warehouse"
    assert {n: show(root, n) for n in (node, leaf)} == shown_before
    # a later build that does run something reads the restored versions, not the edit's
    edit_node(root, leaf, f"- name: {leaf}\n", f"- name: {leaf}\n    version: 2\n")
    report = build(root)
    assert executed(report) == {leaf}
    assert odibi_outputs(root, GEN_ORDER) == original
    assert odibi_outputs(root, GEN_ORDER) == {n: v for n, v in reference(root, GEN_ORDER).items()
                                              if n in GEN_ORDER}
    assert_noop(root)
    # the edit again (and the leaf as it was then): every version is stored, restored the
    # same way; then even a build with nothing to do points the warehouse's views at them
    # (for whoever reads the warehouse directly)
    edit_node(root, leaf, f"- name: {leaf}\n    version: 2\n", f"- name: {leaf}\n")
    edit_node(root, node, old, f"WHERE v > {new_cut(node)}")
    report = build(root)
    assert executed(report) == set() and node in outcomes(report)
    edited = {n: v for n, v in reference(root, GEN_ORDER).items() if n in GEN_ORDER}
    assert odibi_outputs(root, GEN_ORDER) != edited  # not yet: the views follow lazily
    assert_noop(root)
    assert odibi_outputs(root, GEN_ORDER) == edited
    assert_noop(root)


HEAVY_IMPORTS = """
import io, sys
from odibi.cli.main import main
code = main(sys.argv[1:], stdout=io.StringIO())
print(code, sorted(m for m in ("duckdb", "pandas", "pyarrow") if m in sys.modules))
"""


def imports_of(*argv: str) -> str:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", HEAVY_IMPORTS, *argv], capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_a_revert_after_a_first_build_needs_neither_duckdb_nor_pandas(tmp_path: Path) -> None:
    """What makes a revert instant: the first build of a project already cached every SQL
    parse (before `.odibi/` existed), so the reverted SQL is not parsed again; and the
    restores touch only the build state. Neither DuckDB nor pandas is even imported."""
    root = make_gen(tmp_path / "gen")
    node = SQL_NODE["middle"]
    old = f"WHERE v > {GEN_CONST[node]}"
    build(root)
    edit_node(root, node, old, f"WHERE v > {new_cut(node)}")
    build(root)
    edit_node(root, node, f"WHERE v > {new_cut(node)}", old)
    assert imports_of("-C", str(root), "explain", "-q") == "0 []"
    assert imports_of("-C", str(root), "build", "-q") == "0 []"
    assert_noop(root)
    assert imports_of("-C", str(root), "build", "-q") == "0 []"  # views synced: nothing left


def test_building_sql_nodes_never_imports_pandas(tmp_path: Path) -> None:
    """pandas costs a command ~0.3 s to import: only Python nodes and `show` need it. A cold
    build, an edit and its rebuild of a project of SQL nodes import DuckDB, never pandas
    (DuckDB 1.x imports it on the first query that has a parameter: odibi passes none)."""
    root = make_gen(tmp_path / "gen")
    node = SQL_NODE["middle"]
    assert imports_of("-C", str(root), "build", "-q") == "0 ['duckdb']"
    edit_node(root, node, f"WHERE v > {GEN_CONST[node]}", f"WHERE v > {new_cut(node)}")
    assert imports_of("-C", str(root), "explain", "-q") == "0 ['duckdb']"  # parses the edit
    assert imports_of("-C", str(root), "build", "-q") == "0 ['duckdb']"
    assert executed(build(root)) == set()


def test_gc_after_a_restore_only_build_leaves_the_views_on_the_restored_versions(
        tmp_path: Path) -> None:
    root = make_gen(tmp_path / "gen")
    node = SQL_NODE["middle"]
    build(root)
    original = odibi_outputs(root, GEN_ORDER)
    build(root, "--var", f"{VAR_OF[VAR_NODE['middle']]}={new_cut(VAR_NODE['middle'])}")
    report = build(root)  # the variable back at its default: restored
    assert executed(report) == set() and outcomes(report)
    r = odibi(root, "gc", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["dropped"]  # the overridden versions, no longer pointed at
    assert odibi_outputs(root, GEN_ORDER) == original
    assert_noop(root)


def test_equivalent_sql_rebuilds_that_node_only_and_cuts_off_its_dependants(shop: Path) -> None:
    build(shop)
    before = odibi_outputs(shop, SHOP_TABLES)
    # the same rows, by another WHERE: payments are never negative, never exactly zero
    edit_node(shop, "stg_payments", "WHERE amount > 0", "WHERE NOT (amount <= 0)")
    report = build(shop)
    assert executed(report) == {"stg_payments"}
    downstream = closure(SHOP_PARENTS, SHOP_ORDER, {"stg_payments"}) - {"stg_payments"}
    assert {n for n, o in outcomes(report).items() if o == "cut off"} == downstream
    assert odibi_outputs(shop, SHOP_TABLES) == before
    assert_noop(shop)


# -- metadata-only changes ----------------------------------------------------------------------
def test_description_and_tags_run_nothing(shop: Path) -> None:
    build(shop)
    edit_node(shop, "stg_orders", "description: Orders that count as sales",
              "description: Sales orders")
    edit_node(shop, "customer_orders", "tags: [daily]", "tags: [daily, finance]")
    assert_noop(shop)


def test_a_validation_change_revalidates_without_recomputing(shop: Path) -> None:
    build(shop)
    edit_node(shop, "stg_orders", "- all(amount > 0)", "- all(amount >= 0)")
    plan = explain(shop)
    assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {"stg_orders": "revalidate"}
    assert summaries(plan["stg_orders"]) == ["validations changed"]
    report = build(shop)
    assert executed(report) == set()
    assert report["nodes"]["stg_orders"]["status"] == "revalidate"
    assert outcomes(report) == {"stg_orders": "revalidated"}  # the rules ran on its output
    assert_noop(shop)


def test_a_write_change_re_exports_only(shop: Path) -> None:
    build(shop)
    edit_node(shop, "daily_revenue", "path: daily_revenue.csv", "path: revenue_by_day.csv")
    plan = explain(shop)
    assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {"daily_revenue": "re-export"}
    report = build(shop)
    assert outcomes(report) == {"daily_revenue": "exported"}
    assert (shop / "output" / "revenue_by_day.csv").read_bytes() == \
        (shop / "output" / "daily_revenue.csv").read_bytes()
    assert_noop(shop)


# -- saved plans --------------------------------------------------------------------------------
def test_a_saved_plan_runs_exactly_what_it_says(shop: Path, tmp_path: Path) -> None:
    build(shop)
    edit_node(shop, "stg_customers", "lower(trim(email))", "lower(email)")
    saved = tmp_path / "plan.json"
    r = odibi(shop, "plan", "-o", str(saved), "stg_customers+")
    assert r.code == 0, r.text
    doc = json.loads(saved.read_text())
    assert {n["node"]: n["status"] for n in doc["nodes"] if n["status"] != "up-to-date"} == {
        "stg_customers": "rebuild", "customer_orders": "rebuild",
        "customer_segments": "rebuild", "export_segments": "rebuild"}
    # the targets' ancestors were checked too (they are up to date)
    assert {"raw_customers", "stg_payments", "order_payments"} <= {n["node"] for n in doc["nodes"]}
    # something outside what the plan considered changes: still exactly the plan
    edit_node(shop, "daily_revenue", "count(*) AS orders", "count(*) AS n_orders")
    report = build(shop, "--plan", str(saved))
    ran = {n for n, o in outcomes(report).items() if o in ("built", "cut off")}
    assert ran == {"stg_customers", "customer_orders", "customer_segments", "export_segments"}
    assert "daily_revenue" not in report["nodes"]
    # an ancestor of a planned node changes: the plan is out of date
    assert odibi(shop, "plan", "-o", str(saved), "stg_customers+").code == 0
    edit_node(shop, "stg_payments", "WHERE amount > 0", "WHERE amount > 10")
    r = odibi(shop, "build", "--plan", str(saved))
    assert r.code == 2 and "stg_payments: sql changed" in r.err, r.text


def test_a_drifted_saved_plan_is_refused_naming_the_node(shop: Path, tmp_path: Path) -> None:
    build(shop)
    edit_node(shop, "stg_customers", "lower(trim(email))", "lower(email)")
    saved = tmp_path / "plan.json"
    assert odibi(shop, "plan", "-o", str(saved)).code == 0
    lock = (shop / "odibi.lock").read_bytes()
    write_later(shop / "data" / "customers.csv",
                (shop / "data" / "customers.csv").read_text() + "19,Alan Kay,a@k.org,US,2024-05-01\n")
    r = odibi(shop, "build", "--plan", str(saved))
    assert r.code == 2
    assert "Traceback" not in r.text
    assert "raw_customers: source changed: data/customers.csv" in r.err
    assert "is out of date" in r.err
    assert (shop / "odibi.lock").read_bytes() == lock  # nothing ran
    bad = odibi(shop, "build", "--plan", str(saved), "stg_orders")
    assert bad.code == 2 and "--plan runs exactly the saved plan" in bad.err


# -- gc -----------------------------------------------------------------------------------------
def store_tables(root: Path) -> set[str]:
    import duckdb

    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=True)
    try:
        return {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() "
                                          "WHERE schema_name = 'odibi_store'").fetchall()}
    finally:
        con.close()


def test_gc_keeps_what_is_pointed_at_and_a_restore_after_gc_recomputes(shop: Path) -> None:
    build(shop)
    first = store_tables(shop)
    assert len(first) == len(SHOP_TABLES)
    edit_node(shop, "stg_orders", "AND amount > ${vars.min_amount}", "AND amount > 100")
    report = build(shop)
    rebuilt = executed(report) - SHOP_CHECKS.keys()  # the checks that ran store no output
    both = store_tables(shop)
    assert both - first == {t for t in both if t.split("__")[0] in rebuilt} - first
    assert first <= both  # the old versions are kept, for restores
    r = odibi(shop, "gc", "--json")
    assert r.code == 0, r.text
    gc = json.loads(r.out)
    assert gc["freed_bytes"] > 0
    now = store_tables(shop)
    assert len(now) == len(SHOP_TABLES)  # exactly one version per node: the current one
    dropped = {t.split(".", 1)[1].strip('"') for t in gc["dropped"]}
    assert dropped == both - now
    assert {t.split("__")[0] for t in dropped} == rebuilt  # the replaced versions, only
    assert_noop(shop)  # gc removed nothing in use
    edit_node(shop, "stg_orders", "AND amount > 100", "AND amount > ${vars.min_amount}")
    plan = explain(shop)
    assert plan["stg_orders"]["status"] == "rebuild"  # its old version is gone: recompute
    report = build(shop)
    assert "stg_orders" in executed(report)
    assert odibi_outputs(shop, SHOP_TABLES) == reference(shop, SHOP_TABLES)


def test_gc_keep_n_keeps_earlier_versions_restorable(shop: Path) -> None:
    build(shop)
    edit_node(shop, "stg_payments", "WHERE amount > 0", "WHERE amount > 100")
    build(shop)
    assert odibi(shop, "gc", "--keep", "1").code == 0
    edit_node(shop, "stg_payments", "WHERE amount > 100", "WHERE amount > 0")
    assert explain(shop)["stg_payments"]["status"] == "restore"
    assert executed(build(shop)) == set()


def test_gc_drops_nodes_removed_from_the_project(shop: Path) -> None:
    build(shop)
    text = (shop / "pipelines" / "marts.yaml").read_text()
    start = text.index("  - name: export_segments")
    end = text.index("checks:")
    write_later(shop / "pipelines" / "marts.yaml", text[:start] + text[end:])
    build(shop)
    r = run_cli("-C", str(shop), "gc")
    assert r.code == 0, r.text
    assert "removed nodes: export_segments" in r.out
    assert not any(t.startswith("export_segments__") for t in store_tables(shop))
