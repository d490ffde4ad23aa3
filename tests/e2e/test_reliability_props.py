"""Random edit sequences on random DAGs against a brute-force reference model (issue #9,
"Property tests"; the closure tests on fixed DAGs are in test_incremental.py).

The model holds a project as plain values (each SQL node's constant, whether it comes from
a variable, its `version`, its formatting; the source's rows and read options), renders it
to YAML, and computes what every node should contain by running the SQL itself in an
in-memory DuckDB (a clean build from scratch). It also models odibi's rebuilder from
DESIGN §2: a node's fingerprint is its own definition plus its upstream fingerprints; a
node whose fingerprint was built before is restored; a node whose own definition did not
change and whose inputs came out as they were when it was last built is cut off; any other
changed node executes. After every build:

- the set of nodes odibi executed equals the model's;
- every output equals the clean build's, and the next build has nothing to do;
- at the end of the sequence, odibi.lock equals that of a clean build from scratch.

Edits: a SQL constant, a variable, a config key (`version`), the source's bytes, a read
option that leaves the data as it is, a touch (mtime only), a reformat (case, spacing,
comments) and a revert to any earlier state (as `git checkout` does).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.e2e.test_incremental import (
    assert_noop, build, contents, executed, odibi_outputs, touch_later, write_later,
)


@dataclass(frozen=True)
class Node:
    name: str
    parents: tuple[str, ...]
    const: int
    from_var: bool  # the constant is `${vars.c_NAME}`
    version: int = 0  # 0: no `version` key
    style: int = 0  # formatting only: 0 plain, 1 lower case and a comment, 2 spread out

    def sql(self, literal: bool = False) -> str:
        c = str(self.const) if literal or not self.from_var else f"${{vars.c_{self.name}}}"
        a = self.parents[0]
        if len(self.parents) == 1:
            text = f"SELECT id, k, v FROM {a} WHERE v > {c}"
        else:
            b = self.parents[1]
            text = (f"SELECT x.id, x.k, (x.v + coalesce(y.v, 0) + {c}) % 101 AS v "
                    f"FROM {a} AS x LEFT JOIN {b} AS y USING (id)")
        if literal or self.style == 0:
            return text
        if self.style == 1:
            return text.lower().replace("select", "select -- odd\n")
        return text.replace(" FROM ", "\n      FROM   ").replace(" WHERE ", "\n      WHERE  ")

    @property
    def own(self) -> tuple:
        return (self.parents, self.const, self.version)


@dataclass(frozen=True)
class State:
    nodes: tuple[Node, ...]
    seed: int = 0  # the source's rows
    header: bool = False  # read option `header: true` (what DuckDB detects anyway)

    def rows(self) -> str:
        return "id,k,v\n" + "".join(
            f"{i},{(i * 7 + self.seed) % 5},{(i * 37 + self.seed * 11) % 101}\n"
            for i in range(30))


def write_project(root: Path, s: State) -> None:
    lines = ["project: props", "connections:", "  raw: {type: local, base_path: data}", "vars:"]
    lines += [f"  c_{n.name}: {n.const}" for n in s.nodes if n.from_var] or ["  unused: 0"]
    options = ", options: {header: true}" if s.header else ""
    lines += ["nodes:", "  - name: src", f"    read: {{connection: raw, path: src.csv{options}}}"]
    for n in s.nodes:
        lines += [f"  - name: {n.name}", "    sql: |"]
        lines += [f"      {line}" for line in n.sql().split("\n")]
        if n.version:
            lines.append(f"    version: '{n.version}'")
    update(root / "odibi.yaml", "\n".join(lines) + "\n")
    update(root / "data" / "src.csv", s.rows())


def update(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_later(path, text)


def clean_outputs(s: State) -> dict[str, Any]:
    """Every node's contents, run directly in DuckDB: a clean build from scratch."""
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE src (id BIGINT, k BIGINT, v BIGINT)")
        con.execute("INSERT INTO src VALUES " + ", ".join(
            f"({line})" for line in s.rows().splitlines()[1:]))
        for n in s.nodes:
            con.execute(f"CREATE TABLE {n.name} AS {n.sql(literal=True)}")
        return {n: contents(con, n) for n in ["src", *(x.name for x in s.nodes)]}
    finally:
        con.close()


@dataclass
class Model:
    """What odibi has built: per node, the fingerprint of its current output, its own
    definition then, the upstream outputs it was built from, and every stored version."""
    last: dict[str, tuple] = field(default_factory=dict)
    own: dict[str, tuple] = field(default_factory=dict)
    built_from: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    store: dict[tuple, tuple[Any, dict[str, Any]]] = field(default_factory=dict)

    def build(self, s: State) -> set[str]:
        """Apply a build of `s`; the nodes it executes."""
        clean = clean_outputs(s)
        parents = {"src": ()} | {n.name: n.parents for n in s.nodes}
        own = {"src": (s.seed, s.header)} | {n.name: n.own for n in s.nodes}
        fp: dict[str, tuple] = {}
        ran = set()
        for name in ["src", *(n.name for n in s.nodes)]:
            fp[name] = (name, own[name], tuple(fp[p] for p in parents[name]))
            inputs = {p: self.output[p] for p in parents[name]}
            if self.last.get(name) == fp[name]:
                continue
            if fp[name] in self.store:
                self.output[name], self.built_from[name] = self.store[fp[name]]
            elif self.own.get(name) == own[name] and self.built_from.get(name) == inputs:
                pass  # cut off: what it would compute is what it has
            else:
                ran.add(name)
                self.output[name], self.built_from[name] = clean[name], inputs
            self.last[name], self.own[name] = fp[name], own[name]
            self.store[fp[name]] = (self.output[name], self.built_from[name])
        assert self.output == clean, "the model disagrees with a clean build"
        return ran


