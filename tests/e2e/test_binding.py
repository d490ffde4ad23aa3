"""Column binding (issue #15.5) and the DuckDB sandbox (#15.6), through the real CLI.

- `odibi validate` binds every SQL node to its inputs' columns without running anything:
  a typo is an error at its line and column with a did-you-mean, through chains of nodes,
  over csv, parquet and json sources; a Python node's columns come from its last build
  (before that, the SQL below it is "not checked", a note); a second validate binds
  nothing again (DuckDB is not even imported);
- `odibi build` binds the SQL nodes it will run before any of them runs: a typo exits 2
  with the outputs, odibi.lock and the build state untouched;
- no statement reaches a file, a database or an extension odibi did not fingerprint: a
  table of escapes, each refused with a located error (exit 2), nothing read; at run
  time (SQL that could not be bound beforehand) the sandbox fails the node, cleanly;
- read nodes, exports, Python nodes, `show` and `odibi test` work inside the sandbox.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from odibi.state import State
from tests.conftest import REPO, write_files
from tests.e2e.test_bad_projects import snapshot
from tests.e2e.test_executor import odibi

PROJECT = {
    "odibi.yaml": """
        project: b
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: output}
        pipelines: [pipelines/*.yaml]
    """,
    "data/orders.csv": "order_id,customer_id,amount\n1,7,10.5\n2,8,3.0\n3,7,-1.0\n",
    "pipelines/p.yaml": """
        pipeline: p
        nodes:
          - name: raw_orders
            read: {connection: raw, path: orders.csv}
          - name: clean_orders
            sql: |
              SELECT order_id, customer_id, amount
              FROM raw_orders
              WHERE amount > 0
          - name: by_customer
            sql: SELECT customer_id, sum(amount) AS spent FROM clean_orders GROUP BY customer_id
            write: {connection: out, path: by_customer.csv}
    """,
}
TYPO = ("SELECT order_id, customer_id, amount\n", "SELECT order_id, customer_id, amout\n")
SECRET = "s3cr3t-value-42"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return write_files(tmp_path / "b", PROJECT)


def edit(root: Path, old: str, new: str, rel: str = "pipelines/p.yaml") -> None:
    text = (root / rel).read_text()
    assert old in text
    (root / rel).write_text(text.replace(old, new, 1))


def state_of(root: Path) -> tuple[dict[str, str], int]:
    """(node -> fingerprint recorded, number of builds in the history)."""
    state = State(root, create=False)
    try:
        return ({n: t.fingerprint for n, t in state.records.traces().items()}, len(state.history.runs(1000)))
    finally:
        state.close()


def errors(r, root: Path) -> str:
    """What the command printed on stderr, its paths relative to the project root."""
    return r.err.replace(f"{root}/", "")


def heavy_imports(root: Path, *argv: str) -> str:
    """The exit code and the heavy modules an odibi command imported, in a fresh process."""
    code = ("import sys; from odibi.cli.main import main; rc = main(sys.argv[1:]); "
            "print(rc, sorted(m for m in ('duckdb', 'pandas') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, "-C", str(root), *argv],
                       capture_output=True, text=True, cwd=REPO)
    return r.stdout.strip().splitlines()[-1]


# -- validate ------------------------------------------------------------------------------
def test_validate_binds_every_sql_node(proj: Path) -> None:
    r = odibi(proj, "validate")
    assert r.code == 0, r.text
    assert r.out.splitlines()[1] == "bound 2 SQL nodes to their inputs' columns"


def test_a_column_typo_is_an_error_at_its_line_and_column(proj: Path) -> None:
    edit(proj, *TYPO)
    before = snapshot(proj)
    r = odibi(proj, "validate")
    assert r.code == 2, r.text
    assert errors(r, proj).splitlines() == [
        "pipelines/p.yaml:7:37: error: node 'clean_orders': SQL: column 'amout' not found",
        "    7 |       SELECT order_id, customer_id, amout",
        "      |                                     ^^^^^",
        "hint: did you mean 'amount'?"]
    assert snapshot(proj) == before


def test_a_typo_two_nodes_below_the_csv_is_found_from_its_header(proj: Path) -> None:
    edit(proj, "SELECT order_id, customer_id, amount\n",
         "SELECT order_id, customer_id AS client, amount\n")
    r = odibi(proj, "validate")
    assert r.code == 2, r.text
    assert errors(r, proj).startswith("pipelines/p.yaml:11:78: error: node 'by_customer': SQL: column "
                            "'customer_id' not found\n"), r.err
    assert r.err.endswith("hint: did you mean 'order_id'? clean_orders has order_id, client, "
                          "amount\n"), r.err


def test_json_reports_what_was_bound(proj: Path) -> None:
    r = odibi(proj, "--json", "validate")
    assert r.code == 0, r.text
    report = json.loads(r.out)
    assert report["bound"] == ["clean_orders", "by_customer"]
    assert report["not_checked"] == {}


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_sources_give_their_columns(tmp_path: Path, fmt: str) -> None:
    root = write_files(tmp_path / "b", {
        "odibi.yaml": f"""
            project: b
            connections:
              raw: {{type: local, base_path: data}}
            nodes:
              - name: events
                read: {{connection: raw, path: events.{fmt}}}
              - name: daily
                sql: SELECT event_day, count(*) AS n FROM events GROUP BY event_dya
        """})
    (root / "data").mkdir()
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 1 AS id, DATE '2024-01-02' AS event_day) TO "
                f"'{root / 'data' / f'events.{fmt}'}' (FORMAT {fmt})")
    con.close()
    r = odibi(root, "validate")
    assert r.code == 2, r.text
    assert "odibi.yaml:8:63: error: node 'daily': SQL: column 'event_dya' not found" in \
        errors(r, root)
    assert "hint: did you mean 'event_day'?" in r.err
    edit(root, "GROUP BY event_dya", "GROUP BY event_day", "odibi.yaml")
    assert odibi(root, "validate").code == 0


PYTHON = {
    "transforms/__init__.py": "",
    "transforms/t.py": """
        def enrich(clean_orders):
            out = clean_orders.copy()
            out["vip"] = out["amount"] > 5
            return out
    """,
}


def with_python(proj: Path) -> Path:
    write_files(proj, PYTHON)
    text = (proj / "pipelines" / "p.yaml").read_text()
    (proj / "pipelines" / "p.yaml").write_text(text + (
        "  - name: enrich\n"
        "    python: transforms.t:enrich\n"
        "  - name: vips\n"
        "    sql: SELECT order_id FROM enrich WHERE vip\n"))
    return proj


def test_sql_below_a_python_node_never_built_is_not_checked_until_it_is(proj: Path) -> None:
    root = with_python(proj)
    edit(root, "WHERE vip", "WHERE vpi")
    r = odibi(root, "validate")
    assert r.code == 0, r.text
    assert r.out.splitlines()[1:] == [
        "bound 2 SQL nodes to their inputs' columns; 1 not checked",
        "note: not checked: vips (python node 'enrich' has never been built)"]
    edit(root, "WHERE vpi", "WHERE vip")
    assert odibi(root, "build").code == 0
    r = odibi(root, "validate")
    assert r.out.splitlines()[1:] == ["bound 3 SQL nodes to their inputs' columns"]
    edit(root, "WHERE vip", "WHERE vpi")
    r = odibi(root, "validate")
    assert r.code == 2, r.text
    assert "pipelines/p.yaml:16:44: error: node 'vips': SQL: column 'vpi' not found" in \
        errors(r, root)
    assert "hint: did you mean 'vip'?" in r.err
    # the function changed since it was built: what it returns now is not known
    edit(root, 'out["vip"]', 'out["very_important"]', "transforms/t.py")
    r = odibi(root, "validate")
    assert r.code == 0, r.text
    assert "note: not checked: vips (python node 'enrich' changed since its last build)" in r.out


def remembered(root: Path) -> int:
    """How many schemas the build state remembers (of reads and bound SQL nodes)."""
    con = sqlite3.connect(root / ".odibi" / "state.db")
    try:
        return int(con.execute("SELECT count(*) FROM schema_cache").fetchone()[0])
    finally:
        con.close()


def test_a_second_validate_binds_nothing_again(proj: Path) -> None:
    assert odibi(proj, "build").code == 0  # binds (and remembers) every SQL node and read
    assert remembered(proj) == 3
    assert heavy_imports(proj, "validate") == "0 []"
    # an edit that keeps the node's columns: it alone is bound again; by_customer's inputs
    # have the columns they had, so its binding still stands
    edit(proj, "WHERE amount > 0", "WHERE amount >= 0")
    assert odibi(proj, "validate").code == 0
    assert remembered(proj) == 4
    assert odibi(proj, "validate").code == 0
    assert remembered(proj) == 4


# -- build -----------------------------------------------------------------------------------
def test_a_typo_fails_the_build_before_any_node_runs(proj: Path) -> None:
    assert odibi(proj, "build").code == 0
    edit(proj, "WHERE amount > 0", "WHERE amount > 1")  # clean_orders would rebuild...
    edit(proj, "sum(amount) AS spent", "sum(amout) AS spent")  # ...and by_customer fail
    lock = (proj / "odibi.lock").read_bytes()
    outputs = snapshot(proj / "output")
    warehouse = (proj / ".odibi" / "warehouse.duckdb").read_bytes()
    recorded = state_of(proj)
    r = odibi(proj, "build")
    assert r.code == 2, r.text
    assert errors(r, proj).startswith("pipelines/p.yaml:11:34: error: node 'by_customer': SQL: column "
                            "'amout' not found\n"), r.err
    assert "rebuild" not in r.out  # no node started
    assert (proj / "odibi.lock").read_bytes() == lock
    assert snapshot(proj / "output") == outputs
    assert (proj / ".odibi" / "warehouse.duckdb").read_bytes() == warehouse
    assert state_of(proj) == recorded
    assert odibi(proj, "build", "-n").code == 2  # a dry run says so too


def test_a_typo_on_a_first_build_leaves_no_trace(proj: Path) -> None:
    edit(proj, *TYPO)
    before = snapshot(proj)
    r = odibi(proj, "build")
    assert r.code == 2, r.text
    assert "node 'clean_orders': SQL: column 'amout' not found" in r.err
    assert snapshot(proj) == before and not (proj / ".odibi").exists()


def test_a_build_binds_only_the_nodes_it_runs(proj: Path) -> None:
    edit(proj, "sum(amount) AS spent", "sum(amout) AS spent")
    r = odibi(proj, "build", "+clean_orders")  # builds raw_orders and clean_orders only
    assert r.code == 0, r.text
    assert odibi(proj, "build").code == 2


def test_a_noop_build_binds_nothing_and_imports_no_duckdb(proj: Path) -> None:
    assert odibi(proj, "build").code == 0
    assert heavy_imports(proj, "build", "-q") == "0 []"


def test_an_edit_below_an_unchanged_node_binds_on_its_recorded_columns(proj: Path) -> None:
    assert odibi(proj, "build").code == 0
    edit(proj, "sum(amount) AS spent", "max(amount) AS top")
    r = odibi(proj, "--json", "build")
    assert r.code == 0, r.text
    assert [n for n, v in json.loads(r.out)["nodes"].items() if v.get("outcome")] == [
        "by_customer"]
    edit(proj, "max(amount) AS top", "max(amont) AS top")
    r = odibi(proj, "build")
    assert r.code == 2 and "did you mean 'amount'?" in r.err, r.text


# -- the sandbox: escapes ------------------------------------------------------------------
ESCAPES = [  # (SQL, how the error begins, the text its caret is under: None for the value)
    ("SELECT * FROM query('SELECT * FROM read_text(''{secret}'')')",
     "SQL reads the file {secret}, which is not one of its inputs", "{secret}"),
    ("SELECT * FROM query_table('{secret}')",
     "SQL reads the file {secret}, which is not one of its inputs", "{secret}"),
    ("SELECT * FROM parquet_metadata('{secret}')",
     "SQL reads the file {secret}, which is not one of its inputs", "{secret}"),
    ("SELECT * FROM read_text('{secret}')", "SQL reads files directly with read_text()",
     "read_text"),
    ("SELECT * FROM glob('{outside}/*')", "SQL reads files directly with glob()", "glob"),
    ("SELECT * FROM query('COPY (SELECT 42) TO ''{outside}/leak.csv''')",
     "SQL hands query() a statement that is not one SELECT", "query"),
    ("ATTACH '{outside}/db.duckdb'", "SQL must be a single SELECT statement", None),
    ("SELECT * FROM query('ATTACH ''{outside}/db.duckdb''')",
     "SQL hands query() a statement that is not one SELECT", "query"),
    ("INSTALL httpfs", "SQL must be a single SELECT statement", None),
    ("LOAD httpfs", "SQL must be a single SELECT statement", None),
    ("SELECT * FROM query('LOAD httpfs')",
     "SQL hands query() a statement that is not one SELECT", "query"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''{link}'')')",
     "SQL reads the file {link}, which is not one of its inputs", "{link}"),
    ("SELECT * FROM 'data/link.csv'", "SQL reads the file 'data/link.csv' directly",
     "'data/link.csv'"),
    ("SELECT * FROM query_table('orders')", "SQL: Table with name orders does not exist!",
     "orders"),
]


@pytest.fixture
def escape_project(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(f"secret\n{SECRET}\n")

    def make(sql: str) -> tuple[Path, dict[str, str]]:
        root = tmp_path / "p"
        names = {"secret": str(outside / "secret.csv"), "outside": str(outside),
                 "link": str(root / "data" / "link.csv")}
        write_files(root, {
            "odibi.yaml": """
                project: p
                connections:
                  raw: {type: local, base_path: data}
                nodes:
                  - name: orders
                    read: {connection: raw, path: orders.csv}
                  - name: sneaky
                    sql: |
                      SQL
            """.replace("SQL", sql.format(**names)),
            "data/orders.csv": "id,amount\n1,10\n"})
        (root / "data" / "link.csv").symlink_to(outside / "secret.csv")
        return root, names
    return make


@pytest.mark.parametrize("sql,says,caret", ESCAPES, ids=[e[0][:40] for e in ESCAPES])
def test_an_escape_is_refused_where_it_is_written(escape_project, sql: str, says: str,
                                                   caret: str | None) -> None:
    root, names = escape_project(sql)
    before = snapshot(root)
    line = sql.format(**names)
    # the SQL is a block (`sql: |`) on line 9, from column 7; a statement that is not a
    # SELECT at all is reported at the value (line 8, the `|`)
    where = (9, line.index(caret.format(**names)) + 7) if caret else (8, 10)
    for command in ("validate", "build"):
        r = odibi(root, command)
        assert r.code == 2, r.text
        head, excerpt, marks = r.err.splitlines()[:3]
        head = head.removeprefix(f"{root}/")
        assert head.startswith(f"odibi.yaml:{where[0]}:{where[1]}: error: node 'sneaky': "
                               f"{says.format(**names)}"), r.err
        if caret:
            assert excerpt == f"    9 |       {line}"
            assert marks.index("^") == len("    9 | ") + where[1] - 1
        assert SECRET not in r.text and "Traceback" not in r.text
        assert snapshot(root) == before  # nothing written, not even .odibi/
    assert not (Path(names["outside"]) / "leak.csv").exists()


def test_sql_that_could_not_be_bound_is_still_sandboxed_when_it_runs(proj: Path) -> None:
    """SQL below a Python node never built is not checked before the build; at run time
    the sandbox refuses what it reaches: that node fails (exit 1), nothing is read."""
    root = with_python(proj)
    secret = root.parent / "secret.csv"
    secret.write_text(f"secret\n{SECRET}\n")
    edit(root, "SELECT order_id FROM enrich WHERE vip",
         f"SELECT e.order_id, s.* FROM enrich AS e, query('SELECT * FROM read_csv(''{secret}'')')"
         f" AS s")
    r = odibi(root, "--json", "build")
    assert r.code == 1, r.text
    nodes = json.loads(r.out)["nodes"]
    assert nodes["enrich"]["outcome"] == "built"
    assert nodes["vips"]["outcome"] == "failed"
    assert f'Cannot access file "{secret}"' in nodes["vips"]["error"]
    assert "add a read node for that file" in nodes["vips"]["error"]
    assert SECRET not in r.text and "Traceback" not in r.text
    # built now: the next validate binds it, and refuses it where it is written
    r = odibi(root, "validate")
    assert r.code == 2 and f"SQL reads the file {secret}" in r.err, r.text


# -- what works inside the sandbox -------------------------------------------------------------
def test_reads_exports_python_show_and_tests_work_in_the_sandbox(proj: Path) -> None:
    root = with_python(proj)
    text = (root / "pipelines" / "p.yaml").read_text()
    (root / "pipelines" / "p.yaml").write_text(text + (
        "    write:\n"
        "      - {connection: out, path: vips.parquet}\n"
        "      - {connection: out, path: vips.json}\n"
        "  - name: vips_again\n"
        "    read: {connection: out, path: vips.parquet}\n"))
    write_files(root, {"tests/fixtures/orders.csv": "order_id,customer_id,amount\n1,7,10.0\n"
                                                    "2,7,-1.0\n",
                       "tests/test_clean.yaml": """
                           tests:
                             - name: keeps_positive
                               node: clean_orders
                               given: {raw_orders: {file: fixtures/orders.csv}}
                               expect: {rows: [{order_id: 1, customer_id: 7, amount: 10.0}]}
                       """})
    r = odibi(root, "--json", "build")
    assert r.code == 0, r.text
    assert (root / "output" / "by_customer.csv").read_text().splitlines()[0] == \
        "customer_id,spent"
    con = duckdb.connect()
    assert con.execute(f"SELECT order_id FROM '{root / 'output' / 'vips.json'}'").fetchall() \
        == [(1,)]
    con.close()
    assert not list((root / "output").glob(".*odibi-tmp*"))
    show = odibi(root, "show", "vips_again")
    assert show.code == 0 and "order_id" in show.out, show.text
    assert odibi(root, "validate").out.splitlines()[1] == \
        "bound 3 SQL nodes to their inputs' columns"
    t = odibi(root, "test")
    assert t.code == 0, t.text


def test_a_unit_test_of_sql_that_escapes_fails_cleanly(proj: Path) -> None:
    secret = proj.parent / "secret.csv"
    secret.write_text(f"secret\n{SECRET}\n")
    edit(proj, "FROM raw_orders\n", f"FROM raw_orders, query('SELECT * FROM read_csv(''{secret}"
         "'')')\n")
    write_files(proj, {"tests/test_clean.yaml": """
        tests:
          - name: escapes
            node: clean_orders
            given: {raw_orders: {rows: [{order_id: 1, customer_id: 7, amount: 10.0}]}}
            expect: {rows: []}
    """})
    r = odibi(proj, "test")
    assert r.code == 1, r.text
    assert f'Cannot access file "{secret}"' in r.out and "add a read node" in r.out
    assert SECRET not in r.text and "Traceback" not in r.text



def test_no_bind_leaves_a_typo_to_the_run(proj: Path) -> None:
    """`--no-bind` skips the check: the node fails when it runs (exit 1), its upstream is
    built, and `validate --no-bind` does not look at columns at all."""
    edit(proj, "sum(amount) AS spent", "sum(amout) AS spent")
    assert odibi(proj, "validate", "--no-bind").code == 0
    r = odibi(proj, "--json", "build", "--no-bind")
    assert r.code == 1, r.text
    nodes = json.loads(r.out)["nodes"]
    assert nodes["clean_orders"]["outcome"] == "built"
    assert nodes["by_customer"]["outcome"] == "failed"
    assert 'column "amout" not found' in nodes["by_customer"]["error"]


def test_a_read_option_duckdb_cannot_take_is_the_reads_failure_not_odibis(
        tmp_path: Path) -> None:
    """A YAML date as a read option (`dateformat: 2024-01-01`): binding cannot read the
    file, says so, and the build fails that node (exit 1), as with --no-bind; never an
    internal error."""
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: d\nconnections:\n  raw: {type: local, base_path: data}\n"
                      "nodes:\n  - name: a\n    read: {connection: raw, path: a.csv, "
                      "options: {dateformat: 2024-01-01}}\n  - name: b\n"
                      "    sql: SELECT * FROM a\n",
        "data/a.csv": "x\n1\n"})
    r = odibi(root, "validate")
    assert r.code == 0, r.text
    assert "read node 'a' cannot be read: cannot pass datetime.date(2024, 1, 1) to DuckDB" \
        in r.text
    for argv in ((), ("--no-bind",)):
        r = odibi(root, "build", "--json", *argv)
        assert r.code == 1 and "Traceback" not in r.text, r.text
        nodes = json.loads(r.out)["nodes"]
        assert (nodes["a"]["outcome"], nodes["b"]["outcome"]) == ("failed", "blocked")
