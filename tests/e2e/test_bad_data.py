"""Data (and user code) that fails at run time (issue #9, "Bad input"): exit 1, a message
that names the node and what went wrong, no traceback, and nothing lost: the failing
node's previous output, its dependants' outputs and exports, and its odibi.lock entry stay
as the last good build left them; fixing the data builds it again. (Project mistakes, which
exit 2 before anything runs, are the corpus in tests/fixtures/bad/.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import write_files
from tests.e2e.test_incremental import (
    assert_noop, build, odibi, odibi_outputs, warehouse, write_later,
)
from tests.e2e.test_executor import read_lock

GOOD = "id,s\n1,10\n2,20\n"
T_PY = '''
import pandas as pd


def f(src):
    if (src["s"].astype(str) == "boom").any():
        raise ValueError("boom in the data")
    if (src["s"].astype(str) == "none").any():
        return 5
    return src.assign(n=src["s"].astype(int))
'''


def project(root: Path, mid: str, source: str = "src.csv") -> Path:
    fmt = source.rsplit(".", 1)[1]
    return write_files(root, {
        "odibi.yaml": "project: bad_data\n"
                      "connections:\n"
                      "  raw: {type: local, base_path: data}\n"
                      "  out: {type: local, base_path: out}\n"
                      "nodes:\n"
                      "  - name: src\n"
                      f"    read: {{connection: raw, path: {source}, format: {fmt}}}\n"
                      "    contracts: [row_count > 0]\n"
                      f"  - name: mid\n{mid}\n"
                      "  - name: leaf\n"
                      "    sql: SELECT sum(n) AS total FROM mid\n"
                      "    write: {connection: out, path: leaf.csv}\n"
                      "checks:\n"
                      "  - name: small\n"
                      "    assert: row_count(mid) < 5\n"
                      "    on_fail: halt\n",
        "t.py": T_PY,
        "data/src.csv": GOOD,
    })


SQL_MID = """\
    sql: SELECT id, CAST(s AS INTEGER) AS n FROM src
    validate: [unique(id)]"""
PY_MID = """\
    python: t:f"""

# name: (mid, bad source text, the failing node, what its message says); the nodes after
# a failing node keep their outputs, but a check fails after the nodes it reads were built
CASES = {
    "a value that does not cast": (SQL_MID, "id,s\n1,10\n2,x\n", "mid",
                                   "Could not convert string 'x' to INT32"),
    "a contract on the data read": (SQL_MID, "id,s\n", "src",
                                    "row_count > 0 failed on src: row_count = 0"),
    "a validation of the output": (SQL_MID, "id,s\n1,10\n1,20\n", "mid", "unique(id)"),
    "a halting check": (SQL_MID, "id,s\n" + "".join(f"{i},{i}\n" for i in range(9)), "small",
                        "row_count(mid) < 5"),
    "a Python function that raises": (PY_MID, "id,s\n1,boom\n", "mid",
                                      "ValueError: boom in the data"),
    "a Python function that returns no frame": (PY_MID, "id,s\n1,none\n", "mid",
                                                "must return a pandas DataFrame, returned int"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_data_that_fails_at_run_time_exits_1_and_loses_nothing(tmp_path: Path,
                                                               case: str) -> None:
    mid, bad, failing, message = CASES[case]
    root = project(tmp_path / "p", mid)
    build(root)
    outputs = odibi_outputs(root, ["src", "mid", "leaf"])
    export = (root / "out" / "leaf.csv").read_bytes()
    lock = read_lock(root)["nodes"]

    write_later(root / "data" / "src.csv", bad)
    r = odibi(root, "build", "-j", "2")
    assert r.code == 1, r.text
    assert "Traceback" not in r.text
    assert failing in r.text and message in r.text, r.text
    # the failing node and everything after it are as the last good build left them
    after = odibi_outputs(root, ["src", "mid", "leaf"])
    kept = {"src": ["src", "mid", "leaf"], "mid": ["mid", "leaf"], "small": []}[failing]
    assert {n: after[n] for n in kept} == {n: outputs[n] for n in kept}
    if "leaf" in kept:  # (leaf may run alongside a check: a halt stops what had not started)
        assert (root / "out" / "leaf.csv").read_bytes() == export
    now = read_lock(root)["nodes"]
    assert {n: now[n] for n in kept} == {n: lock[n] for n in kept}
    # it fails the same way until the data is fixed; then everything is as before
    assert odibi(root, "build").code == 1
    write_later(root / "data" / "src.csv", GOOD)
    build(root)
    assert_noop(root)  # (which also repoints the views of a build that only restored)
    assert odibi_outputs(root, ["src", "mid", "leaf"]) == outputs
    assert (root / "out" / "leaf.csv").read_bytes() == export


def test_a_source_file_that_is_not_what_its_format_says_fails_its_node(tmp_path: Path) -> None:
    root = project(tmp_path / "p", SQL_MID, source="src.parquet")
    (root / "data" / "src.csv").unlink()
    r = odibi(root, "build")  # (no parquet file yet: a project mistake, exit 2)
    assert r.code == 2 and "src.parquet" in r.err, r.text
    write_later(root / "data" / "src.parquet", "id,s\n1,10\n")
    r = odibi(root, "build")
    assert r.code == 1, r.text
    assert "Traceback" not in r.text and "failed src" in r.text, r.text
    assert not (root / "out").exists()


def test_a_project_file_that_is_not_utf8_is_a_located_error(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "odibi.yaml").write_bytes(b"project: p\nnodes:\n  - name: a\n"
                                      b"    sql: SELECT 1 AS \xff\xfe\n")
    r = odibi(root, "build")
    assert r.code == 2, r.text
    assert r.err.startswith(f"{root / 'odibi.yaml'}:4:") or r.err.startswith("odibi.yaml:4:"), \
        r.err
    assert "not valid UTF-8" in r.err and "Traceback" not in r.text
    assert sorted(p.name for p in root.iterdir()) == ["odibi.yaml"]


# README, "Reader options": a CRLF file to which a row was appended with `echo row >> file`
# (so its last line ends in LF alone). DuckDB's reader refuses it by default: a small file
# while sniffing its dialect, one longer than the sniffer's sample (20,480 rows) on the row
# itself (naming `new_line` does not help); `strict_mode: false`, passed through to read_csv,
# reads every row, with no '\r'.
@pytest.mark.parametrize("rows", [2, 30_000])
def test_a_crlf_file_with_a_row_appended_by_echo_reads_with_strict_mode_off(
        tmp_path: Path, rows: int) -> None:
    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: crlf\n"
                      "connections:\n"
                      "  raw: {type: local, base_path: data}\n"
                      "nodes:\n"
                      "  - name: raw_orders\n"
                      "    read: {connection: raw, path: orders.csv}\n"
                      "  - name: per_customer\n"
                      "    sql: SELECT customer, count(*) AS n FROM raw_orders GROUP BY customer\n",
    })
    crlf = "order_id,amount,customer\r\n" + "".join(
        f"{i},{i}.5,c{i % 3}\r\n" for i in range(1, rows + 1))
    (root / "data").mkdir()
    (root / "data" / "orders.csv").write_bytes(crlf.encode())
    with open(root / "data" / "orders.csv", "a") as f:  # echo 999999,7.25,late >> orders.csv
        f.write("999999,7.25,late\n")

    r = odibi(root, "build")
    assert r.code == 1, r.text
    first = ("Error when sniffing file" if rows < 20_480
             else "The CSV Parser state machine reached an invalid state")
    assert f"failed raw_orders: Invalid Input Error: {first}" in r.err, r.err
    assert "Disable the parser's strict mode (strict_mode=false)" in r.err
    assert "Traceback" not in r.text

    # naming the line ending does not help
    yaml_path = root / "odibi.yaml"
    plain = yaml_path.read_text()
    yaml_path.write_text(plain.replace("path: orders.csv}",
                                       "path: orders.csv, options: {new_line: '\\r\\n'}}"))
    r = odibi(root, "build")
    assert r.code == 1 and f"failed raw_orders: Invalid Input Error: {first}" in r.err, r.text

    yaml_path.write_text(plain.replace(
        "path: orders.csv}",
        "path: orders.csv, options: {delim: ',', header: true, strict_mode: false}}"))
    build(root)
    with warehouse(root) as con:
        assert con.execute("SELECT count(*), count(*) FILTER (WHERE customer LIKE '%\r%'), "
                           "max(amount) FILTER (WHERE order_id <= 3) FROM raw_orders"
                           ).fetchone() == (rows + 1, 0, min(rows, 3) + 0.5)
        assert con.execute("SELECT amount, customer FROM raw_orders WHERE order_id = 999999"
                           ).fetchall() == [(7.25, "late")]
        assert con.execute("SELECT n FROM per_customer WHERE customer = 'late'"
                           ).fetchall() == [(1,)]
        assert con.execute("SELECT typeof(order_id), typeof(amount) FROM raw_orders LIMIT 1"
                           ).fetchone() == ("BIGINT", "DOUBLE")

    # the options are part of the node's fingerprint: changing one rebuilds it
    yaml_path.write_text(yaml_path.read_text().replace("delim: ','", "delim: ';'"))
    r = odibi(root, "explain")
    assert re.search(r"^raw_orders +rebuild: config changed: read\.options\.delim ',' -> ';'$",
                     r.out, re.M), r.out
