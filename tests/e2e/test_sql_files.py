"""`sql: {file: ...}`: a SQL node's statement kept in a .sql file, through the real CLI on
real DuckDB. The file's text is treated exactly as inline SQL (fingerprinted by its parse
tree, substituted, located), and the file is part of what a cached project was made from."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: shop
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        vars:
          min_amount: 0
        pipelines: [pipelines/*.yaml]
    """,
    "data/orders.csv": """
        order_id,customer_id,amount
        1,7,10.0
        2,7,-5.0
        3,8,30.0
        4,9,50.0
    """,
    "pipelines/orders.yaml": """
        pipeline: orders
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv}
          - name: stg_orders
            sql: {file: models/staging/stg_orders.sql}
          - name: totals
            sql: SELECT customer_id, sum(amount) AS total FROM stg_orders GROUP BY customer_id
            write: {connection: out, path: totals.csv}
    """,
    "pipelines/models/staging/stg_orders.sql": """
        -- orders worth keeping
        SELECT order_id, customer_id, amount
        FROM raw_orders
        WHERE amount > ${vars.min_amount}
    """,
}
SQL_FILE = "pipelines/models/staging/stg_orders.sql"


def odibi(root: Path, *argv: str) -> CliResult:
    """Run odibi in `root` (so that messages show project-relative paths)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return run_cli(*argv)
    finally:
        os.chdir(cwd)


def build(root: Path, *argv: str) -> dict[str, str]:
    """Build; the outcome of every node that ran."""
    r = odibi(root, "--json", "build", *argv)
    assert r.code == 0, r.text
    return {n: v["outcome"] for n, v in json.loads(r.out)["nodes"].items() if "outcome" in v}


def totals(root: Path) -> list[str]:
    return sorted((root / "output" / "totals.csv").read_text().splitlines()[1:])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def age(root: Path) -> None:
    """Date every file a minute back, so that stats are trusted (a file written in the last
    seconds is always rehashed)."""
    past = time.time_ns() - 60 * 10**9
    for path in root.rglob("*"):
        os.utime(path, ns=(past, past))


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "shop", PROJECT)
    age(root)
    return root


def test_a_node_whose_sql_is_in_a_file_builds(shop: Path) -> None:
    v = odibi(shop, "validate")
    assert v.code == 0, v.err
    assert "3 nodes (1 read, 2 sql)" in v.out
    assert build(shop) == {"raw_orders": "built", "stg_orders": "built", "totals": "built"}
    assert totals(shop) == ["7,10.0", "8,30.0", "9,50.0"]
    assert build(shop) == {}  # and a second build does nothing


def test_a_comment_only_edit_of_the_file_runs_nothing(shop: Path) -> None:
    build(shop)
    edit(shop / SQL_FILE, "-- orders worth keeping", "-- the orders worth keeping (reviewed)")
    explain = odibi(shop, "explain")
    assert explain.code == 0, explain.text
    assert re.search(rf"stg_orders +up-to-date: sql reformatted only: {SQL_FILE}", explain.out)
    assert "+-- the orders worth keeping (reviewed)" in explain.out
    assert explain.out.rstrip().endswith("0 to run, 3 up to date")
    assert build(shop) == {}


def test_an_edit_of_the_file_rebuilds_it_and_its_dependants_and_explain_names_the_file(
        shop: Path) -> None:
    build(shop)
    edit(shop / SQL_FILE, "WHERE amount > ${vars.min_amount}", "WHERE amount > 20")
    explain = odibi(shop, "explain")
    assert explain.code == 0, explain.text
    out = [line.strip() for line in explain.out.splitlines()]
    assert re.sub(r" +", " ", out[0]) == f"stg_orders rebuild: sql changed: {SQL_FILE}"
    assert "-WHERE amount > ${vars.min_amount}" in out
    assert "+WHERE amount > 20" in out
    assert f"totals <- stg_orders <- sql changed: {SQL_FILE}" in out
    data = json.loads(odibi(shop, "--json", "explain", "stg_orders").out)
    (reason,) = [n["reasons"][0] for n in data["nodes"] if n["node"] == "stg_orders"]
    assert (reason["reason"], reason["subject"]) == ("sql changed", SQL_FILE)
    # the build runs exactly that, says why, and the output follows the file
    assert build(shop) == {"stg_orders": "built", "totals": "built"}
    assert totals(shop) == ["8,30.0", "9,50.0"]
    assert build(shop) == {}


def test_a_same_size_edit_of_a_file_is_seen_once_its_stat_is_trusted(shop: Path) -> None:
    build(shop)  # the files are aged: the cached project trusts their stats
    assert odibi(shop, "explain").out.strip() == "0 to run, 3 up to date"
    edit(shop / SQL_FILE, "amount >", "amount <")  # same size; only the mtime moves
    explain = odibi(shop, "explain")
    assert re.search(rf"stg_orders +rebuild: sql changed: {SQL_FILE}", explain.out), explain.out
    assert build(shop) == {"stg_orders": "built", "totals": "built"}
    assert totals(shop) == ["7,-5.0"]


def test_vars_inside_the_file_are_substituted_and_tracked(shop: Path) -> None:
    build(shop)
    assert build(shop, "--var", "min_amount=20") == {"stg_orders": "built", "totals": "built"}
    assert totals(shop) == ["8,30.0", "9,50.0"]
    edit(shop / "odibi.yaml", "min_amount: 0", "min_amount: 20")
    explain = odibi(shop, "explain")
    assert "0 to run" in explain.out, explain.out  # the var's value is the one last built
    edit(shop / "odibi.yaml", "min_amount: 20", "min_amount: 40")
    explain = odibi(shop, "explain")
    assert re.search(r"stg_orders +rebuild: var changed: min_amount 20 -> 40", explain.out)
    assert build(shop) == {"stg_orders": "built", "totals": "built"}
    assert totals(shop) == ["9,50.0"]


INLINE = """
        pipeline: orders
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv}
          - name: stg_orders
            sql: |
              -- orders worth keeping
              SELECT order_id, customer_id, amount
              FROM raw_orders
              WHERE amount > ${vars.min_amount}
          - name: totals
            sql: SELECT customer_id, sum(amount) AS total FROM stg_orders GROUP BY customer_id
            write: {connection: out, path: totals.csv}
    """


def test_moving_inline_sql_to_a_file_runs_nothing(tmp_path: Path) -> None:
    files = {**PROJECT, "pipelines/orders.yaml": INLINE}
    del files[SQL_FILE]
    shop = write_files(tmp_path / "shop", files)
    build(shop)
    # the same statement, moved to a file: same parse tree, same text: nothing to say
    write_files(shop, {"pipelines/orders.yaml": PROJECT["pipelines/orders.yaml"],
                       SQL_FILE: PROJECT[SQL_FILE]})
    explain = odibi(shop, "explain")
    assert explain.code == 0, explain.text
    assert explain.out.strip() == "0 to run, 3 up to date"
    assert build(shop) == {}
    # and back inline, with other comments: noted as a reformat, still nothing runs
    write_files(shop, {"pipelines/orders.yaml": INLINE.replace("orders worth keeping",
                                                                "kept orders")})
    explain = odibi(shop, "explain")
    assert re.search(r"stg_orders +up-to-date: sql reformatted only", explain.out)
    assert build(shop) == {}


def test_a_deleted_sql_file_is_a_located_error_even_with_a_cached_project(shop: Path) -> None:
    build(shop)
    (shop / SQL_FILE).unlink()
    r = odibi(shop, "build")
    assert r.code == 2
    assert r.err.startswith("pipelines/orders.yaml:6:17: error: node 'stg_orders': sql file "
                            f"not found: {SQL_FILE}")
    assert "Traceback" not in r.err


def test_sql_files_with_sql_syntax_errors_are_located_in_the_file(shop: Path) -> None:
    build(shop)
    edit(shop / SQL_FILE, "FROM raw_orders", "FORM raw_orders")
    r = odibi(shop, "explain")
    assert r.code == 2
    assert r.err.splitlines()[0] == (f"{SQL_FILE}:3:6: error: node 'stg_orders': SQL syntax "
                                     "error at or near \"raw_orders\"")
    assert r.err.splitlines()[1].strip() == "3 | FORM raw_orders"


def test_path_selector_selects_by_the_sql_file(shop: Path) -> None:
    def ls(selector: str) -> list[str]:
        r = odibi(shop, "ls", selector)
        assert r.code == 0, r.text
        return r.out.split()

    assert ls(f"path:{SQL_FILE}") == ["stg_orders"]
    assert ls("path:pipelines/models") == ["stg_orders"]
    assert ls("path:pipelines/models/**/*.sql") == ["stg_orders"]
    assert ls("path:pipelines/orders.yaml") == ["raw_orders", "stg_orders", "totals"]
    assert ls(f"path:{SQL_FILE}+") == ["stg_orders", "totals"]
    listed = json.loads(odibi(shop, "--json", "ls").out)
    assert {d["name"]: d.get("sql_file", "-") for d in listed} == {
        "raw_orders": "-", "stg_orders": SQL_FILE, "totals": None}


def test_file_sql_in_odibi_test(shop: Path) -> None:
    write_files(shop, {"tests/test_stg.yaml": """
        tests:
          - name: drops_small_orders
            node: stg_orders
            given:
              raw_orders:
                rows: [{order_id: 1, customer_id: 7, amount: 10.0}, {order_id: 2, customer_id: 7, amount: -1.0}]
            expect:
              rows: [{order_id: 1, customer_id: 7, amount: 10.0}]
          - name: min_amount_from_the_case
            node: stg_orders
            vars: {min_amount: 15}
            given:
              raw_orders:
                rows: [{order_id: 1, customer_id: 7, amount: 10.0}, {order_id: 2, customer_id: 7, amount: 20.0}]
            expect:
              rows: [{order_id: 2, customer_id: 7, amount: 20.0}]
    """})
    r = odibi(shop, "--json", "test")
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    assert (doc["passed"], doc["failed"]) == (2, 0)
    # the test runs the file as it is now
    edit(shop / SQL_FILE, "WHERE amount > ${vars.min_amount}", "WHERE amount < ${vars.min_amount}")
    assert odibi(shop, "test").code == 1


def test_nodes_in_odibi_yaml_name_files_relative_to_the_project(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": """
            project: p
            nodes:
              - name: one
                sql: {file: models/one.sql}
              - name: two
                sql: {file: './models/../models/two.sql'}
        """,
        "models/one.sql": "SELECT 1 AS x;\n",
        "models/two.sql": "\ufeffSELECT x + 1 AS y FROM one\r\n",  # a BOM, CRLF
    })
    assert build(root) == {"one": "built", "two": "built"}
    show = odibi(root, "show", "two")
    assert show.code == 0 and "2" in show.out.split(), show.text
    edit(root / "models/two.sql", "x + 1", "x + 2")
    explain = odibi(root, "explain")
    assert re.search(r"two +rebuild: sql changed: models/two.sql\n", explain.out), explain.out


def test_a_sql_file_reached_through_a_link_that_leaves_the_project_is_refused(
        shop: Path, tmp_path: Path) -> None:
    outside = write_files(tmp_path / "elsewhere", {"x.sql": "SELECT 1 AS x\n"})
    os.symlink(outside / "x.sql", shop / "pipelines/models/x.sql")
    edit(shop / "pipelines/orders.yaml", "models/staging/stg_orders.sql", "models/x.sql")
    r = odibi(shop, "validate")
    assert r.code == 2
    assert r.err.startswith("pipelines/orders.yaml:6:17: error: node 'stg_orders': sql file "
                            "'models/x.sql' leaves the project directory")
    # a link that stays inside the project is fine
    (shop / "pipelines/models/x.sql").unlink()
    os.symlink(shop / SQL_FILE, shop / "pipelines/models/x.sql")
    assert odibi(shop, "validate").code == 0


def test_a_sql_file_that_is_not_utf8_is_located_at_the_bad_byte(shop: Path) -> None:
    (shop / SQL_FILE).write_bytes(b"SELECT order_id\nFROM raw_orders WHERE x = '\xff'\n")
    r = odibi(shop, "validate")
    assert r.code == 2
    assert r.err.startswith(f"{SQL_FILE}:2:28: error: node 'stg_orders': sql file is not "
                            "valid UTF-8")
    assert not (shop / ".odibi").exists()


def test_init_shows_both_styles_and_its_file_node_follows_the_file(tmp_path: Path) -> None:
    assert run_cli("-C", str(tmp_path), "init", "fresh").code == 0
    root = tmp_path / "fresh"
    pipeline = (root / "pipelines/orders.yaml").read_text()
    assert "sql: {file: sql/clean_orders.sql}" in pipeline
    assert "sql: SELECT * FROM customer_value" in pipeline
    built = build(root)
    assert built["clean_orders"] == "built" and built["export_value"] == "built"
    tested = odibi(root, "test")
    assert tested.code == 0 and "4 passed, 0 failed" in tested.out, tested.text
    edit(root / "pipelines/sql/clean_orders.sql", "amount >", "amount >=")
    explain = odibi(root, "explain", "clean_orders")
    assert re.search(r"clean_orders +rebuild: sql changed: pipelines/sql/clean_orders.sql",
                     explain.out), explain.out


def test_env_in_a_sql_file_is_never_cached_and_its_change_is_seen(
        shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Qx7-region-secret"
    monkeypatch.setenv("ODIBI_REGION", secret)
    edit(shop / SQL_FILE, "WHERE amount", "WHERE length('${env:ODIBI_REGION}') > 3 AND amount")
    assert build(shop) == {"raw_orders": "built", "stg_orders": "built", "totals": "built"}
    assert build(shop) == {}
    monkeypatch.setenv("ODIBI_REGION", secret + "-2")
    explain = odibi(shop, "explain")
    assert re.search(r"stg_orders +rebuild: environment variable changed: ODIBI_REGION",
                     explain.out), explain.out
    assert build(shop) == {"stg_orders": "built", "totals": "cut off"}  # same rows
    for path in (shop / ".odibi").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret.encode() not in (shop / "odibi.lock").read_bytes()