@st.composite
def dags(draw: st.DrawFn) -> State:
    nodes: list[Node] = []
    for i in range(draw(st.integers(2, 6))):
        pool = ["src", *(n.name for n in nodes)]
        k = draw(st.integers(1, min(2, len(pool))))
        parents = tuple(draw(st.lists(st.sampled_from(pool), min_size=k, max_size=k,
                                      unique=True)))
        nodes.append(Node(f"t{i}", parents, draw(st.integers(0, 60)), draw(st.booleans())))
    return State(tuple(nodes))


EDITS = ("sql", "var", "config", "source", "option", "touch", "reformat", "revert")


def edit(draw: st.DrawFn, s: State, history: list[State], root: Path) -> State:
    kind = draw(st.sampled_from(EDITS))
    i = draw(st.integers(0, len(s.nodes) - 1))
    n = s.nodes[i]

    def swap(new: Node) -> State:
        return replace(s, nodes=s.nodes[:i] + (new,) + s.nodes[i + 1:])

    if kind in ("sql", "var"):  # a constant in the SQL or in `vars:`, whichever it is in
        return swap(replace(n, const=draw(st.integers(0, 60))))
    if kind == "config":
        return swap(replace(n, version=n.version + 1))
    if kind == "source":
        return replace(s, seed=draw(st.integers(0, 4)))
    if kind == "option":
        return replace(s, header=not s.header)
    if kind == "reformat":
        return swap(replace(n, style=(n.style + draw(st.integers(1, 2))) % 3))
    if kind == "touch":
        touch_later(root / draw(st.sampled_from(["odibi.yaml", "data/src.csv"])))
        return s
    return draw(st.sampled_from(history))  # revert to any earlier state


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_edit_sequence_runs_what_the_model_says_and_ends_as_a_clean_build(data) -> None:
    s = data.draw(dags(), label="dag")
    model = Model()
    history = [s]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        for step in range(data.draw(st.integers(2, 6), label="builds")):
            if step:
                s = edit(data.draw, s, history, root)
                history.append(s)
            write_project(root, s)
            want = model.build(s)
            report = build(root)
            assert executed(report) == want, (step, s, report["nodes"])
            assert_noop(root)  # and it leaves the warehouse's views on the right versions
            names = ["src", *(n.name for n in s.nodes)]
            assert odibi_outputs(root, names) == {n: model.output[n] for n in names}
        clean = Path(tmp) / "clean"
        write_project(clean, s)
        build(clean)
        assert (root / "odibi.lock").read_bytes() == (clean / "odibi.lock").read_bytes()


def test_a_node_left_out_while_its_upstream_changed_and_came_back_is_not_rebuilt(
        tmp_path: Path) -> None:
    """Found by the bad-data tests: `b` was built from `a`'s output O1; `a` alone was then
    rebuilt (O2); reverting `a` restores O1, so `b` has nothing to do. The planner compared
    `b`'s inputs with O2 (what `a` held before the build), not O1 (what the restore puts
    back), and rebuilt `b` into the store table it already had."""
    s = State((Node("a", ("src",), 10, False), Node("b", ("a",), 0, False)))
    root = tmp_path / "p"
    write_project(root, s)
    build(root)
    write_project(root, replace(s, seed=3))
    assert executed(build(root, "+a")) == {"src", "a"}
    write_project(root, s)
    report = build(root)
    assert executed(report) == set(), report["nodes"]
    assert {n: e.get("outcome") for n, e in report["nodes"].items()} == {
        "src": "restored", "a": "restored", "b": None}
    assert_noop(root)
    assert odibi_outputs(root, ["src", "a", "b"]) == clean_outputs(s)


# -- selections: a target is brought up to date (Make), or run alone (--only) ---------------
# Issue #15: random selections on the same random DAGs and edit sequences, each explained and
# built with a cold and a warm cache. The reference below extends `Model` with selections:
# - `build SEL` considers SEL and every ancestor; exactly those that are not up to date are
#   acted on (`explain SEL` predicts that set), and of those the model says which execute;
# - `build --only SEL` considers SEL alone; an unselected ancestor that is out of date is
#   read as it is (its recorded fingerprint chains on), and named in `stale_unselected`; a
#   selected node whose upstream was never built is blocked.
def compute(n: Node, inputs: dict[str, Any]) -> Any:
    """A node's output from the outputs its upstream nodes hold now (for --only)."""
    con = duckdb.connect()
    try:
        for name, (schema, rows) in inputs.items():
            con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in schema)})")
            if rows:
                con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(schema))})",
                                [list(r) for r in rows])
        return contents(con, f"({n.sql(literal=True)})")
    finally:
        con.close()


