"""Acceptance tests of incremental builds (DESIGN.md §2-§4), through the real CLI on real
temporary projects: the shop example and layered DAGs from bench/generate.py.

What runs is judged from `odibi build --json`: a node executed iff it has an outcome of
built / exported / failed, and a check (a node of the build too, DESIGN §6) iff it has an
outcome of passed / warned / failed. Expected sets are computed here, independently of odibi:

- the downstream closure of the changed nodes, brute force over the dependency edges
  (the GenNode inputs, or the shop's edges written out below, its checks included);
- the contents every node *should* have, by running the project's SQL (read from its YAML,
  vars substituted) and its Python function directly in an in-memory DuckDB; and the
  verdict every check should give, by running its assertion written out in SQL.

The second gives a precondition for the closure tests: each edit is chosen so that every
node of the closure really produces a different output. Then "rebuild exactly the
closure" is the right expectation with and without early cutoff (DESIGN §2), where an
unchanged output stops propagation. `test_early_cutoff` covers edits whose output does
not change, where the design expects dependants to be cut off.

Edited files get an explicit, later mtime (os.utime): odibi caches file digests by
(size, mtime, inode), and an edit within the filesystem's timestamp granularity that
keeps the size would otherwise be indistinguishable from no edit.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import json
import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from bench.generate import GenNode, generate, source_csv, write_odibi
from tests.conftest import run_cli

JOBS = ("-j", "2")
RAN = ("built", "exported", "failed",  # outcomes of nodes that executed
       "passed", "warned")  # and of checks that ran ("failed" too)


# -- running odibi ---------------------------------------------------------------------------
def odibi(root: Path, *argv: str):
    return run_cli("-C", str(root), *argv)


def build(root: Path, *argv: str, code: int = 0) -> dict[str, Any]:
    r = odibi(root, "build", "--json", *JOBS, *argv)
    assert r.code == code, r.text
    return json.loads(r.out)


def executed(report: Mapping[str, Any]) -> set[str]:
    return {n for n, v in report["nodes"].items() if v.get("outcome") in RAN}


def outcomes(report: Mapping[str, Any]) -> dict[str, str]:
    return {n: v["outcome"] for n, v in report["nodes"].items() if "outcome" in v}


def explain(root: Path, *argv: str) -> dict[str, dict[str, Any]]:
    r = odibi(root, "explain", "--json", *argv)
    assert r.code == 0, r.text
    return {e["node"]: e for e in json.loads(r.out)["nodes"]}


def summaries(entry: Mapping[str, Any], key: str = "reasons") -> list[str]:
    return [r["summary"] for r in entry[key]]


def assert_noop(root: Path, *argv: str) -> None:
    report = build(root, *argv)
    assert outcomes(report) == {}, report
    assert all(v["status"] == "up-to-date" and v["reasons"] == []
               for v in report["nodes"].values()), report


# -- editing files ---------------------------------------------------------------------------
def write_later(path: Path, text: str | bytes) -> None:
    """Write `path` and give it an mtime strictly later than it had (see the docstring)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    later = max(time.time_ns(), before + 2_000_000_000)
    os.utime(path, ns=(later, later))


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    write_later(path, text.replace(old, new))


_NEXT_NODE = re.compile(r"^\s*- name: |^checks:", re.M)


def node_file(root: Path, name: str) -> Path:
    for path in sorted(root.glob("pipelines/*.yaml")) + [root / "odibi.yaml"]:
        if f"- name: {name}\n" in path.read_text():
            return path
    raise AssertionError(f"no node {name} in {root}")


def edit_node(root: Path, name: str, old: str, new: str) -> None:
    """Replace `old` by `new` within node `name`'s entry of its YAML file."""
    path = node_file(root, name)
    text = path.read_text()
    start = text.index(f"- name: {name}\n")
    m = _NEXT_NODE.search(text, start + len(name) + 9)
    end = m.start() if m else len(text)
    block = text[start:end]
    assert block.count(old) == 1, f"{old!r} is not once in node {name}:\n{block}"
    write_later(path, text[:start] + block.replace(old, new) + text[end:])


