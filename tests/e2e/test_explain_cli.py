"""`explain`, `build -n`, `build --force`, `ls state:modified` and `show` through the real
CLI, in process, on a copy of examples/shop."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli, write_files

# build order of the shop (topological, ties by name), its two checks included
ORDER = ["raw_customers", "raw_orders", "raw_payments", "stg_customers", "stg_orders",
         "daily_revenue", "orders_not_lost", "stg_payments", "order_payments",
         "customer_orders", "customer_segments", "export_segments", "payments_cover_orders"]
PAYMENTS_DOWNSTREAM = ["order_payments", "customer_orders", "customer_segments",
                       "export_segments"]
PAYMENTS_CHECK = "payments_cover_orders"  # the check below order_payments


def odibi(root: Path, *argv: str) -> CliResult:
    return run_cli("-C", str(root), *argv)


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def squeeze(text: str) -> list[str]:
    """Lines with runs of spaces collapsed (column widths are not what is tested)."""
    return [re.sub(r" +", " ", line.strip()) for line in text.splitlines() if line.strip()]


def build(root: Path, *argv: str) -> CliResult:
    r = odibi(root, "build", "-j", "2", *argv)
    assert r.code == 0, r.text
    return r


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def edit_payments_sql(shop: Path) -> None:
    # changes order_payments and customer_orders; customer_segments reads no payment column,
    # so its output (and export_segments, below it) come out unchanged
    edit(shop / "pipelines/staging.yaml", "WHERE amount > 0\n", "WHERE amount > 100\n")


def started(r: CliResult) -> list[str]:
    """The nodes a build ran, from the line each prints as it starts."""
    return [line.split()[0] for line in lines(r.out) if re.match(r"\w+ +(rebuild|re-export|"
                                                                 r"revalidate|restore):", line)]


# -- explain -----------------------------------------------------------------------------------
def test_explain_before_any_build_says_every_node_is_new(shop: Path) -> None:
    r = odibi(shop, "explain")
    assert r.code == 0 and r.err == ""
    assert squeeze(r.out) == [f"{n} rebuild: new node" for n in ORDER] + ["13 to run, 0 up to date"]
    assert not (shop / "odibi.lock").exists()


def test_explain_after_a_build_has_nothing_to_run(shop: Path) -> None:
    build(shop)
    r = odibi(shop, "explain")
    assert (r.code, r.err) == (0, "")
    assert lines(r.out) == ["0 to run, 13 up to date"]
    named = odibi(shop, "explain", "stg_orders")
    # the node and what it reads were checked
    assert squeeze(named.out) == ["stg_orders up-to-date", "0 to run, 2 up to date"]


def test_explain_node_prints_the_sql_diff(shop: Path) -> None:
    build(shop)
    edit_payments_sql(shop)
    r = odibi(shop, "explain", "stg_payments")
    assert (r.code, r.err) == (0, "")
    assert [line.strip() for line in lines(r.out)] == [
        "stg_payments  rebuild: sql changed",
        "--- last build",
        "+++ now",
        "@@ -1,3 +1,3 @@",
        "SELECT payment_id, order_id, lower(method) AS method, amount, paid_at",
        "FROM raw_payments",
        "-WHERE amount > 0",
        "+WHERE amount > 100",
        "1 to run, 1 up to date",
    ]


def test_explain_all_traces_downstream_nodes_to_the_root_cause(shop: Path) -> None:
    build(shop)
    edit_payments_sql(shop)
    r = odibi(shop, "explain")
    out = squeeze(r.out)
    assert "order_payments rebuild: upstream rebuilt: stg_payments" in out
    assert f"{PAYMENTS_CHECK} rebuild: upstream rebuilt: order_payments" in out
    assert ("export_segments <- customer_segments <- customer_orders <- order_payments "
            "<- stg_payments <- sql changed") in out
    assert out[-1] == "6 to run, 7 up to date"


def test_explain_json_has_the_root_cause_of_a_downstream_node(shop: Path) -> None:
    build(shop)
    edit_payments_sql(shop)
    r = odibi(shop, "--json", "explain")
    assert (r.code, r.err) == (0, "")
    doc = json.loads(r.out)
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert [n["node"] for n in doc["nodes"]] == ORDER
    assert doc["stale_unselected"] == []
    assert {n: v["status"] for n, v in nodes.items() if v["status"] != "up-to-date"} == {
        n: "rebuild" for n in ["stg_payments", *PAYMENTS_DOWNSTREAM, PAYMENTS_CHECK]}
    customer_orders = nodes["customer_orders"]
    assert customer_orders["reasons"] == [{"reason": "upstream rebuilt",
                                           "summary": "upstream rebuilt: order_payments",
                                           "subject": "order_payments"}]
    assert customer_orders["root_cause"] == [
        {"node": "customer_orders", "reason": "upstream rebuilt: order_payments"},
        {"node": "order_payments", "reason": "upstream rebuilt: stg_payments"},
        {"node": "stg_payments", "reason": "sql changed"},
    ]
    (reason,) = nodes["stg_payments"]["reasons"]
    assert reason["summary"] == "sql changed"
    assert "-WHERE amount > 0\n+WHERE amount > 1" in reason["diff"]
    assert nodes["stg_payments"]["root_cause"] == []


def test_explain_of_a_node_whose_upstream_is_stale_runs_the_upstream_too(shop: Path) -> None:
    build(shop)
    edit_payments_sql(shop)
    r = odibi(shop, "explain", "order_payments")
    assert (r.code, r.err) == (0, "")
    out = squeeze(r.out)
    assert out[0] == "stg_payments rebuild: sql changed"
    assert "order_payments rebuild: upstream rebuilt: stg_payments" in out
    assert out[-1] == "2 to run, 3 up to date"
    doc = json.loads(odibi(shop, "--json", "explain", "order_payments").out)
    assert [(n["node"], n["status"], n["target"]) for n in doc["nodes"]
            if n["status"] != "up-to-date"] == [("stg_payments", "rebuild", False),
                                                ("order_payments", "rebuild", True)]
    assert doc["targets"] == ["order_payments"] and doc["stale_unselected"] == []


def test_explain_only_of_a_node_whose_upstream_is_stale_names_it(shop: Path) -> None:
    build(shop)
    edit_payments_sql(shop)
    doc = json.loads(odibi(shop, "--json", "explain", "--only", "order_payments").out)
    assert [(n["node"], n["status"]) for n in doc["nodes"]] == [("order_payments", "up-to-date")]
    assert doc["stale_unselected"] == ["stg_payments"]
    r = odibi(shop, "explain", "--only", "-s", "order_payments")
    assert r.err == ("warning: stg_payments is out of date but left out by --only; what reads "
                     "it is built from its last output\n")


# -- build -n ----------------------------------------------------------------------------------
def test_dry_run_on_a_fresh_project_runs_and_writes_nothing(shop: Path) -> None:
    r = odibi(shop, "build", "-n")
    assert (r.code, r.err) == (0, "")
    assert squeeze(r.out) == [f"{n} rebuild: new node" for n in ORDER] + [
        "13 would run, 0 up to date"]
    assert not (shop / ".odibi" / "warehouse.duckdb").exists()
    assert not (shop / "odibi.lock").exists()
    assert not (shop / "output").exists()


def test_dry_run_after_an_edit_prints_what_would_run_and_runs_nothing(shop: Path) -> None:
    build(shop)
    lock = (shop / "odibi.lock").read_bytes()
    edit_payments_sql(shop)
    r = odibi(shop, "build", "-n")
    assert (r.code, r.err) == (0, "")
    assert squeeze(r.out) == [
        "stg_payments rebuild: sql changed",
        *[f"{n} rebuild: upstream rebuilt: {u}" for n, u in zip(
            PAYMENTS_DOWNSTREAM, ["stg_payments", *PAYMENTS_DOWNSTREAM])],
        f"{PAYMENTS_CHECK} rebuild: upstream rebuilt: order_payments",
        "6 would run, 7 up to date"]
    assert (shop / "odibi.lock").read_bytes() == lock
    # nothing ran: the real build still has them to do (export_segments is cut off: its only
    # input, customer_segments, comes out unchanged). The check starts with customer_orders
    # once order_payments is done, after it: customer_orders is on the longer path.
    r = build(shop)
    assert started(r) == ["stg_payments", "order_payments", "customer_orders", PAYMENTS_CHECK,
                          "customer_segments"]
    assert f"{PAYMENTS_DOWNSTREAM[-1]} cut off: its inputs came out unchanged" in squeeze(r.out)


# -- --force -----------------------------------------------------------------------------------
def test_force_one_node_rebuilds_only_that_node(shop: Path) -> None:
    build(shop)
    r = build(shop, "--force=stg_orders")
    assert squeeze(r.out)[0] == "stg_orders rebuild: forced"
    assert started(r) == ["stg_orders"]
    # its dependants wait to see whether its output changes: it does not, so they are cut off
    assert re.fullmatch(r"done: 1 built, 7 cut off, 5 up to date \(\d+\.\d\ds\)",
                        lines(r.out)[-1])
    assert lines(odibi(shop, "explain").out) == ["0 to run, 13 up to date"]


def test_force_rebuilds_every_selected_node(shop: Path) -> None:
    build(shop)
    r = build(shop, "--force")
    assert sorted(started(r)) == sorted(ORDER)  # each exactly once
    assert all(line.endswith("rebuild: forced") for line in squeeze(r.out)[:-1])
    some = build(shop, "stg_payments+", "--force")
    assert sorted(started(some)) == sorted(["stg_payments", *PAYMENTS_DOWNSTREAM, PAYMENTS_CHECK])
    # (the ancestors they read were checked: up to date)
    assert re.fullmatch(r"done: 5 built, 1 passed, 5 up to date \(\d+\.\d\ds\)",
                        lines(some.out)[-1])


# -- state:modified ----------------------------------------------------------------------------
def test_ls_state_modified_lists_the_edited_node_and_plus_its_descendants(shop: Path) -> None:
    build(shop)
    assert odibi(shop, "ls", "state:modified").out == ""
    edit_payments_sql(shop)
    r = odibi(shop, "ls", "state:modified")
    assert (r.code, r.err) == (0, "")
    assert lines(r.out) == ["stg_payments"]
    plus = odibi(shop, "ls", "state:modified+")
    assert (plus.code, plus.err) == (0, "")
    assert lines(plus.out) == sorted(["stg_payments", *PAYMENTS_DOWNSTREAM,
                                      "payments_cover_orders"])


def test_state_modified_compares_with_the_lock_not_the_build_state(shop: Path) -> None:
    build(shop)
    old_lock = (shop / "odibi.lock").read_text()
    edit_payments_sql(shop)
    build(shop)
    assert lines(odibi(shop, "explain").out) == ["0 to run, 13 up to date"]
    assert lines(odibi(shop, "explain", "state:modified").out) == ["0 to run, 0 up to date"]
    (shop / "odibi.lock").write_text(old_lock)  # e.g. the lock committed on main
    r = odibi(shop, "explain", "state:modified")
    assert (r.code, r.err) == (0, "")
    out = squeeze(r.out)
    chosen = [line.split()[0] for line in out[:-1]]
    assert chosen[0] == "stg_payments"
    assert set(chosen) <= {"stg_payments", *PAYMENTS_DOWNSTREAM}
    assert all(line.endswith(" up-to-date") for line in out[:-1])


def test_build_state_modified_builds_the_edited_node_only(shop: Path) -> None:
    # state:modified is the nodes whose own definition differs from the lock (as in dbt);
    # `state:modified+` adds what depends on them
    build(shop)
    edit_payments_sql(shop)
    r = build(shop, "state:modified")
    assert started(r) == ["stg_payments"]
    assert lines(odibi(shop, "explain").out)[-1] == "5 to run, 8 up to date"


# -- show --------------------------------------------------------------------------------------
def test_show_prints_the_first_rows(shop: Path) -> None:
    build(shop)
    r = odibi(shop, "show", "stg_orders")
    assert (r.code, r.err) == (0, "")
    out = lines(r.out)
    assert out[0] == "stg_orders: 62 rows (first 10)"
    assert out[1].split() == ["order_id", "customer_id", "order_date", "status", "amount"]
    assert len(out) == 12
    assert out[2].split() == ["1002", "4", "2024-06-08", "refunded", "303.53"]
    three = odibi(shop, "--json", "show", "stg_orders", "--limit", "3")
    doc = json.loads(three.out)
    assert doc["rows"] == 62 and len(doc["data"]) == 3
    assert doc["columns"] == ["order_id", "customer_id", "order_date", "status", "amount"]


def test_show_an_unknown_node_exits_2_with_a_did_you_mean(shop: Path) -> None:
    build(shop)
    r = odibi(shop, "show", "nosuch")
    assert (r.code, r.out) == (2, "")
    assert lines(r.err) == ["error: no node named 'nosuch'"]
    typo = odibi(shop, "show", "stg_order")
    assert (typo.code, typo.out) == (2, "")
    assert lines(typo.err) == ["error: no node named 'stg_order'",
                               "hint: did you mean 'stg_orders'?"]


def test_show_before_a_build_says_so(shop: Path) -> None:
    r = odibi(shop, "show", "stg_orders")
    assert (r.code, r.out) == (2, "")
    assert lines(r.err) == ["error: 'stg_orders' has not been built yet",
                            "hint: odibi build stg_orders"]
    assert not (shop / ".odibi").exists()


# -- -s/--select: dbt's name for the positional selector --------------------------------------
@pytest.mark.parametrize("command", [["ls"], ["graph"], ["explain"], ["build", "-n"], ["plan"],
                                     ["test"]])
def test_dash_s_selects_as_the_positional_selector_does(shop: Path, command: list[str]) -> None:
    write_files(shop, {"tests/test_stg.yaml": """
        tests:
          - name: keeps_paid
            node: stg_payments
            given:
              raw_payments:
                rows: [{payment_id: 1, order_id: 1, method: CARD, amount: 5.0, paid_at: 2024-01-01}]
            expect:
              rows: [{payment_id: 1, order_id: 1, method: card, amount: 5.0, paid_at: 2024-01-01}]
          - name: other_node
            node: stg_orders
            given:
              raw_orders:
                rows: [{order_id: 1, customer_id: 1, amount: 0, status: paid, order_date: 2024-01-01}]
            expect:
              rows: []
        """})
    def seen(r: CliResult) -> tuple[int, str, str]:
        return r.code, re.sub(r"\d+\.\d+s", "[TIME]", r.out), r.err

    positional = odibi(shop, *command, "stg_payments+")
    for flag in ("-s", "--select"):
        assert seen(odibi(shop, *command, flag, "stg_payments+")) == seen(positional)
    assert positional.code in (0, 1), positional.text
    assert "stg_payments" in positional.out
    if command[0] in ("ls", "test"):  # (a build also brings the ancestors, stg_orders too)
        assert "stg_orders" not in positional.out


def test_exclude_leaves_a_needed_ancestor_out_and_names_it_if_stale(shop: Path) -> None:
    build(shop)
    edit_payments_sql(shop)
    r = odibi(shop, "build", "order_payments", "--exclude", "stg_payments")
    assert r.code == 0, r.text
    assert r.err == ("warning: stg_payments is out of date but excluded; what reads it is "
                     "built from its last output\n")
    assert started(r) == []  # order_payments reads stg_payments as it is: up to date
    r = odibi(shop, "build", "order_payments")
    assert started(r) == ["stg_payments", "order_payments"]
