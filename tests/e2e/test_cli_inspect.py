"""The read-only commands through the real CLI, in process: validate, ls, graph, init, the
global options and exit codes. Run on a copy of examples/shop and, read-only, on the
repository root project (which builds the same shop from examples/shop/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from odibi import __version__
from odibi.state import State
from tests.conftest import REPO, run_cli, write_files

ANSI = re.compile(r"\x1b\[")

SHOP_NODES = [
    "customer_orders", "customer_segments", "daily_revenue", "export_segments",
    "order_payments", "orders_not_lost", "payments_cover_orders", "raw_customers",
    "raw_orders", "raw_payments", "stg_customers", "stg_orders", "stg_payments",
]
SHOP_EDGES = {
    ("raw_customers", "stg_customers"), ("raw_orders", "stg_orders"),
    ("raw_payments", "stg_payments"), ("stg_orders", "daily_revenue"),
    ("stg_orders", "order_payments"), ("stg_payments", "order_payments"),
    ("stg_customers", "customer_orders"), ("order_payments", "customer_orders"),
    ("customer_orders", "customer_segments"), ("customer_segments", "export_segments"),
    ("raw_orders", "orders_not_lost"), ("stg_orders", "orders_not_lost"),
    ("order_payments", "payments_cover_orders"),
}
KINDS = {
    "raw_customers": "read", "raw_orders": "read", "raw_payments": "read",
    "stg_customers": "sql", "stg_orders": "sql", "stg_payments": "sql",
    "order_payments": "sql", "customer_orders": "sql", "daily_revenue": "sql",
    "export_segments": "sql", "customer_segments": "python",
    "orders_not_lost": "check", "payments_cover_orders": "check",
}


@pytest.fixture(params=["shop", "repo"])
def where(request: pytest.FixtureRequest, shop: Path) -> tuple[Path, str]:
    """(project root, directory of its pipeline files relative to the root)."""
    if request.param == "shop":
        return shop, "pipelines"
    return REPO, "examples/shop/pipelines"


def odibi(root: Path, *argv: str):
    return run_cli("-C", str(root), *argv)


# -- validate ------------------------------------------------------------------------------
def _segments_built(root: Path) -> bool:
    """Whether the Python node of the shop was built in `root` (the repository root is a
    project a developer may have built): its schema is then known, and what is below it
    is bound too."""
    state = State(root, create=False)
    try:
        return "customer_segments" in state.records.traces()
    finally:
        state.close()


def test_validate(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "validate")
    assert r.code == 0, r.err
    bound = (["bound 7 SQL nodes to their inputs' columns"] if _segments_built(root) else
             ["bound 6 SQL nodes to their inputs' columns; 1 not checked",
              "note: not checked: export_segments (python node 'customer_segments' has never "
              "been built)"])
    assert r.out.splitlines() == ["ok project shop: 11 nodes (3 read, 7 sql, 1 python), "
                                  "2 checks, 2 pipelines", *bound]
    assert r.err == ""


def test_validate_json(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "--json", "validate")
    assert r.code == 0, r.err
    sql = ["stg_customers", "stg_orders", "stg_payments", "order_payments", "customer_orders",
           "daily_revenue"]
    unchecked = {"export_segments": {"cause": "customer_segments", "why": "has never been built"}}
    if _segments_built(root):
        sql, unchecked = [*sql, "export_segments"], {}
    report = json.loads(r.out)
    assert sorted(report.pop("bound")) == sorted(sql)
    assert report == {"ok": True, "project": "shop", "nodes": 11, "checks": 2,
                      "pipelines": ["marts", "staging"],
                      "kinds": {"sql": 7, "python": 1, "read": 3}, "not_checked": unchecked}


def test_validate_with_a_var_override(shop: Path) -> None:
    assert odibi(shop, "validate", "--var", "min_amount=5").code == 0
    r = odibi(shop, "validate", "--var", "min_amout=5")
    assert r.code == 2
    assert "--var min_amout: no such variable in odibi.yaml" in r.err
    assert "did you mean 'min_amount'?" in r.err


# -- ls --------------------------------------------------------------------------------------
def test_ls_lists_every_node_and_check_sorted(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "ls")
    assert r.code == 0, r.err
    assert r.out.splitlines() == SHOP_NODES
    assert r.err == ""


def test_ls_long(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "ls", "-l")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["node", "kind", "pipeline", "inputs", "tags"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == SHOP_NODES
    for name, line in rows.items():
        assert line.split()[1] == KINDS[name]
    assert re.fullmatch(r"customer_orders\s+sql\s+marts\s+stg_customers, order_payments"
                        r"\s+daily, marts", rows["customer_orders"].rstrip())
    assert re.fullmatch(r"raw_orders\s+read\s+staging\s+staging", rows["raw_orders"].rstrip())


def test_ls_json(where: tuple[Path, str]) -> None:
    root, pipelines = where
    r = odibi(root, "ls", "--json")
    assert r.code == 0, r.err
    items = json.loads(r.out)
    assert [i["name"] for i in items] == SHOP_NODES
    by_name = {i["name"]: i for i in items}
    assert by_name["customer_segments"] == {
        "name": "customer_segments", "kind": "python", "pipeline": "marts",
        "file": f"{pipelines}/marts.yaml", "depends_on": ["customer_orders"],
        "tags": ["daily", "marts"], "description": "VIP / regular / dormant, computed in pandas.",
    }
    assert by_name["raw_orders"]["depends_on"] == []
    assert by_name["raw_orders"]["description"] is None
    assert sorted(by_name["orders_not_lost"]["depends_on"]) == ["raw_orders", "stg_orders"]
    edges = {(d, i["name"]) for i in items for d in i["depends_on"]}
    assert edges == SHOP_EDGES


SELECTIONS: list[tuple[tuple[str, ...], list[str]]] = [
    (("stg_orders",), ["stg_orders"]),
    (("tag:daily",), ["customer_orders", "customer_segments", "daily_revenue"]),
    (("+customer_segments",), ["customer_orders", "customer_segments", "order_payments",
                               "raw_customers", "raw_orders", "raw_payments", "stg_customers",
                               "stg_orders", "stg_payments"]),
    (("stg_payments+",), ["customer_orders", "customer_segments", "export_segments",
                          "order_payments", "payments_cover_orders", "stg_payments"]),
    (("stg_orders+1",), ["daily_revenue", "order_payments", "orders_not_lost", "stg_orders"]),
    (("2+customer_orders",), ["customer_orders", "order_payments", "raw_customers",
                              "stg_customers", "stg_orders", "stg_payments"]),
    (("@daily_revenue",), ["daily_revenue", "raw_orders", "stg_orders"]),
    (("pipeline:staging,kind:sql",), ["stg_customers", "stg_orders", "stg_payments"]),
    (("kind:check",), ["orders_not_lost", "payments_cover_orders"]),
    (("raw_*", "export_*"), ["export_segments", "raw_customers", "raw_orders",
                             "raw_payments"]),
    (("raw_* export_*",), ["export_segments", "raw_customers", "raw_orders",
                           "raw_payments"]),
    (("customer_??????",), ["customer_orders"]),
    (("tag:marts,kind:sql", "--exclude", "customer_*"),
     ["daily_revenue", "export_segments", "order_payments"]),
]


@pytest.mark.parametrize(("argv", "expected"), SELECTIONS, ids=[" ".join(s[0]) for s in SELECTIONS])
def test_ls_with_selectors(where: tuple[Path, str], argv: tuple[str, ...],
                           expected: list[str]) -> None:
    root, _ = where
    r = odibi(root, "ls", *argv)
    assert r.code == 0, r.err
    assert r.out.splitlines() == expected


def test_ls_path_selector(where: tuple[Path, str]) -> None:
    root, pipelines = where
    r = odibi(root, "ls", f"path:{pipelines}/staging.yaml")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["raw_customers", "raw_orders", "raw_payments",
                                  "stg_customers", "stg_orders", "stg_payments"]
    r = odibi(root, "ls", f"path:{pipelines}")
    assert r.out.splitlines() == SHOP_NODES


def test_ls_selector_that_matches_nothing_warns(shop: Path) -> None:
    r = odibi(shop, "ls", "tag:nothing")
    assert r.code == 0
    assert r.out == ""
    assert "warning: selector 'tag:nothing' matches no node" in r.err


def test_ls_unknown_node_is_an_error_with_a_caret(shop: Path) -> None:
    r = odibi(shop, "ls", "stg_order")
    assert r.code == 2
    assert r.out == ""
    assert r.err.splitlines() == [
        "error: no node named 'stg_order'",
        "    stg_order",
        "    ^^^^^^^^^",
        "hint: did you mean 'stg_orders'?",
    ]


# -- graph ----------------------------------------------------------------------------------
def test_graph_text(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "graph")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert sorted(line.split()[0] for line in lines) == SHOP_NODES
    seen_edges = set()
    position = {}
    for i, line in enumerate(lines):
        name, kind, *rest = line.split(None, 2)
        position[name] = i
        assert kind == KINDS[name]
        if rest:
            assert rest[0].startswith("<- ")
            seen_edges |= {(d, name) for d in rest[0][3:].split(", ")}
    assert seen_edges == SHOP_EDGES
    for a, b in SHOP_EDGES:  # build order
        assert position[a] < position[b]


def test_graph_dot(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "graph", "--format", "dot")
    assert r.code == 0, r.err
    lines = [line.strip() for line in r.out.splitlines()]
    assert lines[0] == "digraph odibi {"
    assert lines[-1] == "}"
    edges = {tuple(re.fullmatch(r'"(\w+)" -> "(\w+)";', line).groups())  # type: ignore[union-attr]
             for line in lines if "->" in line}
    assert edges == SHOP_EDGES
    assert '"raw_orders" [shape=cylinder];' in lines
    assert '"customer_segments" [shape=component];' in lines
    assert '"orders_not_lost" [shape=diamond];' in lines


def test_graph_mermaid(where: tuple[Path, str]) -> None:
    root, _ = where
    r = odibi(root, "graph", "--format", "mermaid")
    assert r.code == 0, r.err
    lines = [line.strip() for line in r.out.splitlines()]
    assert lines[0] == "flowchart LR"
    edges = {tuple(line.split(" --> ")) for line in lines if "-->" in line}
    assert edges == SHOP_EDGES
    assert "raw_orders[(raw_orders)]" in lines
    assert "customer_segments[[customer_segments]]" in lines
    assert "stg_orders[stg_orders]" in lines
    assert "orders_not_lost{orders_not_lost}" in lines


def test_graph_with_a_selector_keeps_only_edges_inside(shop: Path) -> None:
    r = odibi(shop, "graph", "--format", "mermaid", "stg_orders+1")
    assert r.code == 0, r.err
    edges = {tuple(line.strip().split(" --> ")) for line in r.out.splitlines() if "-->" in line}
    assert edges == {("stg_orders", "daily_revenue"), ("stg_orders", "order_payments"),
                     ("stg_orders", "orders_not_lost")}
    r = odibi(shop, "graph", "customer_orders")
    assert r.out.split() == ["customer_orders", "sql"]


def test_graph_json(shop: Path) -> None:
    r = odibi(shop, "--json", "graph")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert sorted(n["name"] for n in doc["nodes"]) == SHOP_NODES
    assert {(e["from"], e["to"]) for e in doc["edges"]} == SHOP_EDGES


def test_graph_unknown_format_is_a_usage_error(shop: Path) -> None:
    r = odibi(shop, "graph", "--format", "png")
    assert r.code == 2
    assert "invalid choice: 'png'" in r.err


# -- init ---------------------------------------------------------------------------------------
def test_init_creates_a_project_that_validates(tmp_path: Path) -> None:
    r = run_cli("-C", str(tmp_path), "init", "fresh")
    assert r.code == 0, r.err
    root = tmp_path / "fresh"
    assert (root / "odibi.yaml").is_file()
    assert (root / ".gitignore").is_file()
    assert "project: fresh" in (root / "odibi.yaml").read_text()
    assert "created" in r.out
    v = run_cli("-C", str(root), "validate")
    assert v.code == 0, v.err
    assert v.out.splitlines() == [
        "ok project fresh: 5 nodes (2 read, 2 sql, 1 python), 1 check, 1 pipeline",
        "bound 1 SQL node to its inputs' columns; 1 not checked",
        "note: not checked: export_value (python node 'customer_value' has never been built)"]
    ls = run_cli("-C", str(root), "ls")
    assert ls.code == 0 and len(ls.out.splitlines()) >= 3
    # it builds, its contracts, validations and check hold, and a second build does nothing
    built = run_cli("-C", str(root), "--json", "build")
    assert built.code == 0, built.text
    outcomes = {n: v["outcome"] for n, v in json.loads(built.out)["nodes"].items()}
    assert outcomes == {**{n: "built" for n in outcomes if n != "orders_balance"},
                        "orders_balance": "passed"}
    again = run_cli("-C", str(root), "--json", "build")
    assert not any("outcome" in v for v in json.loads(again.out)["nodes"].values())


def test_init_names_the_project_after_the_directory(tmp_path: Path) -> None:
    r = run_cli("-C", str(tmp_path), "init", "2024-sales")
    assert r.code == 0, r.err
    assert "project: p_2024_sales" in (tmp_path / "2024-sales" / "odibi.yaml").read_text()
    assert run_cli("-C", str(tmp_path / "2024-sales"), "validate").code == 0


def test_init_into_an_empty_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run_cli("-C", str(tmp_path), "init", "empty").code == 0
    assert (tmp_path / "empty" / "odibi.yaml").is_file()


def test_init_into_a_non_empty_directory_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    target = write_files(tmp_path / "busy", {"notes.txt": "mine\n"})
    r = run_cli("-C", str(tmp_path), "init", "busy")
    assert r.code == 2
    assert "exists and is not empty" in r.err
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert "Traceback" not in r.err


def test_init_json(tmp_path: Path) -> None:
    r = run_cli("-C", str(tmp_path), "--json", "init", "j")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert "odibi.yaml" in doc["files"]
    assert all((tmp_path / "j" / f).is_file() for f in doc["files"])


# -- global options and exit codes -----------------------------------------------------------
def test_directory_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    r = run_cli("-C", str(tmp_path / "nowhere"), "ls")
    assert r.code == 2
    assert f"-C {tmp_path / 'nowhere'}: no such directory" in r.err
    assert "Traceback" not in r.err


def test_directory_without_a_project_exits_2(tmp_path: Path) -> None:
    r = run_cli("-C", str(tmp_path), "validate")
    assert r.code == 2
    assert f"no odibi.yaml in {tmp_path}" in r.err
    assert "hint: " in r.err and "odibi init DIR" in r.err


def test_no_subcommand_exits_2_with_usage() -> None:
    r = run_cli()
    assert r.code == 2
    assert "usage: odibi" in r.text
    assert "validate" in r.text and "graph" in r.text


def test_help_exits_0() -> None:
    r = run_cli("--help")
    assert r.code == 0
    assert r.out.startswith("usage: odibi")
    assert "exit codes:" in r.out
    sub = run_cli("ls", "--help")
    assert sub.code == 0
    assert "--exclude" in sub.out and "--long" in sub.out


def test_version() -> None:
    r = run_cli("--version")
    assert r.code == 0
    assert r.out.strip() == f"odibi {__version__}"


@pytest.mark.parametrize("argv", [("frobnicate",), ("ls", "--bogus"), ("-j",)])
def test_bad_command_lines_exit_2(argv: tuple[str, ...]) -> None:
    r = run_cli(*argv)
    assert r.code == 2
    assert "usage: odibi" in r.err


def test_global_options_work_after_the_subcommand(shop: Path) -> None:
    r = run_cli("ls", "-C", str(shop), "--json", "stg_orders")
    assert r.code == 0, r.err
    assert [i["name"] for i in json.loads(r.out)] == ["stg_orders"]


# -- colour -------------------------------------------------------------------------------------
def _coloured_commands(shop: Path, *extra: str) -> list[str]:
    outputs = []
    for argv in (("validate",), ("ls", "-l"), ("ls", "stg_order"), ("graph",)):
        r = run_cli("-C", str(shop), *extra, *argv)
        outputs.append(r.out + r.err)
    return outputs


def test_captured_output_has_no_escape_codes(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for text in _coloured_commands(shop):
        assert not ANSI.search(text), repr(text)


def test_no_color_on_a_terminal_has_no_escape_codes(shop: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # FORCE_COLOR makes the output behave as a terminal's would
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert any(ANSI.search(text) for text in _coloured_commands(shop)), \
        "a terminal should get colour"
    monkeypatch.setenv("NO_COLOR", "1")
    for text in _coloured_commands(shop):
        assert not ANSI.search(text), repr(text)
    monkeypatch.delenv("NO_COLOR")
    for text in _coloured_commands(shop, "--no-color"):
        assert not ANSI.search(text), repr(text)


# -- --json errors --------------------------------------------------------------------------------
def test_json_error_for_a_yaml_mistake(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: p\npipelines: [pipelines/*.yaml]\n",
        "pipelines/a.yaml": "pipeline: a\nnodes:\n  - name: x\n    sql: SELECT 1\n"
                            "    sqll: SELECT 2\n",
    })
    r = run_cli("-C", str(root), "--json", "validate")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["error"] == "unknown key 'sqll' in node"
    assert doc["file"].endswith("pipelines/a.yaml")
    assert (doc["line"], doc["col"]) == (5, 5)
    assert doc["hint"] == "did you mean 'sql'?"
    assert "Traceback" not in r.err


def test_json_error_for_sql(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: p\nnodes:\n  - name: x\n    sql: |\n      SELECT *\n"
                      "      FROM nope\n",
    })
    r = run_cli("-C", str(root), "validate", "--json")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["error"] == "node 'x': SQL reads 'nope', which is not a node"
    assert doc["file"].endswith("odibi.yaml")
    assert (doc["line"], doc["col"]) == (6, 12)
    assert doc["node"] == "x"


def test_json_error_for_a_selector(shop: Path) -> None:
    r = odibi(shop, "--json", "ls", "a,,b")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["file"] == "<selector>"
    assert (doc["line"], doc["col"]) == (1, 3)
    assert "a comma needs a selector on both sides" in doc["error"]


def test_json_error_for_a_missing_directory(tmp_path: Path) -> None:
    r = run_cli("-C", str(tmp_path / "nowhere"), "--json", "ls")
    assert r.code == 2
    assert json.loads(r.out) == {"error": f"-C {tmp_path / 'nowhere'}: no such directory"}