# -- the warehouse ---------------------------------------------------------------------------
@contextmanager
def warehouse(root: Path, *, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(root / ".odibi" / "warehouse.duckdb"), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def _norm(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def contents(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[tuple, tuple]:
    """(schema, rows in a canonical order): a table's contents, order-insensitive."""
    described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    schema = tuple((c[0], c[1]) for c in described)
    rows = [tuple(_norm(v) for v in r) for r in con.execute(f"SELECT * FROM {relation}").fetchall()]
    return schema, tuple(sorted(rows, key=repr))


def ordered_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return [tuple(_norm(v) for v in r) for r in con.execute(sql).fetchall()]


def odibi_outputs(root: Path, names: Iterable[str]) -> dict[str, tuple[tuple, tuple]]:
    with warehouse(root) as con:
        return {n: contents(con, f"main.{n}") for n in names}


# -- the reference: the project run directly in DuckDB, from its YAML text -------------------
_VAR = re.compile(r"\$\{vars\.(\w+)\}")
_module_ids = itertools.count()


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def project_nodes(root: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(odibi.yaml, {node name: its YAML mapping}) read with PyYAML."""
    doc = yaml.safe_load((root / "odibi.yaml").read_text())
    nodes = {n["name"]: n for n in doc.get("nodes", [])}
    for pattern in doc.get("pipelines", []):
        for path in sorted(root.glob(pattern)):
            nodes.update({n["name"]: n for n in yaml.safe_load(path.read_text())["nodes"]})
    return doc, nodes


def project_checks(root: Path) -> dict[str, dict[str, Any]]:
    """{check name: its YAML mapping}, from odibi.yaml and the pipeline files."""
    doc = yaml.safe_load((root / "odibi.yaml").read_text())
    checks = {c["name"]: c for c in doc.get("checks", [])}
    for pattern in doc.get("pipelines", []):
        for path in sorted(root.glob(pattern)):
            checks.update({c["name"]: c for c in yaml.safe_load(path.read_text()).get("checks", [])})
    return checks


# The checks' assertions (as written in the YAML), each written out here in SQL: the
# reference evaluates these, not odibi's rule language.
CHECK_SQL = {
    "row_count(stg_orders) >= 0.5 * row_count(raw_orders)":
        "SELECT (SELECT count(*) FROM stg_orders) >= 0.5 * (SELECT count(*) FROM raw_orders)",
    "sum(order_payments.paid) <= 1.01 * sum(order_payments.amount)":
        "SELECT (SELECT sum(paid) FROM order_payments) "
        "<= 1.01 * (SELECT sum(amount) FROM order_payments)",
}


def verdict(held: bool, on_fail: str) -> str:
    """The outcome of a check that ran (DESIGN §6: halt fails the build, warn goes on)."""
    return "passed" if held else {"halt": "failed", "warn": "warned"}[on_fail]


def reference(root: Path, order: list[str], overrides: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """Every node's contents as they should be: csv read by DuckDB, SQL with vars
    substituted, Python functions called on DataFrames, in dependency order; and for each
    check in `order`, the outcome it should have if it runs (see `verdict`)."""
    doc, nodes = project_nodes(root)
    checks = project_checks(root)
    variables = {**doc.get("vars", {}), **(overrides or {})}
    bases = {name: root / c["base_path"] for name, c in doc["connections"].items()}
    con = duckdb.connect()
    try:
        verdicts: dict[str, str] = {}
        for name in order:
            if name in checks:
                check = checks[name]
                (held,) = con.execute(CHECK_SQL[check["assert"]]).fetchone()
                verdicts[name] = verdict(bool(held), check.get("on_fail", "halt"))
                continue
            node = nodes[name]
            if "read" in node:
                read = node["read"]
                opts = "".join(f", {k} = {_literal(v)}"
                               for k, v in (read.get("options") or {}).items())
                path = bases[read["connection"]] / read["path"]
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM "
                            f"read_csv({_literal(str(path))}{opts})")
            elif "sql" in node:
                sql = _VAR.sub(lambda m: str(variables[m.group(1)]), node["sql"])
                con.execute(f"CREATE TABLE {name} AS {sql}")
            else:
                module, function = node["python"].split(":")
                file = root / (module.replace(".", "/") + ".py")
                spec = importlib.util.spec_from_file_location(f"_ref_{next(_module_ids)}", file)
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
                fn = getattr(mod, function)
                frames = {p: con.execute(f"SELECT * FROM {p}").df()
                          for p in inspect.signature(fn).parameters}
                con.register("_py_result", fn(**frames))
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM _py_result")
                con.unregister("_py_result")
        return {n: verdicts[n] if n in checks else contents(con, n) for n in order}
    finally:
        con.close()


# -- graphs: closures and what early cutoff would leave ---------------------------------------
def closure(parents: Mapping[str, set[str]], order: list[str], roots: set[str]) -> set[str]:
    """The roots and everything downstream of them (brute force, in topological order)."""
    out: set[str] = set()
    for n in order:
        if n in roots or parents[n] & out:
            out.add(n)
    return out


def cutoff_closure(parents: Mapping[str, set[str]], order: list[str], roots: set[str],
                   before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """What must execute with early cutoff: the changed nodes, and every node (or check)
    with an upstream that executed and produced a different output."""
    out: set[str] = set()
    for n in order:
        if n in roots or any(p in out and before[p] != after[p] for p in parents[n]):
            out.add(n)
    return out


# -- the generated DAG ---------------------------------------------------------------------
GEN_N, GEN_WIDTH = 60, 10
GEN = generate(GEN_N, GEN_WIDTH)
GEN_ORDER = ["src"] + [n.name for n in GEN]
GEN_PARENTS = {"src": set()} | {n.name: set(n.inputs) for n in GEN}
GEN_LAST = max(n.layer for n in GEN)
ROLE_LAYER = {"first": 1, "middle": 4, "leaf": GEN_LAST}
_FILTER = re.compile(r" WHERE v > (\d+)\Z")


def _filters(layer: int) -> list[GenNode]:
    has_children = {p for ps in GEN_PARENTS.values() for p in ps}
    return [n for n in GEN if n.layer == layer and _FILTER.search(n.sql)
            and (n.name in has_children) == (layer != GEN_LAST)]


# per role: a filter node whose SQL the tests edit, and one whose constant is a variable
SQL_NODE = {role: _filters(layer)[0].name for role, layer in ROLE_LAYER.items()}
VAR_NODE = {role: _filters(layer)[1].name for role, layer in ROLE_LAYER.items()}
VAR_OF = {VAR_NODE[role]: f"cut_{role}" for role in ROLE_LAYER}
GEN_CONST = {n.name: int(m.group(1)) for n in GEN if (m := _FILTER.search(n.sql))}


@functools.cache
def new_cut(node: str) -> int:
    """A new filter constant for `node` that surely changes its output: the median `v` of
    its input (the generated constants are at most 40; values grow layer by layer)."""
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "src.csv"
        csv.write_text(source_csv())
        con = duckdb.connect()
        try:
            con.execute(f"CREATE TABLE src AS SELECT * FROM read_csv('{csv}')")
            for n in GEN:
                con.execute(f"CREATE TABLE {n.name} AS {n.sql}")
            source = next(n for n in GEN if n.name == node).inputs[0]
            (median,) = con.execute(f"SELECT quantile_disc(v, 0.5) FROM {source}").fetchone()
        finally:
            con.close()
    assert median > GEN_CONST[node] + 5, (node, median)
    return int(median)


def make_gen(dest: Path) -> Path:
    """The generated project, with one node per role reading its filter constant from a
    variable (`cut_first`, ...; defaults equal to the generated constants)."""
    nodes = [replace(n, sql=_FILTER.sub(f" WHERE v > ${{vars.{VAR_OF[n.name]}}}", n.sql))
             if n.name in VAR_OF else n for n in GEN]
    write_odibi(nodes, dest)
    extra = "".join(f"  {var}: {GEN_CONST[node]}\n" for node, var in VAR_OF.items())
    head = "vars:\n  threshold: 10\n"
    replace_text(dest / "odibi.yaml", head, head + extra)
    return dest


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    return make_gen(tmp_path / "gen")


def test_generated_roles_are_what_the_tests_need() -> None:
    """The parametrized cases below pick nodes by role; check the picks are meaningful."""
    for role in ("first", "middle"):
        for node in (SQL_NODE[role], VAR_NODE[role]):
            assert len(closure(GEN_PARENTS, GEN_ORDER, {node})) > 3, (role, node)
    for node in (SQL_NODE["leaf"], VAR_NODE["leaf"]):
        assert closure(GEN_PARENTS, GEN_ORDER, {node}) == {node}
    assert 2 < ROLE_LAYER["middle"] < GEN_LAST


# -- the shop --------------------------------------------------------------------------------
SHOP_ORDER = ["raw_customers", "raw_orders", "raw_payments", "stg_customers", "stg_orders",
              "stg_payments", "order_payments", "daily_revenue", "customer_orders",
              "customer_segments", "export_segments", "orders_not_lost",
              "payments_cover_orders"]
SHOP_PARENTS: dict[str, set[str]] = {
    "raw_customers": set(), "raw_orders": set(), "raw_payments": set(),
    "stg_customers": {"raw_customers"}, "stg_orders": {"raw_orders"},
    "stg_payments": {"raw_payments"}, "order_payments": {"stg_orders", "stg_payments"},
    "daily_revenue": {"stg_orders"}, "customer_orders": {"stg_customers", "order_payments"},
    "customer_segments": {"customer_orders"}, "export_segments": {"customer_segments"},
    # the checks (pipelines/marts.yaml) depend on every dataset their assertion names
    "orders_not_lost": {"raw_orders", "stg_orders"},
    "payments_cover_orders": {"order_payments"},
}
SHOP_CHECKS = {"orders_not_lost": "halt", "payments_cover_orders": "warn"}  # name: on_fail
SHOP_TABLES = [n for n in SHOP_ORDER if n not in SHOP_CHECKS]  # the nodes with an output
SHOP_KINDS = {"raw_customers": "read", "raw_orders": "read", "raw_payments": "read",
              "customer_segments": "python"} | {n: "check" for n in SHOP_CHECKS}


def test_dependency_edges_match_odibi(shop: Path, gen: Path) -> None:
    """The brute-force references use these edges; they are the ones odibi infers."""
    for root, parents in ((shop, SHOP_PARENTS), (gen, GEN_PARENTS)):
        r = odibi(root, "ls", "--json")
        assert r.code == 0, r.text
        listed = {e["name"]: set(e["depends_on"]) for e in json.loads(r.out)}
        assert listed == parents


# -- 1. nothing changed: nothing runs ---------------------------------------------------------
def test_second_build_runs_nothing(shop: Path) -> None:
    first = build(shop)
    assert outcomes(first) == {n: "built" for n in SHOP_TABLES} | \
        {n: "passed" for n in SHOP_CHECKS}
    assert_noop(shop)
    r = odibi(shop, "build", *JOBS)
    assert r.code == 0, r.text
    assert r.out.startswith("nothing to do: 13 up to date"), r.out
    r = odibi(shop, "explain")
    assert r.code == 0, r.text
    assert r.out.strip() == "0 to run, 13 up to date"


def test_touched_files_run_nothing(shop: Path) -> None:
    build(shop)
    for path in [*shop.glob("data/*.csv"), shop / "transforms" / "segments.py",
                 *shop.glob("pipelines/*.yaml"), shop / "odibi.yaml", *shop.glob("output/*")]:
        touch_later(path)
    plan = explain(shop)
    assert {n: e["status"] for n, e in plan.items()} == {n: "up-to-date" for n in SHOP_ORDER}
    assert all(e["reasons"] == [] and e["notes"] == [] for e in plan.values())
    assert_noop(shop)


REFORMATTED_STG_ORDERS = """\
    sql: |
      -- sales only: cancelled orders and tiny amounts are dropped
      select order_id,   customer_id,
             order_date, status, amount   /* as in the shop's export */
      from raw_orders
      where status <> 'cancelled' and amount > ${vars.min_amount}

"""


def test_reformatted_sql_runs_nothing_and_is_noted(shop: Path) -> None:
    build(shop)
    path = shop / "pipelines" / "staging.yaml"
    text = path.read_text()
    start = text.index("    sql: |\n      SELECT order_id, customer_id, order_date")
    end = text.index("    contracts:\n      - not_null(raw_orders.order_id)")
    write_later(path, text[:start] + REFORMATTED_STG_ORDERS + text[end:])
    # and a second node: keyword case and line breaks only
    replace_text(shop / "pipelines" / "marts.yaml",
                 "      SELECT customer_id, name, country, segment, revenue\n"
                 "      FROM customer_segments\n      ORDER BY customer_id\n",
                 "      select customer_id, name, country, segment, revenue\n"
                 "        from customer_segments order by customer_id\n")

    plan = explain(shop)
    assert {n: e["status"] for n, e in plan.items()} == {n: "up-to-date" for n in SHOP_ORDER}
    noted = {n: summaries(e, "notes") for n, e in plan.items() if e["notes"]}
    assert noted == {"stg_orders": ["sql reformatted only"],
                     "export_segments": ["sql reformatted only"]}
    diff = plan["stg_orders"]["notes"][0]["diff"]
    assert "-  AND amount > ${vars.min_amount}" in diff
    assert "+where status <> 'cancelled' and amount > ${vars.min_amount}" in diff
    r = odibi(shop, "explain")
    assert "stg_orders       up-to-date: sql reformatted only" in r.out, r.out

    assert_noop(shop)
    plan = explain(shop)
    assert all(e["notes"] == [] and e["status"] == "up-to-date" for e in plan.values()), plan
    assert odibi(shop, "explain").out.strip() == "0 to run, 13 up to date"


# -- 2. a change rebuilds exactly its downstream closure -------------------------------------
def check_closure(root: Path, order: list[str], parents: Mapping[str, set[str]],
                  changed: set[str], edit: Callable[[], None],
                  own_reasons: Mapping[str, list[str]], *,
                  args: tuple[str, ...] = (), before_vars: Mapping[str, Any] | None = None,
                  after_vars: Mapping[str, Any] | None = None) -> set[str]:
    """Build, apply `edit`, and check that explain and build name exactly the downstream
    closure of `changed`, with `own_reasons` for the changed nodes (a reason summary, or
    its prefix ending in '*') and 'upstream rebuilt: <its changed inputs>' for the rest.
    The checks in the closure run again, with the verdict the reference gives.
    Returns the closure."""
    checks = set(project_checks(root)) & set(order)
    tables = [n for n in order if n not in checks]
    first = build(root)
    assert executed(first) == set(order)
    before = reference(root, order, before_vars)
    assert odibi_outputs(root, tables) == {n: before[n] for n in tables}, \
        "odibi's outputs differ from DuckDB's"
    assert {n: o for n, o in outcomes(first).items() if n in checks} == \
        {n: before[n] for n in checks}
    edit()
    after = reference(root, order, after_vars)
    want = closure(parents, order, changed)
    # the test's precondition: exactly the outputs of the closure change, so the closure is
    # what must run, with or without early cutoff (the checks in it read a changed output)
    assert {n for n in tables if before[n] != after[n]} == want - checks, \
        "test data: the edit leaves some output in the closure unchanged; choose another edit"

    plan = explain(root, *args)
    assert {n for n, e in plan.items() if e["status"] != "up-to-date"} == want
    assert {n for n, e in plan.items() if e["reasons"]} == want
    for n in want:
        assert plan[n]["status"] == "rebuild", plan[n]
        got = summaries(plan[n])
        ups = ", ".join(sorted(parents[n] & want))
        expected = [f"upstream rebuilt: {ups}"] if ups else []
        if n in changed:
            expected = own_reasons[n] + expected
        assert len(got) == len(expected), (n, got)
        for g, e in zip(got, expected):
            assert g.startswith(e[:-1]) if e.endswith("*") else g == e, (n, got)
        if n not in changed:
            cause = plan[n]["root_cause"]
            assert cause[-1]["node"] in changed and cause[-1]["reason"] == got_first(plan, cause)

    report = build(root, *args)
    assert report["ok"] is True
    assert executed(report) == want
    assert outcomes(report) == {n: after[n] if n in checks else "built" for n in want}
    assert odibi_outputs(root, tables) == {n: after[n] for n in tables}, \
        "odibi's outputs differ from DuckDB's"
    assert_noop(root, *args)
    return want


def got_first(plan: Mapping[str, Any], cause: list[dict[str, str]]) -> str:
    return summaries(plan[cause[-1]["node"]])[0]


GEN_CLOSURE_CASES = ["first", "middle", "leaf"]


def test_gen_source_change_rebuilds_everything_downstream(gen: Path) -> None:
    path = gen / "data" / "src.csv"

    def edit() -> None:
        lines = path.read_text().splitlines()
        rows = [line.rsplit(",", 1) for line in lines[1:]]
        write_later(path, "\n".join([lines[0]] + [f"{a},{int(v) + 7}" for a, v in rows]) + "\n")

    want = check_closure(gen, GEN_ORDER, GEN_PARENTS, {"src"}, edit,
                         {"src": ["source changed: data/src.csv (*"]})
    assert want == set(GEN_ORDER)


@pytest.mark.parametrize("role", GEN_CLOSURE_CASES)
def test_gen_sql_change_rebuilds_its_closure(gen: Path, role: str) -> None:
    node = SQL_NODE[role]
    c = GEN_CONST[node]
    check_closure(gen, GEN_ORDER, GEN_PARENTS, {node},
                  lambda: edit_node(gen, node, f"WHERE v > {c}", f"WHERE v > {new_cut(node)}"),
                  {node: ["sql changed"]})
    plan = explain(gen, node)  # after the build: the diff is gone, nothing to say
    assert plan[node]["status"] == "up-to-date" and plan[node]["reasons"] == []


@pytest.mark.parametrize("roles,how", [
    (["first"], "--var"), (["middle"], "--var"), (["leaf"], "--var"),
    (["middle"], "odibi.yaml"), (["first", "leaf"], "odibi.yaml"),
])
def test_gen_var_change_rebuilds_its_closure(gen: Path, roles: list[str], how: str) -> None:
    nodes = {VAR_NODE[r] for r in roles}
    old = {f"cut_{r}": GEN_CONST[VAR_NODE[r]] for r in roles}
    new = {f"cut_{r}": new_cut(VAR_NODE[r]) for r in roles}
    reasons = {VAR_NODE[r]: [f"var changed: cut_{r} {old[f'cut_{r}']} -> {new[f'cut_{r}']}"]
               for r in roles}
    args: tuple[str, ...] = ()
    if how == "--var":
        args = tuple(itertools.chain.from_iterable(("--var", f"{k}={v}") for k, v in new.items()))

        def edit() -> None:
            pass
    else:
        def edit() -> None:
            for k in old:
                replace_text(gen / "odibi.yaml", f"  {k}: {old[k]}\n", f"  {k}: {new[k]}\n")

    want = check_closure(gen, GEN_ORDER, GEN_PARENTS, nodes, edit, reasons, args=args,
                         after_vars=new)
    if how == "--var":  # the override lasts one build: without it, the YAML value is back,
        # and the outputs built from it are still stored: restored, not recomputed
        report = build(gen)
        assert executed(report) == set()
        assert {n for n, e in report["nodes"].items() if e.get("outcome") == "restored"} == want
        for n in nodes:
            var = VAR_OF[n]
            assert report["nodes"][n]["reasons"] == [
                f"a stored version matches (var {var} = {old[var]} as in an earlier build)",
                f"var changed: {var} {new[var]} -> {old[var]}"]
        assert_noop(gen)


def test_gen_read_option_rebuilds_everything_downstream(gen: Path) -> None:
    want = check_closure(
        gen, GEN_ORDER, GEN_PARENTS, {"src"},
        lambda: replace_text(gen / "odibi.yaml",
                             "read: {connection: raw, path: src.csv, format: csv}",
                             "read: {connection: raw, path: src.csv, format: csv, "
                             "options: {types: {v: DOUBLE}}}"),
        {"src": ["config changed: read.options.types*"]})
    assert want == set(GEN_ORDER)


SHOP_SOURCE_EDITS = {
    # a completed order's amount
    "raw_orders": ("orders.csv", "1004,5,2024-06-10,completed,50.44",
                   "1004,5,2024-06-10,completed,1050.44"),
    # a customer's name
    "raw_customers": ("customers.csv", "3,Alan Turing,", "3,Alan M. Turing,"),
}
SHOP_SOURCE_CLOSURES = {
    "raw_orders": {"raw_orders", "stg_orders", "daily_revenue", "order_payments",
                   "customer_orders", "customer_segments", "export_segments",
                   "orders_not_lost", "payments_cover_orders"},
    "raw_customers": {"raw_customers", "stg_customers", "customer_orders", "customer_segments",
                      "export_segments"},
}


@pytest.mark.parametrize("node", sorted(SHOP_SOURCE_EDITS))
def test_shop_source_change_rebuilds_its_closure(shop: Path, node: str) -> None:
    file, old, new = SHOP_SOURCE_EDITS[node]
    want = check_closure(shop, SHOP_ORDER, SHOP_PARENTS, {node},
                         lambda: replace_text(shop / "data" / file, old, new),
                         {node: [f"source changed: data/{file} (*"]})
    assert want == SHOP_SOURCE_CLOSURES[node]


SHOP_SQL_EDITS = {
    "stg_orders": ("WHERE status <> 'cancelled'", "WHERE status NOT IN ('cancelled', 'refunded')"),
    "stg_customers": ("upper(country)      AS country", "lower(country)      AS country"),
    "customer_orders": ("coalesce(sum(o.amount), 0)        AS revenue",
                        "coalesce(sum(o.amount) FILTER (o.status = 'completed'), 0) AS revenue"),
    "daily_revenue": ("round(sum(amount), 2) AS revenue", "round(sum(amount), 0) AS revenue"),
    "export_segments": ("FROM customer_segments\n",
                        "FROM customer_segments\n      WHERE segment <> 'vip'\n"),
}


@pytest.mark.parametrize("node", list(SHOP_SQL_EDITS))
def test_shop_sql_change_rebuilds_its_closure(shop: Path, node: str) -> None:
    old, new = SHOP_SQL_EDITS[node]
    check_closure(shop, SHOP_ORDER, SHOP_PARENTS, {node}, lambda: edit_node(shop, node, old, new),
                  {node: ["sql changed"]})


@pytest.mark.parametrize("var,value,nodes,how", [
    ("min_amount", 100, {"stg_orders"}, "--var"),
    ("currency", "USD", {"daily_revenue"}, "--var"),
    ("min_amount", 50, {"stg_orders"}, "odibi.yaml"),
])
def test_shop_var_change_rebuilds_its_closure(shop: Path, var: str, value: Any, nodes: set[str],
                                              how: str) -> None:
    old = yaml.safe_load((shop / "odibi.yaml").read_text())["vars"][var]
    shown = (lambda v: f"'{v}'" if isinstance(v, str) else str(v))
    reasons = {n: [f"var changed: {var} {shown(old)} -> {shown(value)}"] for n in nodes}
    args: tuple[str, ...] = ()
    if how == "--var":
        args = ("--var", f"{var}={value}")

        def edit() -> None:
            pass
    else:
        def edit() -> None:
            replace_text(shop / "odibi.yaml", f"  {var}: {old} ", f"  {var}: {value} ")

    check_closure(shop, SHOP_ORDER, SHOP_PARENTS, nodes, edit, reasons, args=args,
                  after_vars={var: value})


def test_shop_read_option_rebuilds_its_closure(shop: Path) -> None:
    want = check_closure(
        shop, SHOP_ORDER, SHOP_PARENTS, {"raw_orders"},
        lambda: replace_text(shop / "pipelines" / "staging.yaml",
                             "read: {connection: raw, path: orders.csv, format: csv}",
                             "read: {connection: raw, path: orders.csv, format: csv, "
                             "options: {nullstr: refunded}}"),
        {"raw_orders": ["config changed: read.options.nullstr (unset) -> 'refunded'"]})
    assert want == {"raw_orders", "stg_orders", "daily_revenue", "order_payments",
                    "customer_orders", "customer_segments", "export_segments",
                    "orders_not_lost", "payments_cover_orders"}


# -- early cutoff: a rebuilt node whose output is unchanged stops propagation -----------------
@pytest.mark.parametrize("export,node", [
    ("daily_revenue.csv", "daily_revenue"),
    ("customer_segments.parquet", "export_segments"),
])
def test_deleted_export_is_reexported(shop: Path, export: str, node: str) -> None:
    build(shop)
    path = shop / "output" / export
    original = path.read_bytes()
    path.unlink()
    plan = explain(shop)
    assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {node: "re-export"}
    assert summaries(plan[node]) == [f"output missing: output/{export}"]
    report = build(shop)
    assert outcomes(report) == {node: "exported"}
    assert path.read_bytes() == original
    assert_noop(shop)


@pytest.mark.parametrize("how", ["appended", "same-size"])
def test_modified_export_is_reexported(shop: Path, how: str) -> None:
    build(shop)
    path = shop / "output" / "customer_segments.csv"
    original = path.read_bytes()
    if how == "appended":
        write_later(path, original + b"99,Mallory,XX,vip,1e9\n")
    else:  # same size, so only the bytes tell
        i = original.index(b"vip")
        write_later(path, original[:i] + b"VIP" + original[i + 3:])
    plan = explain(shop)
    assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {"export_segments": "re-export"}
    assert summaries(plan["export_segments"]) == \
        ["output modified outside odibi: output/customer_segments.csv"]
    report = build(shop)
    assert outcomes(report) == {"export_segments": "exported"}
    assert report["nodes"]["export_segments"]["reasons"] == \
        ["output modified outside odibi: output/customer_segments.csv"]
    assert path.read_bytes() == original
    assert_noop(shop)


@pytest.mark.parametrize("drop", ["view", "table"])
@pytest.mark.parametrize("node", ["stg_orders", "customer_orders"])
def test_output_dropped_by_hand_rebuilds_that_node_only(shop: Path, drop: str, node: str) -> None:
    build(shop)
    before = odibi_outputs(shop, SHOP_TABLES)
    lock = (shop / "odibi.lock").read_bytes()
    with warehouse(shop, read_only=False) as con:
        if drop == "view":
            con.execute(f"DROP VIEW main.{node}")
        else:
            (table,) = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = "
                                   "'odibi_store' AND table_name LIKE ?", [f"{node}__%"]).fetchone()
            con.execute(f'DROP TABLE odibi_store."{table}"')
    plan = explain(shop)
    below = closure(SHOP_PARENTS, SHOP_ORDER, {node}) - {node}
    if drop == "view":  # the output itself is still stored: pointed at again, not recomputed
        assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
            {node: "restore"}, {n: summaries(e) for n, e in plan.items() if e["reasons"]}
        assert summaries(plan[node])[0] == "output missing: view"
        report = build(shop)
        assert outcomes(report) == {node: "restored"}
    else:  # recomputed; its dependants wait to see whether its output changed: it did not
        assert {n: e["status"] for n, e in plan.items() if e["status"] != "up-to-date"} == \
            {n: "rebuild" for n in below | {node}}
        assert summaries(plan[node]) == ["output missing: table"]
        assert all(summaries(plan[n])[0].startswith("upstream reruns: ") for n in below)
        report = build(shop)
        assert outcomes(report) == {node: "built"} | {n: "cut off" for n in below}
    assert odibi_outputs(shop, SHOP_TABLES) == before
    assert (shop / "odibi.lock").read_bytes() == lock
    assert_noop(shop)


# -- 4. the lock -----------------------------------------------------------------------------
def test_lock_is_deterministic_and_complete(tmp_path: Path, shop: Path) -> None:
    other = tmp_path / "elsewhere" / "shop-copy"
    shutil.copytree(shop, other)
    build(shop, "-j", "1")
    build(other, "-j", "4")
    lock = (shop / "odibi.lock").read_bytes()
    assert (other / "odibi.lock").read_bytes() == lock
    assert str(tmp_path).encode() not in lock

    shutil.rmtree(shop / ".odibi")
    (shop / "odibi.lock").unlink()
    assert executed(build(shop)) == set(SHOP_ORDER)
    assert (shop / "odibi.lock").read_bytes() == lock

    doc = tomllib.loads(lock.decode())
    assert doc["version"] == 1 and doc["project"] == "shop"
    nodes = doc["nodes"]
    assert sorted(nodes) == sorted(SHOP_ORDER)
    plan = explain(shop)
    with warehouse(shop) as con:
        for n, entry in nodes.items():
            assert entry["kind"] == SHOP_KINDS.get(n, "sql"), n
            assert entry["fingerprint"] == plan[n]["fingerprint"], n
            assert {k.removeprefix("upstream.") for k in entry.get("upstream", {})} == \
                SHOP_PARENTS[n], n
            if n in SHOP_CHECKS:  # a check has no output: none is recorded
                assert not {"output", "rows", "schema"} & set(entry), (n, entry)
                assert entry["config"] == {"on_fail": SHOP_CHECKS[n]}, (n, entry)
                continue
            assert re.fullmatch(r"[0-9a-f]{16,}", entry["output"]), n
            assert entry["rows"] == con.execute(f"SELECT count(*) FROM main.{n}").fetchone()[0], n
            assert entry["schema"] == [f"{c[0]} {c[1]}" for c in
                                       con.execute(f"DESCRIBE main.{n}").fetchall()], n
    assert nodes["stg_orders"]["vars"] == {"min_amount": 0}
    assert nodes["daily_revenue"]["vars"] == {"currency": "EUR"}
    assert set(nodes["raw_orders"]["sources"]) == {"raw:orders.csv"}
    # the lock changes where, and only where, a node changed
    edit_node(shop, "daily_revenue", "round(sum(amount), 2)", "round(sum(amount), 1)")
    build(shop)
    changed = tomllib.loads((shop / "odibi.lock").read_text())["nodes"]
    assert {n for n in nodes if nodes[n] != changed[n]} == {"daily_revenue"}


def test_lock_does_not_depend_on_worker_count(tmp_path: Path) -> None:
    one, many = make_gen(tmp_path / "one"), make_gen(tmp_path / "many")
    build(one, "-j", "1")
    build(many, "-j", "4")
    assert (one / "odibi.lock").read_bytes() == (many / "odibi.lock").read_bytes()
    assert sorted(tomllib.loads((one / "odibi.lock").read_text())["nodes"]) == sorted(GEN_ORDER)


# -- 5. outputs are what DuckDB gives ------------------------------------------------------
def test_outputs_match_duckdb_run_directly(shop: Path) -> None:
    build(shop)
    # the staging and marts SQL, re-implemented here from the YAML text, vars substituted
    data = shop / "data"
    direct = {
        "stg_orders": f"""
            SELECT order_id, customer_id, order_date, status, amount
            FROM read_csv('{data / 'orders.csv'}')
            WHERE status <> 'cancelled' AND amount > 0""",
        "stg_payments": f"""
            SELECT payment_id, order_id, lower(method) AS method, amount, paid_at
            FROM read_csv('{data / 'payments.csv'}') WHERE amount > 0""",
        "stg_customers": f"""
            SELECT customer_id, trim(name) AS name, lower(trim(email)) AS email,
                   upper(country) AS country, signup_date
            FROM read_csv('{data / 'customers.csv'}')""",
    }
    con = duckdb.connect()
    try:
        for name, sql in direct.items():
            con.execute(f"CREATE TABLE {name} AS {sql}")
        marts = {n: node["sql"] for n, node in project_nodes(shop)[1].items()
                 if "sql" in node and n in ("order_payments", "customer_orders", "daily_revenue")}
        for name in ("order_payments", "customer_orders", "daily_revenue"):
            con.execute(f"CREATE TABLE {name} AS {marts[name].replace('${vars.currency}', 'EUR')}")
        expected = {n: contents(con, n) for n in [*direct, *marts]}
        revenue_in_order = ordered_rows(con, "SELECT * FROM daily_revenue ORDER BY order_date")
    finally:
        con.close()
    got = odibi_outputs(shop, expected)
    for name in expected:
        assert got[name] == expected[name], name
        assert len(got[name][1]) > 0, name
    assert len(got["stg_orders"][1]) == 62

    # everything, including the Python node, against the reference runner
    ref = reference(shop, SHOP_TABLES)
    assert odibi_outputs(shop, SHOP_TABLES) == ref
    segments = {r[5] for r in ref["customer_segments"][1]}
    assert segments == {"vip", "regular"}  # every customer of the shop has ordered

    # the exports hold exactly the node's output, in its ORDER BY order
    out = shop / "output"
    with warehouse(shop) as con:
        seg_view = ordered_rows(con, "SELECT * FROM main.export_segments")
        seg_sorted = ordered_rows(con, "SELECT * FROM main.export_segments ORDER BY customer_id")
        seg_schema = contents(con, "main.export_segments")[0]
        rev_schema = contents(con, "main.daily_revenue")[0]
    assert seg_view == seg_sorted
    con = duckdb.connect()
    try:
        assert ordered_rows(con, f"SELECT * FROM read_csv('{out / 'daily_revenue.csv'}')") == \
            revenue_in_order
        assert contents(con, f"read_csv('{out / 'daily_revenue.csv'}')")[0] == rev_schema
        for f in ("customer_segments.parquet", "customer_segments.csv"):
            reader = "read_parquet" if f.endswith("parquet") else "read_csv"
            assert ordered_rows(con, f"SELECT * FROM {reader}('{out / f}')") == seg_sorted, f
            assert contents(con, f"{reader}('{out / f}')")[0] == seg_schema, f
    finally:
        con.close()


# -- 6. failures -----------------------------------------------------------------------------
FAIL_PROJECT = {
    "odibi.yaml": """
        project: failing
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: out}
        nodes:
          - name: src
            read: {connection: raw, path: a.csv}
          - name: a
            sql: SELECT id, x FROM src
          - name: bad
            sql: SELECT id, x * 2 AS y FROM a
          - name: bad_child
            sql: SELECT id, y + 1 AS z FROM bad
            write: {connection: out, path: bad_child.csv}
          - name: bad_grandchild
            sql: SELECT sum(z) AS total FROM bad_child
          - name: good
            sql: SELECT id, x + 100 AS g FROM a
            write: {connection: out, path: good.csv}
          - name: good_child
            sql: SELECT max(g) AS top FROM good
        """,
    "data/a.csv": """
        id,x
        1,10
        2,20
        3,30
        """,
}
FAIL_ORDER = ["src", "a", "bad", "bad_child", "bad_grandchild", "good", "good_child"]


def test_failure_blocks_dependants_keeps_outputs_and_recovers(project: Any) -> None:
    root = project(FAIL_PROJECT)
    yaml_path = root / "odibi.yaml"
    assert executed(build(root, "-j", "1")) == set(FAIL_ORDER)
    old = odibi_outputs(root, FAIL_ORDER)
    old_export = (root / "out" / "bad_child.csv").read_bytes()

    # bad fails at run time (it validates); good changes too, in an independent branch
    replace_text(yaml_path, "x * 2 AS y", "CAST('x' AS INTEGER) AS y")
    replace_text(yaml_path, "x + 100 AS g", "x + 200 AS g")
    assert odibi(root, "validate").code == 0
    report = build(root, "-j", "1", code=1)
    assert report["ok"] is False
    assert outcomes(report) == {"bad": "failed", "bad_child": "blocked",
                                "bad_grandchild": "blocked", "good": "built", "good_child": "built"}
    assert "Could not convert string 'x'" in report["nodes"]["bad"]["error"]
    assert report["nodes"]["bad_child"]["because"] == "bad"
    assert report["nodes"]["bad_grandchild"]["because"] == "bad"
    now = odibi_outputs(root, FAIL_ORDER)
    for n in ("src", "a", "bad", "bad_child", "bad_grandchild"):  # earlier outputs survive
        assert now[n] == old[n], n
    assert (root / "out" / "bad_child.csv").read_bytes() == old_export
    assert now["good"][1] == ((1, 210), (2, 220), (3, 230))
    assert now["good_child"][1] == ((230,),)
    assert b"210" in (root / "out" / "good.csv").read_bytes()

    # not fixed: the same fingerprint failed last time, and is tried again; nothing else runs
    plan = explain(root)
    assert {n for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {"bad", "bad_child", "bad_grandchild"}
    assert summaries(plan["bad"]) == ["last build failed", "sql changed"]
    assert summaries(plan["bad_child"]) == ["upstream rebuilt: bad"]
    assert summaries(plan["bad_grandchild"]) == ["upstream rebuilt: bad_child"]
    r = odibi(root, "build", "-j", "1")
    assert r.code == 1
    assert re.search(r"^bad +rebuild: last build failed$", r.out, re.M), r.out
    assert "failed bad: Conversion Error" in r.err
    assert "2 blocked because bad failed" in r.out
    assert not re.search(r"^(good|good_child|src|a) ", r.out, re.M), r.out

    # fixed (to new SQL): the failed node and its dependants run, nothing else
    replace_text(yaml_path, "CAST('x' AS INTEGER) AS y", "x * 3 AS y")
    plan = explain(root)
    assert summaries(plan["bad"]) == ["sql changed"]
    assert {n for n, e in plan.items() if e["status"] != "up-to-date"} == \
        {"bad", "bad_child", "bad_grandchild"}
    report = build(root, "-j", "1")
    assert outcomes(report) == {"bad": "built", "bad_child": "built", "bad_grandchild": "built"}
    now = odibi_outputs(root, FAIL_ORDER)
    assert now["bad_child"][1] == ((1, 31), (2, 61), (3, 91))
    assert now["bad_grandchild"][1] == ((183,),)
    assert (root / "out" / "bad_child.csv").read_bytes().splitlines()[1:] == \
        [b"1,31", b"2,61", b"3,91"]
    assert_noop(root)


def test_failed_node_fixed_by_reverting_is_up_to_date(project: Any) -> None:
    """Reverting a broken node to the SQL it was last built from needs no rebuild: its
    output and its dependants' are still those of that fingerprint."""
    root = project(FAIL_PROJECT)
    build(root, "-j", "1")
    old = odibi_outputs(root, FAIL_ORDER)
    replace_text(root / "odibi.yaml", "x * 2 AS y", "CAST('x' AS INTEGER) AS y")
    assert outcomes(build(root, "-j", "1", code=1)) == \
        {"bad": "failed", "bad_child": "blocked", "bad_grandchild": "blocked"}
    replace_text(root / "odibi.yaml", "CAST('x' AS INTEGER) AS y", "x * 2 AS y")
    assert_noop(root)
    assert odibi_outputs(root, FAIL_ORDER) == old


# -- 7. a Python node ------------------------------------------------------------------------
def test_python_change_rebuilds_the_node_and_its_dependants(shop: Path) -> None:
    module = shop / "transforms" / "segments.py"
    check_closure(shop, SHOP_ORDER, SHOP_PARENTS, {"customer_segments"},
                  lambda: replace_text(module, "VIP_REVENUE = 500.0", "VIP_REVENUE = 300.0"),
                  {"customer_segments": ["python changed: transforms/segments.py"]})
    with warehouse(shop) as con:
        vip = {r[0] for r in con.execute(
            "SELECT customer_id FROM main.customer_orders WHERE revenue >= 300 AND orders > 0"
        ).fetchall()}
    parquet = shop / "output" / "customer_segments.parquet"
    con = duckdb.connect()
    try:
        exported = {r[0] for r in con.execute(
            f"SELECT customer_id FROM read_parquet('{parquet}') WHERE segment = 'vip'").fetchall()}
    finally:
        con.close()
    assert exported == vip
