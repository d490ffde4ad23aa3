"""odibi.lock: deterministic, sorted TOML that tomllib reads back; written only when it
changes; a garbage or old lock is reported, never trusted."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odibi.lockfile import HEADER, LOCK_FILE, check, read_entries, render, write_if_changed
from odibi.ids import Digest, NodeId, OutputRef
from odibi.state import Export, Trace, TraceParts


def trace(fp: str, kind: str = "sql", *, config: dict[str, str] | None = None,
          vars: dict[str, str] | None = None, sources: dict[str, list[object]] | None = None,
          upstream: dict[str, str] | None = None, output: str | None = "out",
          rows: int | None = 3, schema: tuple[str, ...] = ("id BIGINT",)) -> Trace:
    parts = {"logic": f"logic-{fp}", "config": config or {}, "vars": vars or {},
             "sources": sources or {}, "upstream": upstream or {}, "scheme": 1}
    return Trace(fingerprint=Digest(fp), kind=kind, parts=TraceParts.from_dict(parts),
                 stored=OutputRef(NodeId("t"), fp),
                 output=Digest(output) if output else None, rows=rows, schema=schema,
                 exports=(Export("/home/me/shop/output/x.csv", 10, 123456789, Digest("e")),),
                 write_key=Digest("w"), validate_key=Digest("v"), sql_text="SELECT 1",
                 text_digest=Digest("t"))


TRACES = {
    NodeId("stg_orders"): trace("fp_stg", vars={"min_amount": "0", "currency": '"EUR"'},
                                upstream={"raw_orders": "fp_raw"}),
    NodeId("raw_orders"): trace("fp_raw", "read", sources={"raw:orders.csv": ["d_orders", 12100],
                                                           "raw:a b.csv": ["d_ab", 5]},
                                config={"read.path": '"orders.csv"', "read.options.delim": '";"',
                                        "read.format": '"csv"', "read.options.header": "true"},
                                output=None, rows=None, schema=()),
    NodeId("Zeta"): trace("fp_zeta", "python", config={"python": '"t.v:score"'},
                          upstream={"stg_orders": "fp_stg", "raw_orders": "fp_raw"}),
}

EXPECTED = HEADER + '''version = 1
project = "shop"

[nodes.Zeta]
kind = "python"
fingerprint = "fp_zeta"
logic = "logic-fp_zeta"
config.python = "t.v:score"
upstream.raw_orders = "fp_raw"
upstream.stg_orders = "fp_stg"
output = "out"
rows = 3
schema = ["id BIGINT"]

[nodes.raw_orders]
kind = "read"
fingerprint = "fp_raw"
logic = "logic-fp_raw"
config."read.format" = "csv"
config."read.options.delim" = ";"
config."read.options.header" = true
config."read.path" = "orders.csv"
sources."raw:a b.csv" = "d_ab"
sources."raw:orders.csv" = "d_orders"

[nodes.stg_orders]
kind = "sql"
fingerprint = "fp_stg"
logic = "logic-fp_stg"
vars.currency = "EUR"
vars.min_amount = 0
upstream.raw_orders = "fp_raw"
output = "out"
rows = 3
schema = ["id BIGINT"]
'''


def read_fingerprints(root: Path) -> tuple[dict[str, str], str | None]:
    entries, problem = read_entries(root)
    return {n: e.fingerprint for n, e in entries.items()}, problem


def read_fingerprints_text(text: str) -> dict[str, str]:
    return {n: t["fingerprint"] for n, t in tomllib.loads(text)["nodes"].items()}


# -- render ---------------------------------------------------------------------------------
def test_render_is_sorted_and_exactly_this_text() -> None:
    assert render("shop", TRACES, list(TRACES)) == EXPECTED


def test_render_does_not_depend_on_the_order_of_its_inputs() -> None:
    reordered = dict(reversed(list(TRACES.items())))
    assert render("shop", reordered, sorted(TRACES, reverse=True)) == EXPECTED


def test_render_leaves_out_names_never_built_and_traces_of_removed_nodes() -> None:
    text = render("shop", TRACES, [NodeId("stg_orders"), NodeId("never_built")])
    assert "[nodes.stg_orders]" in text
    assert "never_built" not in text and "raw_orders]" not in text and "Zeta" not in text


def test_render_keeps_no_times_paths_or_sql() -> None:
    text = render("shop", TRACES, list(TRACES))
    for volatile in ("123456789", "/home/me", "t_fp_stg", "SELECT 1", "scheme"):
        assert volatile not in text


def test_render_round_trips_through_tomllib(tmp_path: Path) -> None:
    doc = tomllib.loads(render("shop", TRACES, list(TRACES)))
    assert doc["version"] == 1 and doc["project"] == "shop"
    raw = doc["nodes"]["raw_orders"]
    assert raw["config"] == {"read.format": "csv", "read.options.delim": ";",
                             "read.options.header": True, "read.path": "orders.csv"}
    assert raw["sources"] == {"raw:orders.csv": "d_orders", "raw:a b.csv": "d_ab"}
    assert doc["nodes"]["stg_orders"]["vars"] == {"min_amount": 0, "currency": "EUR"}
    assert doc["nodes"]["Zeta"]["upstream"] == {"raw_orders": "fp_raw", "stg_orders": "fp_stg"}
    (tmp_path / LOCK_FILE).write_text(render("shop", TRACES, list(TRACES)))
    assert read_fingerprints(tmp_path) == (
        {"Zeta": "fp_zeta", "raw_orders": "fp_raw", "stg_orders": "fp_stg"}, None)


def test_keys_and_values_that_need_quoting_are_quoted() -> None:
    odd = {
        NodeId("n"): trace("fp", config={'read.options.quote"char': '"\\""',
                                         "read.options.escape\\": '"\\\\"',
                                         "read.options.naïve": '"naïve"',
                                         "read.options.tab": '"\\t"',
                                         "read.options.newline": '"a\\nb"'},
                           sources={"raw:dir/ä ö.csv": ["d1", 1], 'raw:"q".csv': ["d2", 1]}),
        NodeId("_x1"): trace("fp2"),
    }
    text = render('my "shop"', odd, list(odd))
    assert "[nodes._x1]" in text and "[nodes.n]" in text
    assert 'config."read.options.quote\\"char" = "\\""' in text
    doc = tomllib.loads(text)
    assert doc["project"] == 'my "shop"'
    assert doc["nodes"]["n"]["config"] == {'read.options.quote"char': '"',
                                           "read.options.escape\\": "\\",
                                           "read.options.naïve": "naïve", "read.options.tab": "\t",
                                           "read.options.newline": "a\nb"}
    assert doc["nodes"]["n"]["sources"] == {"raw:dir/ä ö.csv": "d1", 'raw:"q".csv': "d2"}
    # node names are identifiers today; one that is not is still quoted, not mangled
    dotted = render("shop", {NodeId("a.b"): trace("fp3")}, [NodeId("a.b")])
    assert '[nodes."a.b"]' in dotted
    assert read_fingerprints_text(dotted) == {"a.b": "fp3"}


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_var_that_is_not_a_finite_number_still_gives_a_readable_lock(value: float) -> None:
    # vars: {max_amount: .inf} is valid YAML; canonical JSON writes it as Infinity / NaN
    traces = {NodeId("a"): trace("fp_a", vars={"max_amount": json.dumps(value)})}
    text = render("shop", traces, list(traces))
    assert check(text) is None, text


@settings(max_examples=150, deadline=None)
@given(key=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
       value=st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
                       st.integers(), st.booleans(), st.none(),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.lists(st.integers(), max_size=3)))
def test_any_config_key_and_value_round_trip(key: str, value: object) -> None:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    traces = {NodeId("a"): trace("fp_a", config={f"read.options.{key}": canonical})}
    doc = tomllib.loads(render("shop", traces, list(traces)))
    got = doc["nodes"]["a"]["config"][f"read.options.{key}"]
    if isinstance(value, (str, bool, int, float)):
        assert got == value
    else:  # null and lists are kept as their JSON text
        assert got == canonical


def test_empty_project_lock_is_valid() -> None:
    text = render("shop", {}, [])
    assert text == HEADER + 'version = 1\nproject = "shop"\n'
    assert check(text) is None


# -- check -----------------------------------------------------------------------------------
def test_check_messages() -> None:
    assert check(EXPECTED) is None
    assert check("version = 1\n") is None
    assert check("version = 2\n") == "lock version 2 is not 1"
    assert check('version = "1"\n') == "lock version '1' is not 1"
    assert check("") == "it has no version"
    assert check("version = 1\nnodes = 3\n") == "it has no [nodes] table"
    problem = check("<<<<<<< HEAD\nversion = 1\n=======\n")
    assert problem is not None and problem.startswith("it does not parse (")
    assert "line 1" in problem


# -- write_if_changed -------------------------------------------------------------------------
def test_write_if_changed_writes_then_leaves_identical_text_alone(tmp_path: Path) -> None:
    assert write_if_changed(tmp_path, EXPECTED) == (True, None)
    path = tmp_path / LOCK_FILE
    assert path.read_bytes() == EXPECTED.encode()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    inode = path.stat().st_ino
    assert write_if_changed(tmp_path, EXPECTED) == (False, None)
    assert path.stat().st_mtime_ns == 1_000_000_000 and path.stat().st_ino == inode
    changed = EXPECTED.replace('"fp_zeta"', '"fp_zeta2"')
    assert write_if_changed(tmp_path, changed) == (True, None)
    assert path.read_text() == changed
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]  # no temp files left


@pytest.mark.parametrize("old, problem", [
    ("garbage [[[ not toml", "it does not parse ("),
    ("version = 0\n[nodes.a]\nfingerprint = \"x\"\n", "lock version 0 is not 1"),
    ("\udcff", "it is unreadable"),
])
def test_write_if_changed_reports_a_garbage_or_old_lock_and_replaces_it(
        tmp_path: Path, old: str, problem: str) -> None:
    path = tmp_path / LOCK_FILE
    if old == "\udcff":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(old)
    written, found = write_if_changed(tmp_path, EXPECTED)
    assert written is True
    assert found is not None and found.startswith(problem), found
    assert path.read_text() == EXPECTED
    assert write_if_changed(tmp_path, EXPECTED) == (False, None)


def test_read_fingerprints_of_missing_garbage_and_old_locks(tmp_path: Path) -> None:
    assert read_fingerprints(tmp_path) == ({}, None)
    (tmp_path / LOCK_FILE).write_text("version = 1\n[nodes\n")
    fps, problem = read_fingerprints(tmp_path)
    assert fps == {} and problem is not None and problem.startswith("it does not parse (")
    (tmp_path / LOCK_FILE).write_text('version = 7\n[nodes.a]\nfingerprint = "x"\n')
    assert read_fingerprints(tmp_path) == ({}, "lock version 7 is not 1")