@dataclass
class SelectionModel(Model):
    def plan_and_build(self, s: State, selection: list[str], only: bool
                       ) -> tuple[set[str], set[str], set[str], list[str]]:
        """(acted on: what explain lists to run, executed, blocked, stale ancestors left
        out) of a build of `selection`; applies it."""
        clean = clean_outputs(s)
        nodes = {n.name: n for n in s.nodes}
        parents = {"src": ()} | {n.name: n.parents for n in s.nodes}
        own = {"src": (s.seed, s.header)} | {n.name: n.own for n in s.nodes}
        order = ["src", *nodes]
        considered = set(selection)
        if not only:
            for name in reversed(order):
                if name in considered:
                    considered |= set(parents[name])
        fp: dict[str, tuple | None] = {}
        acted, ran, blocked, stale = set(), set(), set(), set()
        for name in order:
            ups = [fp[p] for p in parents[name]]
            mine = None if any(u is None for u in ups) else (name, own[name], tuple(ups))
            if name not in considered:
                current = mine is not None and self.last.get(name) == mine
                fp[name] = mine if current else self.last.get(name)
                if not current and name in self.last:
                    stale.add(name)
                continue
            if mine is None:
                blocked.add(name)
                fp[name] = None
                continue
            fp[name] = mine
            inputs = {p: self.output[p] for p in parents[name]}
            if self.last.get(name) == mine and self.built_from.get(name) == inputs:
                continue
            acted.add(name)
            if mine in self.store:
                self.output[name], self.built_from[name] = self.store[mine]
            elif self.own.get(name) == own[name] and self.built_from.get(name) == inputs:
                pass  # cut off
            else:
                ran.add(name)
                out = clean["src"] if name == "src" else compute(nodes[name], inputs)
                self.output[name], self.built_from[name] = out, inputs
            self.last[name], self.own[name] = mine, own[name]
            self.store[mine] = (self.output[name], self.built_from[name])
        if not only:
            assert all(self.output[n] == clean[n] for n in considered), "model != clean build"
        reads = set()
        for name in reversed(order):
            if name in considered or name in reads:
                reads |= set(parents[name])
        left_out = [n for n in order if n in stale and n in reads]
        return acted, ran, blocked, left_out


def cool(root: Path) -> None:
    """Empty every cache of the build state (parses, file digests, the resolved project),
    keeping what was built: the next command starts cold."""
    import sqlite3

    con = sqlite3.connect(root / ".odibi" / "state.db")
    with con:
        for table in ("file_cache", "sql_cache", "yaml_cache", "project_cache"):
            con.execute(f"DELETE FROM {table}")
    con.close()


def explained(root: Path, args: list[str]) -> tuple[set[str], list[str], set[str]]:
    r = run_cli("-C", str(root), "--json", "explain", *args)
    assert r.code == 0, r.text
    doc = json.loads(r.out)
    to_run = {n["node"] for n in doc["nodes"] if n["status"] in ("rebuild", "restore")}
    blocked = {n["node"] for n in doc["nodes"] if n["status"] == "blocked"}
    return to_run, doc["stale_unselected"], blocked


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_selection_acts_on_exactly_what_the_reference_says_cold_or_warm(data) -> None:
    s = data.draw(dags(), label="dag")
    model = SelectionModel()
    history = [s]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        for step in range(data.draw(st.integers(2, 5), label="builds")):
            if step:
                s = edit(data.draw, s, history, root)
                history.append(s)
            write_project(root, s)
            names = ["src", *(n.name for n in s.nodes)]
            selection = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2,
                                           unique=True), label="selection")
            only = data.draw(st.booleans(), label="only")
            args = (["--only"] if only else []) + (
                ["-s", *selection] if data.draw(st.booleans(), label="-s") else selection)
            acted, ran, blocked, left_out = model.plan_and_build(s, selection, only)
            for cold in (False, True):  # explain predicts it, whatever the caches hold
                if cold and (root / ".odibi").exists():
                    cool(root)
                assert explained(root, args) == (acted, left_out, blocked), (step, cold, args)
            if data.draw(st.booleans(), label="build cold") and (root / ".odibi").exists():
                cool(root)
            report = build(root, *args, code=1 if blocked else 0)
            assert executed(report) == ran, (step, args, report["nodes"])
            touched = {n for n, v in report["nodes"].items()
                       if v.get("outcome") in ("built", "restored", "cut off")}
            assert touched == acted, (step, args, report["nodes"])
            if not blocked:
                assert_noop(root, *args)
            if model.output:
                assert odibi_outputs(root, list(model.output)) == model.output
        # a full build afterwards ends exactly as a clean build from scratch
        build(root)
        assert odibi_outputs(root, names) == clean_outputs(s)
        clean = Path(tmp) / "clean"
        write_project(clean, s)
        build(clean)
        assert (root / "odibi.lock").read_bytes() == (clean / "odibi.lock").read_bytes()
