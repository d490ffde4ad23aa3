"""The rebuilder against pure inputs: small graphs, hand-made own parts and traces, and the
exact (node, status, reasons) of each plan (ninja style), plus what users read of them
(`ReasonDetail.summary()`), `root_cause`, and properties on random DAGs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odibi.fingerprint import SCHEME, OwnParts, chain
from odibi.graph import Graph, build_graph, descendants
from odibi.hashing import digest_parts, digest_text
from odibi.ids import Digest, NodeId, NodeKind, OutputRef
from odibi.planner import (
    OutputCheck,
    Plan,
    PlanInputs,
    PlanOptions,
    Reason,
    ReasonDetail,
    Status,
    plan,
    root_cause,
)
from odibi.state import Export, Trace

R = ReasonDetail
REBUILD, UP, REEXPORT, REVALIDATE, BLOCKED = (Status.REBUILD, Status.UP_TO_DATE,
                                               Status.REEXPORT, Status.REVALIDATE,
                                               Status.BLOCKED)


# -- helpers ------------------------------------------------------------------------------
def canon(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def parts(kind: NodeKind = NodeKind.SQL, *, logic: str = "logic", config: Mapping[str, str] = {},
          vars: Mapping[str, str] = {}, sources: Mapping[str, tuple[str, int]] = {},
          contracts: str = "contracts", validate: str = "validate", write: str = "write",
          sql: str | None = None, python_file: str | None = None) -> OwnParts:
    """OwnParts as `own_parts` would make them: the digest covers kind, logic, config, vars
    and source digests; for SQL `logic` stands for the parse tree and `sql` for the text."""
    logic_d = digest_text(logic)
    digest = digest_parts(str(SCHEME), kind.value, logic_d, canon(dict(config)),
                          canon(dict(vars)), canon(sorted((k, d) for k, (d, _) in sources.items())))
    if kind is NodeKind.SQL and sql is None:
        sql = f"SELECT 1 -- {logic}"
    return OwnParts(kind, logic_d, dict(config), dict(vars),
                    {k: (Digest(d), n) for k, (d, n) in sources.items()}, digest,
                    digest_text(contracts), digest_text(validate), digest_text(write),
                    sql_text=sql, text_digest=digest_text(sql) if sql is not None else None,
                    python_file=python_file)


def g(deps: Mapping[str, list[str]]) -> Graph:
    return build_graph({NodeId(n): [NodeId(d) for d in ds] for n, ds in deps.items()})


def fingerprints(graph: Graph, own: Mapping[str, OwnParts]) -> dict[NodeId, Digest]:
    fps: dict[NodeId, Digest] = {}
    for n in graph.names:
        fps[n] = chain(own[n].digest, {u: fps[u] for u in graph.upstream(n)})
    return fps


def trace_of(name: str, own: OwnParts, upstream: Mapping[NodeId, Digest],
             exports: tuple[Export, ...] = ()) -> Trace:
    """The trace a successful build of `own` records, through its JSON form (as stored)."""
    fp = chain(own.digest, upstream)
    t = Trace(fingerprint=fp, kind=own.kind.value, parts=own.as_trace_parts(upstream),
              stored=OutputRef.of(NodeId(name), fp), output=digest_text(f"output of {name} {fp}"), rows=3,
              schema=("x INTEGER",), exports=exports, write_key=own.write_key,
              validate_key=own.validate_key, contracts_key=own.contracts_key,
              sql_text=own.sql_text, text_digest=own.text_digest)
    return Trace.from_json(t.to_json())


def built(graph: Graph, own: Mapping[str, OwnParts], only: set[str] | None = None
          ) -> dict[NodeId, Trace]:
    """Traces of a complete, successful build of `own` (of `only`, if given)."""
    fps = fingerprints(graph, own)
    return {n: trace_of(n, own[n], {u: fps[u] for u in graph.upstream(n)})
            for n in graph.names if only is None or n in only}


def make_plan(graph: Graph, own: Mapping[str, OwnParts], traces: Mapping[NodeId, Trace],
              *, select: set[str] | None = None, forced: set[str] = set(),
              failures: Mapping[str, Digest] = {}, outputs: Mapping[str, OutputCheck] = {},
              always_run: set[str] = set(), source_names: Mapping[str, str] = {},
              only: bool = False, guards: Mapping[str, tuple[str, ...]] = {},
              stored: Mapping[tuple[NodeId, Digest], Trace] = {},
              exclude: set[str] = set()) -> Plan:
    inputs = PlanInputs(graph=graph, own={NodeId(k): v for k, v in own.items()}, traces=traces,
                        failures={NodeId(k): v for k, v in failures.items()},
                        outputs={NodeId(k): v for k, v in outputs.items()},
                        always_run=frozenset(NodeId(n) for n in always_run),
                        source_names=dict(source_names), stored=stored,
                        guards={NodeId(k): tuple(map(NodeId, v)) for k, v in guards.items()})
    selection = frozenset(graph.names) if select is None else frozenset(map(NodeId, select))
    excluded = frozenset(map(NodeId, exclude))
    return plan(inputs, PlanOptions(selection - excluded, frozenset(map(NodeId, forced)), only,
                                    excluded))


def rows(p: Plan) -> list[tuple[str, Status, tuple[ReasonDetail, ...]]]:
    return [(s.node, s.status, s.reasons) for s in p.steps]


# raw_orders (read) -> stg_orders (sql) -> order_totals (sql) -> report (python)
CHAIN = g({"raw_orders": [], "stg_orders": ["raw_orders"], "order_totals": ["stg_orders"],
           "report": ["order_totals"]})
ORDERS = "raw:orders.csv"
NAMES = {ORDERS: "data/orders.csv", "raw:orders_2.csv": "data/orders_2.csv"}
STG_SQL = "SELECT order_id, amount\nFROM raw_orders\nWHERE amount > 0"


def chain_parts(**changes: OwnParts) -> dict[str, OwnParts]:
    own = {
        "raw_orders": parts(NodeKind.READ, logic="csv {}",
                            config={"read.connection": '"raw"', "read.format": '"csv"',
                                    "read.options.delim": '","', "read.path": '"orders.csv"'},
                            sources={ORDERS: ("d_orders_1", 12_100)}),
        "stg_orders": parts(logic="tree stg 1", sql=STG_SQL, vars={"min_amount": "0"}),
        "order_totals": parts(logic="tree totals", sql="SELECT sum(amount) FROM stg_orders",
                              write="write totals.csv"),
        "report": parts(NodeKind.PYTHON, logic="module v1", config={"python": '"t.v:score"'},
                        python_file="transforms/value.py"),
    }
    own.update(changes)
    return own


BASE = chain_parts()
BASE_TRACES = built(CHAIN, BASE)
UPSTREAM_OF_REPORT = (R(Reason.UPSTREAM_REBUILT, "order_totals"),)


def downstream_of_stg() -> list[tuple[str, Status, tuple[ReasonDetail, ...]]]:
    return [("order_totals", REBUILD, (R(Reason.UPSTREAM_REBUILT, "stg_orders"),)),
            ("report", REBUILD, UPSTREAM_OF_REPORT)]


# -- nothing built / nothing changed --------------------------------------------------------
def test_every_node_is_new_before_any_build() -> None:
    p = make_plan(CHAIN, BASE, {})
    assert rows(p) == [(n, REBUILD, (R(Reason.NEW),))
                       for n in ("raw_orders", "stg_orders", "order_totals", "report")]
    assert p.stale_unselected == ()
    assert [s.headline for s in p.steps] == ["new node"] * 4
    assert len(p.to_run()) == 4


def test_equal_fingerprints_are_up_to_date() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES)
    assert rows(p) == [(n, UP, ()) for n in CHAIN.names]
    assert all(s.notes == () for s in p.steps)
    assert p.to_run() == ()
    assert p.count(UP) == 4
    # what the build would record is exactly what the last build recorded
    assert {s.node: s.fingerprint for s in p.steps} == {n: t.fingerprint
                                                        for n, t in BASE_TRACES.items()}


def test_a_node_added_to_a_built_project_is_new_and_nothing_else_runs() -> None:
    graph = g({"raw_orders": [], "stg_orders": ["raw_orders"], "order_totals": ["stg_orders"],
               "report": ["order_totals"], "extra": ["stg_orders"]})
    own = {**BASE, "extra": parts(logic="tree extra")}
    p = make_plan(graph, own, BASE_TRACES)
    assert [(n, s, r) for n, s, r in rows(p) if s is not UP] == [
        ("extra", REBUILD, (R(Reason.NEW),))]


# -- the node's own parts ---------------------------------------------------------------------
def test_sql_changed_gives_a_unified_diff_of_the_old_and_new_sql() -> None:
    new_sql = "SELECT order_id, amount\nFROM raw_orders\nWHERE amount > 1"
    own = chain_parts(stg_orders=parts(logic="tree stg 2", sql=new_sql,
                                       vars={"min_amount": "0"}))
    p = make_plan(CHAIN, own, BASE_TRACES)
    diff = ("--- last build\n+++ now\n@@ -1,3 +1,3 @@\n"
            " SELECT order_id, amount\n FROM raw_orders\n-WHERE amount > 0\n+WHERE amount > 1")
    assert rows(p) == [("raw_orders", UP, ()),
                       ("stg_orders", REBUILD, (R(Reason.SQL_CHANGED, diff=diff),)),
                       *downstream_of_stg()]
    assert p.by_name[NodeId("stg_orders")].headline == "sql changed"


def test_sql_reformatted_only_is_a_note_not_a_reason() -> None:
    reformatted = "select order_id, amount from raw_orders  -- only positive\nwhere amount > 0"
    own = chain_parts(stg_orders=parts(logic="tree stg 1", sql=reformatted,
                                       vars={"min_amount": "0"}))
    assert own["stg_orders"].digest == BASE["stg_orders"].digest
    assert own["stg_orders"].text_digest != BASE["stg_orders"].text_digest
    p = make_plan(CHAIN, own, BASE_TRACES)
    assert rows(p) == [(n, UP, ()) for n in CHAIN.names]
    step = p.by_name[NodeId("stg_orders")]
    diff = ("--- last build\n+++ now\n@@ -1,3 +1,2 @@\n"
            "-SELECT order_id, amount\n-FROM raw_orders\n-WHERE amount > 0\n"
            "+select order_id, amount from raw_orders  -- only positive\n+where amount > 0")
    assert step.notes == (R(Reason.SQL_REFORMATTED, diff=diff),)
    assert step.notes[0].summary() == "sql reformatted only"
    assert p.to_run() == ()


def test_python_changed_names_the_module_file() -> None:
    own = chain_parts(report=parts(NodeKind.PYTHON, logic="module v2",
                                   config={"python": '"t.v:score"'},
                                   python_file="transforms/value.py"))
    p = make_plan(CHAIN, own, BASE_TRACES)
    assert rows(p)[-1] == ("report", REBUILD, (R(Reason.PYTHON_CHANGED, "transforms/value.py"),))
    assert [s.status for s in p.steps[:3]] == [UP, UP, UP]
    assert p.by_name[NodeId("report")].headline == "python changed: transforms/value.py"


def test_config_changed_shows_the_key_path_and_user_values() -> None:
    raw = parts(NodeKind.READ, logic="csv {delim: ;}",
                config={"read.connection": '"raw"', "read.format": '"csv"',
                        "read.options.delim": '";"', "read.path": '"orders.csv"'},
                sources={ORDERS: ("d_orders_1", 12_100)})
    p = make_plan(CHAIN, chain_parts(raw_orders=raw), BASE_TRACES)
    detail = R(Reason.CONFIG_CHANGED, "read.options.delim", "','", "';'")
    assert rows(p) == [("raw_orders", REBUILD, (detail,)),
                       ("stg_orders", REBUILD, (R(Reason.UPSTREAM_REBUILT, "raw_orders"),)),
                       ("order_totals", REBUILD, (R(Reason.UPSTREAM_REBUILT, "stg_orders"),)),
                       ("report", REBUILD, UPSTREAM_OF_REPORT)]
    assert detail.summary() == "config changed: read.options.delim ',' -> ';'"


def test_config_key_added_and_removed_show_unset() -> None:
    old = parts(config={"version": '"1"'})
    new = parts(config={"materialize": "true"})
    graph = g({"a": []})
    p = make_plan(graph, {"a": new}, built(graph, {"a": old}))
    assert rows(p) == [("a", REBUILD, (R(Reason.CONFIG_CHANGED, "materialize", None, "true"),
                                       R(Reason.CONFIG_CHANGED, "version", "'1'", None)))]
    assert [r.summary() for r in p.steps[0].reasons] == [
        "config changed: materialize (unset) -> true",
        "config changed: version '1' -> (unset)"]


def test_var_changed_shows_old_and_new_value() -> None:
    own = chain_parts(stg_orders=parts(logic="tree stg 1", sql=STG_SQL, vars={"min_amount": "5"}))
    p = make_plan(CHAIN, own, BASE_TRACES)
    detail = R(Reason.VAR_CHANGED, "min_amount", "0", "5")
    assert rows(p) == [("raw_orders", UP, ()), ("stg_orders", REBUILD, (detail,)),
                       *downstream_of_stg()]
    assert detail.summary() == "var changed: min_amount 0 -> 5"


def test_string_var_changed_is_shown_quoted() -> None:
    graph = g({"a": []})
    p = make_plan(graph, {"a": parts(vars={"currency": '"USD"'})},
                  built(graph, {"a": parts(vars={"currency": '"EUR"'})}))
    assert p.steps[0].reasons == (R(Reason.VAR_CHANGED, "currency", "'EUR'", "'USD'"),)
    assert p.steps[0].headline == "var changed: currency 'EUR' -> 'USD'"


def _raw_with(sources: Mapping[str, tuple[str, int]]) -> OwnParts:
    return replace(BASE["raw_orders"], sources={k: (Digest(d), n) for k, (d, n) in sources.items()},
                   digest=parts(NodeKind.READ, logic="csv {}", config=BASE["raw_orders"].config,
                                sources=sources).digest)


def test_source_changed_names_the_file_with_both_sizes() -> None:
    own = chain_parts(raw_orders=_raw_with({ORDERS: ("d_orders_2", 12_400)}))
    p = make_plan(CHAIN, own, BASE_TRACES, source_names=NAMES)
    detail = R(Reason.SOURCE_CHANGED, "data/orders.csv (12.1 kB -> 12.4 kB)")
    assert rows(p) == [("raw_orders", REBUILD, (detail,)),
                       ("stg_orders", REBUILD, (R(Reason.UPSTREAM_REBUILT, "raw_orders"),)),
                       ("order_totals", REBUILD, (R(Reason.UPSTREAM_REBUILT, "stg_orders"),)),
                       ("report", REBUILD, UPSTREAM_OF_REPORT)]
    assert detail.summary() == "source changed: data/orders.csv (12.1 kB -> 12.4 kB)"


def test_source_changed_with_the_same_size_and_small_and_large_sizes() -> None:
    same = make_plan(CHAIN, chain_parts(raw_orders=_raw_with({ORDERS: ("d2", 12_100)})),
                     BASE_TRACES, source_names=NAMES)
    assert same.steps[0].reasons == (R(Reason.SOURCE_CHANGED, "data/orders.csv (same size)"),)
    graph = g({"raw": []})
    old = parts(NodeKind.READ, sources={"raw:x.csv": ("d1", 999)})
    new = parts(NodeKind.READ, sources={"raw:x.csv": ("d2", 2_500_000)})
    p = make_plan(graph, {"raw": new}, built(graph, {"raw": old}))  # no display name known
    assert p.steps[0].reasons == (R(Reason.SOURCE_CHANGED, "raw:x.csv (999 B -> 2.5 MB)"),)


def test_source_added_and_removed() -> None:
    added = make_plan(CHAIN, chain_parts(raw_orders=_raw_with({
        ORDERS: ("d_orders_1", 12_100), "raw:orders_2.csv": ("d_o2", 10)})),
        BASE_TRACES, source_names=NAMES)
    assert rows(added)[0] == ("raw_orders", REBUILD,
                              (R(Reason.SOURCE_ADDED, "data/orders_2.csv"),))
    assert added.steps[0].headline == "source added: data/orders_2.csv"
    two = chain_parts(raw_orders=_raw_with({ORDERS: ("d_orders_1", 12_100),
                                            "raw:orders_2.csv": ("d_o2", 10)}))
    removed = make_plan(CHAIN, chain_parts(), built(CHAIN, two), source_names=NAMES)
    assert rows(removed)[0] == ("raw_orders", REBUILD,
                                (R(Reason.SOURCE_REMOVED, "data/orders_2.csv"),))
    assert removed.steps[0].headline == "source removed: data/orders_2.csv"


def test_several_changes_are_all_listed() -> None:
    own = chain_parts(stg_orders=parts(logic="tree stg 2", sql=STG_SQL + " AND 1=1",
                                       vars={"min_amount": "5"}))
    p = make_plan(CHAIN, own, BASE_TRACES)
    reasons = p.by_name[NodeId("stg_orders")].reasons
    assert [r.reason for r in reasons] == [Reason.SQL_CHANGED, Reason.VAR_CHANGED]
    assert reasons[1] == R(Reason.VAR_CHANGED, "min_amount", "0", "5")


# -- upstream and root cause ------------------------------------------------------------------
def test_upstream_rebuilt_names_the_upstream_and_root_cause_reaches_the_source() -> None:
    own = chain_parts(raw_orders=_raw_with({ORDERS: ("d_orders_2", 12_400)}))
    p = make_plan(CHAIN, own, BASE_TRACES, source_names=NAMES)
    source = R(Reason.SOURCE_CHANGED, "data/orders.csv (12.1 kB -> 12.4 kB)")
    assert root_cause(p, NodeId("report"), CHAIN) == [
        ("report", R(Reason.UPSTREAM_REBUILT, "order_totals")),
        ("order_totals", R(Reason.UPSTREAM_REBUILT, "stg_orders")),
        ("stg_orders", R(Reason.UPSTREAM_REBUILT, "raw_orders")),
        ("raw_orders", source),
    ]
    assert root_cause(p, NodeId("raw_orders"), CHAIN) == [("raw_orders", source)]


def test_root_cause_stops_at_a_node_with_its_own_reason_as_well() -> None:
    own = chain_parts(raw_orders=_raw_with({ORDERS: ("d_orders_2", 12_400)}),
                      stg_orders=parts(logic="tree stg 1", sql=STG_SQL, vars={"min_amount": "5"}))
    p = make_plan(CHAIN, own, BASE_TRACES, source_names=NAMES)
    assert p.by_name[NodeId("stg_orders")].reasons == (
        R(Reason.VAR_CHANGED, "min_amount", "0", "5"),
        R(Reason.UPSTREAM_REBUILT, "raw_orders"))
    assert root_cause(p, NodeId("report"), CHAIN) == [
        ("report", R(Reason.UPSTREAM_REBUILT, "order_totals")),
        ("order_totals", R(Reason.UPSTREAM_REBUILT, "stg_orders")),
        ("stg_orders", R(Reason.VAR_CHANGED, "min_amount", "0", "5")),
    ]


def test_two_rebuilt_upstreams_are_both_named_sorted() -> None:
    graph = g({"m_left": [], "b_right": [], "join": ["m_left", "b_right"]})
    old = {"m_left": parts(logic="l1"), "b_right": parts(logic="r1"), "join": parts(logic="j")}
    new = {**old, "m_left": parts(logic="l2"), "b_right": parts(logic="r2")}
    p = make_plan(graph, new, built(graph, old))
    assert p.by_name[NodeId("join")].reasons == (R(Reason.UPSTREAM_REBUILT, "b_right, m_left"),)


def test_upstream_rebuilt_by_an_earlier_build_that_left_the_node_out() -> None:
    # stg_orders changed and was built alone last time: order_totals still reads the old one
    new_stg = parts(logic="tree stg 2", sql=STG_SQL + " AND 1=1", vars={"min_amount": "0"})
    traces = dict(BASE_TRACES)
    fps = fingerprints(CHAIN, chain_parts(stg_orders=new_stg))
    traces[NodeId("stg_orders")] = trace_of("stg_orders", new_stg,
                                            {NodeId("raw_orders"): fps[NodeId("raw_orders")]})
    p = make_plan(CHAIN, chain_parts(stg_orders=new_stg), traces)
    assert rows(p) == [("raw_orders", UP, ()), ("stg_orders", UP, ()),
                       ("order_totals", REBUILD,
                        (R(Reason.UPSTREAM_REBUILT, "stg_orders (earlier)"),)),
                       ("report", REBUILD, UPSTREAM_OF_REPORT)]


def test_an_input_dropped_from_a_node_is_a_config_change() -> None:
    before = g({"a": [], "b": [], "c": ["a", "b"]})
    after = g({"a": [], "b": [], "c": ["a"]})
    own = {"a": parts(logic="a"), "b": parts(logic="b"), "c": parts(logic="c")}
    p = make_plan(after, own, built(before, own))
    assert p.by_name[NodeId("c")].reasons == (R(Reason.INPUT_REMOVED, "b"),)
    assert p.by_name[NodeId("c")].headline == "input removed: b"


# -- outputs ------------------------------------------------------------------------------------
def test_missing_output_table_rebuilds_only_that_node() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES,
                  outputs={"stg_orders": OutputCheck(output_missing=True)})
    # its dependants run only if its recomputed output differs (cut off at run time if not)
    assert rows(p) == [("raw_orders", UP, ()),
                       ("stg_orders", REBUILD, (R(Reason.OUTPUT_MISSING, "table"),)),
                       ("order_totals", REBUILD, (R(Reason.UPSTREAM_RERUN, "stg_orders"),)),
                       ("report", REBUILD, (R(Reason.UPSTREAM_RERUN, "order_totals"),))]


def test_missing_and_modified_exports_are_re_exported_with_their_paths() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES, outputs={
        "order_totals": OutputCheck(exports_missing=("output/totals.parquet",),
                                    exports_modified=("output/totals.csv",))})
    assert rows(p) == [("raw_orders", UP, ()), ("stg_orders", UP, ()),
                       ("order_totals", REEXPORT,
                        (R(Reason.OUTPUT_MISSING, "output/totals.parquet"),
                         R(Reason.OUTPUT_MODIFIED, "output/totals.csv"))),
                       ("report", UP, ())]
    assert [r.summary() for r in p.steps[2].reasons] == [
        "output missing: output/totals.parquet",
        "output modified outside odibi: output/totals.csv"]
    assert [s.node for s in p.to_run()] == ["order_totals"]


def test_write_changed_re_exports_without_rebuilding_anything() -> None:
    own = chain_parts(order_totals=parts(logic="tree totals",
                                         sql="SELECT sum(amount) FROM stg_orders",
                                         write="write totals.parquet"))
    p = make_plan(CHAIN, own, BASE_TRACES)
    assert rows(p) == [("raw_orders", UP, ()), ("stg_orders", UP, ()),
                       ("order_totals", REEXPORT, (R(Reason.WRITE_CHANGED),)),
                       ("report", UP, ())]
    assert p.steps[2].headline == "write changed"
    assert p.steps[2].fingerprint == BASE_TRACES[NodeId("order_totals")].fingerprint


def test_validate_changed_revalidates_without_rebuilding_anything() -> None:
    own = chain_parts(stg_orders=parts(logic="tree stg 1", sql=STG_SQL, vars={"min_amount": "0"},
                                       validate="unique(order_id)"))
    p = make_plan(CHAIN, own, BASE_TRACES)
    assert rows(p) == [("raw_orders", UP, ()),
                       ("stg_orders", REVALIDATE, (R(Reason.VALIDATE_CHANGED),)),
                       ("order_totals", UP, ()), ("report", UP, ())]
    assert p.steps[1].headline == "validations changed"


def test_contracts_changed_rechecks_without_rebuilding_anything() -> None:
    # DESIGN §2: contracts are keyed separately; a new or edited contract must be checked on
    # the next build (it is a cheap step), without recomputing the node or its dependants
    own = chain_parts(stg_orders=parts(logic="tree stg 1", sql=STG_SQL, vars={"min_amount": "0"},
                                       contracts="row_count(raw_orders) > 100"))
    p = make_plan(CHAIN, own, BASE_TRACES)
    assert rows(p) == [("raw_orders", UP, ()),
                       ("stg_orders", REVALIDATE, (R(Reason.CONTRACTS_CHANGED),)),
                       ("order_totals", UP, ()), ("report", UP, ())]


# -- forced, always_run, failures, scheme -----------------------------------------------------
def test_forced_rebuilds_the_node_and_its_dependants_only_if_its_output_changes() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES, forced={"stg_orders"})
    assert rows(p) == [("raw_orders", UP, ()), ("stg_orders", REBUILD, (R(Reason.FORCED),)),
                       ("order_totals", REBUILD, (R(Reason.UPSTREAM_RERUN, "stg_orders"),)),
                       ("report", REBUILD, (R(Reason.UPSTREAM_RERUN, "order_totals"),))]
    assert p.steps[1].headline == "forced"


def test_forced_comes_first_among_the_reasons() -> None:
    own = chain_parts(stg_orders=parts(logic="tree stg 1", sql=STG_SQL, vars={"min_amount": "5"}))
    p = make_plan(CHAIN, own, BASE_TRACES, forced={"stg_orders"})
    assert p.steps[1].reasons == (R(Reason.FORCED), R(Reason.VAR_CHANGED, "min_amount", "0", "5"))


def test_always_run_rebuilds_every_time() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES, always_run={"raw_orders"})
    assert rows(p) == [("raw_orders", REBUILD, (R(Reason.ALWAYS_RUN),)),
                       ("stg_orders", REBUILD, (R(Reason.UPSTREAM_RERUN, "raw_orders"),)),
                       ("order_totals", REBUILD, (R(Reason.UPSTREAM_RERUN, "stg_orders"),)),
                       ("report", REBUILD, (R(Reason.UPSTREAM_RERUN, "order_totals"),))]
    assert p.steps[0].headline == "always_run"
    new = make_plan(CHAIN, BASE, {}, always_run={"raw_orders"})
    assert new.steps[0].reasons == (R(Reason.ALWAYS_RUN), R(Reason.NEW))


def test_last_build_failed_with_the_same_fingerprint() -> None:
    new_stg = parts(logic="tree stg 2", sql=STG_SQL + " AND x", vars={"min_amount": "0"})
    own = chain_parts(stg_orders=new_stg)
    fp = fingerprints(CHAIN, own)[NodeId("stg_orders")]
    p = make_plan(CHAIN, own, BASE_TRACES, failures={"stg_orders": fp})
    step = p.by_name[NodeId("stg_orders")]
    assert step.status is REBUILD
    assert [r.reason for r in step.reasons] == [Reason.LAST_BUILD_FAILED, Reason.SQL_CHANGED]
    assert step.headline == "last build failed"
    # a failure of another version (the user has edited since) is not mentioned
    other = make_plan(CHAIN, own, BASE_TRACES, failures={"stg_orders": Digest("f" * 32)})
    assert [r.reason for r in other.by_name[NodeId("stg_orders")].reasons] == [Reason.SQL_CHANGED]


def test_last_build_failed_on_an_up_to_date_fingerprint_rebuilds() -> None:
    fp = BASE_TRACES[NodeId("stg_orders")].fingerprint  # e.g. a forced rebuild that failed
    p = make_plan(CHAIN, BASE, BASE_TRACES, failures={"stg_orders": fp})
    assert rows(p)[1] == ("stg_orders", REBUILD, (R(Reason.LAST_BUILD_FAILED),))


def test_scheme_changed_is_the_only_reason_given() -> None:
    traces = dict(BASE_TRACES)
    old = traces[NodeId("raw_orders")]
    traces[NodeId("raw_orders")] = replace(old, fingerprint=Digest("0" * 32),
                                           parts=replace(old.parts, scheme=SCHEME - 1))
    p = make_plan(CHAIN, BASE, traces)
    detail = R(Reason.SCHEME_CHANGED, old=str(SCHEME - 1), new=str(SCHEME))
    assert rows(p)[0] == ("raw_orders", REBUILD, (detail,))
    assert detail.summary() == f"fingerprint scheme changed {SCHEME - 1} -> {SCHEME}"


def test_kind_changed_is_a_config_change() -> None:
    graph = g({"a": []})
    p = make_plan(graph, {"a": parts(NodeKind.PYTHON, python_file="t.py")},
                  built(graph, {"a": parts(NodeKind.SQL)}))
    assert p.steps[0].reasons[0] == R(Reason.CONFIG_CHANGED, "kind", "sql", "python")
    assert p.steps[0].headline == "config changed: kind sql -> python"


# -- selection: a target is brought up to date (Make, Bazel) ------------------------------
def test_a_selected_node_brings_its_out_of_date_ancestors_and_only_those() -> None:
    new_stg = parts(logic="tree stg 2", sql=STG_SQL + " AND 1=1", vars={"min_amount": "0"})
    own = chain_parts(stg_orders=new_stg)
    p = make_plan(CHAIN, own, BASE_TRACES, select={"order_totals"})
    assert rows(p) == [("raw_orders", UP, ()),
                       ("stg_orders", REBUILD, (R(Reason.SQL_CHANGED, diff=p.steps[1].reasons[0].diff),)),
                       ("order_totals", REBUILD, (R(Reason.UPSTREAM_REBUILT, "stg_orders"),))]
    assert [s.node for s in p.to_run()] == ["stg_orders", "order_totals"]  # not report
    assert p.targets == {"order_totals"}
    assert p.stale_unselected == ()
    assert [n for n, _ in root_cause(p, NodeId("order_totals"), CHAIN)] == [
        "order_totals", "stg_orders"]


def test_a_selected_node_whose_source_changed_two_levels_up_is_not_up_to_date() -> None:
    own = chain_parts(raw_orders=parts(
        NodeKind.READ, logic="csv {}", config=dict(BASE["raw_orders"].config),
        sources={ORDERS: ("d_orders_2", 12_400)}))
    p = make_plan(CHAIN, own, BASE_TRACES, select={"order_totals"}, source_names=NAMES)
    assert [(s.node, s.status) for s in p.to_run()] == [
        ("raw_orders", REBUILD), ("stg_orders", REBUILD), ("order_totals", REBUILD)]
    assert p.by_name[NodeId("raw_orders")].headline == \
        "source changed: data/orders.csv (12.1 kB -> 12.4 kB)"


def test_an_up_to_date_selection_with_up_to_date_ancestors_runs_nothing() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES, select={"order_totals"})
    assert p.to_run() == ()
    assert [s.node for s in p.steps] == ["raw_orders", "stg_orders", "order_totals"]


def test_never_built_ancestors_are_built_for_the_target() -> None:
    p = make_plan(CHAIN, BASE, {}, select={"order_totals"})
    assert [(s.node, s.status) for s in p.steps] == [
        ("raw_orders", REBUILD), ("stg_orders", REBUILD), ("order_totals", REBUILD)]
    assert p.count(BLOCKED) == 0


def test_forced_target_does_not_force_its_ancestors() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES, select={"order_totals"}, forced={"order_totals"})
    assert [(s.node, s.headline) for s in p.to_run()] == [("order_totals", "forced")]


def test_an_excluded_ancestor_is_not_run_but_read_as_it_is_and_named() -> None:
    new_stg = parts(logic="tree stg 2", sql=STG_SQL + " AND 1=1", vars={"min_amount": "0"})
    own = chain_parts(stg_orders=new_stg,
                      raw_orders=parts(NodeKind.READ, logic="csv {}",
                                       config=dict(BASE["raw_orders"].config),
                                       sources={ORDERS: ("d_orders_2", 12_400)}))
    p = make_plan(CHAIN, own, BASE_TRACES, select={"report"}, exclude={"stg_orders"})
    # nothing past the excluded node is brought in: raw_orders feeds only stg_orders
    assert [(s.node, s.status) for s in p.steps] == [("order_totals", UP), ("report", UP)]
    # both are named: what the build reads is older than its sources say
    assert p.stale_unselected == ("raw_orders", "stg_orders")


def test_excluding_everything_but_a_node_reads_its_stale_upstream_as_it_is() -> None:
    own = chain_parts(order_totals=parts(logic="tree totals 2", sql="SELECT 2",
                                         write="write totals.csv"))
    p = make_plan(CHAIN, own, BASE_TRACES, select=set(CHAIN.names) - {"order_totals"},
                  exclude={"order_totals"})
    assert p.to_run() == () and p.stale_unselected == ("order_totals",)


# -- selection with --only: dbt's habit ------------------------------------------------------
def test_only_unselected_up_to_date_upstream_is_used_as_is() -> None:
    own = chain_parts(order_totals=parts(logic="tree totals 2",
                                         sql="SELECT sum(amount) AS s FROM stg_orders",
                                         write="write totals.csv"))
    p = make_plan(CHAIN, own, BASE_TRACES, select={"order_totals"}, only=True)
    assert [(s.node, s.status, [r.reason for r in s.reasons]) for s in p.steps] == [
        ("order_totals", REBUILD, [Reason.SQL_CHANGED])]
    assert p.stale_unselected == ()
    recorded = BASE_TRACES[NodeId("stg_orders")].fingerprint
    assert dict(p.steps[0].upstream) == {"stg_orders": recorded}


def test_only_unselected_stale_upstream_is_reported_and_its_recorded_fingerprint_used() -> None:
    new_stg = parts(logic="tree stg 2", sql=STG_SQL + " AND 1=1", vars={"min_amount": "0"})
    own = chain_parts(stg_orders=new_stg)
    p = make_plan(CHAIN, own, BASE_TRACES, select={"order_totals", "report"}, only=True)
    assert rows(p) == [("order_totals", UP, ()), ("report", UP, ())]
    assert p.stale_unselected == ("stg_orders",)
    recorded = BASE_TRACES[NodeId("stg_orders")].fingerprint
    assert recorded != fingerprints(CHAIN, own)[NodeId("stg_orders")]
    step = p.by_name[NodeId("order_totals")]
    assert dict(step.upstream) == {"stg_orders": recorded}
    assert step.fingerprint == BASE_TRACES[NodeId("order_totals")].fingerprint


def test_only_names_a_stale_ancestor_two_levels_up_too() -> None:
    """The node in between is current relative to the stale ancestor's last output, so
    only the ancestor is out of date; it must be named even though it does not feed the
    selection directly."""
    own = chain_parts(raw_orders=parts(
        NodeKind.READ, logic="csv {}", config=dict(BASE["raw_orders"].config),
        sources={ORDERS: ("d_orders_2", 12_400)}))
    p = make_plan(CHAIN, own, BASE_TRACES, select={"order_totals"}, only=True)
    assert rows(p) == [("order_totals", UP, ())]
    assert p.stale_unselected == ("raw_orders",)


def test_only_stale_unselected_upstream_with_a_selected_node_that_changed_itself() -> None:
    own = chain_parts(stg_orders=parts(logic="tree stg 2", sql=STG_SQL + " AND 1=1",
                                       vars={"min_amount": "0"}),
                      order_totals=parts(logic="tree totals 2", sql="SELECT 2",
                                         write="write totals.csv"))
    p = make_plan(CHAIN, own, BASE_TRACES, select={"order_totals"}, only=True)
    step = p.steps[0]
    assert [r.reason for r in step.reasons] == [Reason.SQL_CHANGED]  # not "upstream rebuilt"
    assert dict(step.upstream) == {"stg_orders": BASE_TRACES[NodeId("stg_orders")].fingerprint}
    assert p.stale_unselected == ("stg_orders",)


def test_only_unselected_never_built_upstream_blocks_the_selected_node() -> None:
    p = make_plan(CHAIN, BASE, {}, select={"order_totals"}, only=True)
    assert rows(p) == [("order_totals", BLOCKED, (R(Reason.UPSTREAM_NOT_BUILT, "stg_orders"),))]
    assert p.stale_unselected == ()  # nothing to warn about: it has no last output to use
    assert p.to_run() == ()
    assert p.steps[0].headline == "upstream not built: stg_orders"
    # and what depends on a blocked node is blocked too
    both = make_plan(CHAIN, BASE, {}, select={"order_totals", "report"}, only=True)
    assert rows(both) == [
        ("order_totals", BLOCKED, (R(Reason.UPSTREAM_NOT_BUILT, "stg_orders"),)),
        ("report", BLOCKED, (R(Reason.UPSTREAM_NOT_BUILT, "order_totals"),))]


def test_only_unselected_upstream_with_its_table_missing_is_stale() -> None:
    p = make_plan(CHAIN, BASE, BASE_TRACES, select={"order_totals"}, only=True,
                  outputs={"stg_orders": OutputCheck(output_missing=True)})
    assert p.stale_unselected == ("stg_orders",)


def test_only_selected_nodes_and_in_build_order() -> None:
    p = make_plan(CHAIN, BASE, {}, select={"report", "raw_orders"}, only=True)
    assert [s.node for s in p.steps] == ["raw_orders", "report"]
    assert rows(p)[1] == ("report", BLOCKED, (R(Reason.UPSTREAM_NOT_BUILT, "order_totals"),))


# -- exports wait for the checks that guard them ---------------------------------------------
# raw_orders -> stg_orders -> order_totals (writes) ; check `balance` reads order_totals and
# raw_customers (a second source)
GUARDED = g({"raw_orders": [], "stg_orders": ["raw_orders"], "order_totals": ["stg_orders"],
             "raw_customers": [], "balance": ["order_totals", "raw_customers"],
             "report": ["order_totals"]})


def guarded_parts(**changes: OwnParts) -> dict[str, OwnParts]:
    own = {**chain_parts(),
           "raw_customers": parts(NodeKind.READ, logic="csv customers",
                                  sources={"raw:customers.csv": ("d_c_1", 500)}),
           "balance": parts(NodeKind.CHECK, logic="rule balance")}
    own.update(changes)
    return own


GUARDS = {"order_totals": ("balance",)}


def test_an_export_that_will_be_written_waits_for_its_guard() -> None:
    own = guarded_parts(order_totals=parts(logic="tree totals 2", sql="SELECT 2",
                                           write="write totals.csv"))
    traces = built(GUARDED, guarded_parts())
    p = make_plan(GUARDED, own, traces, guards=GUARDS)
    assert p.by_name[NodeId("order_totals")].export_waits == ("balance",)
    assert p.by_name[NodeId("balance")].status is REBUILD


def test_building_a_writer_brings_its_guard_and_the_guards_inputs_up_to_date() -> None:
    own = guarded_parts(
        order_totals=parts(logic="tree totals 2", sql="SELECT 2", write="write totals.csv"),
        raw_customers=parts(NodeKind.READ, logic="csv customers",
                            sources={"raw:customers.csv": ("d_c_2", 510)}))
    traces = built(GUARDED, guarded_parts())
    p = make_plan(GUARDED, own, traces, select={"order_totals"}, guards=GUARDS)
    assert {s.node for s in p.to_run()} == {"order_totals", "raw_customers", "balance"}
    assert p.targets == {"order_totals"}
    assert p.by_name[NodeId("order_totals")].export_waits == ("balance",)


def test_a_writer_with_nothing_to_export_does_not_pull_in_its_guard() -> None:
    own = guarded_parts(raw_customers=parts(NodeKind.READ, logic="csv customers",
                                            sources={"raw:customers.csv": ("d_c_2", 510)}))
    traces = built(GUARDED, guarded_parts())
    p = make_plan(GUARDED, own, traces, select={"order_totals"}, guards=GUARDS)
    assert p.to_run() == ()
    assert NodeId("balance") not in p.by_name


def test_an_up_to_date_guard_holds_nothing() -> None:
    traces = built(GUARDED, guarded_parts())
    p = make_plan(GUARDED, guarded_parts(), traces, guards=GUARDS,
                  outputs={"order_totals": OutputCheck(exports_missing=("output/totals.csv",))})
    step = p.by_name[NodeId("order_totals")]
    assert (step.status, step.export_waits) == (REEXPORT, ())


def test_with_only_the_guard_of_an_export_joins_the_build_but_not_its_inputs() -> None:
    """As dbt's `build -s x` runs x's tests: the check reads the other inputs' last
    outputs (named as stale if they are)."""
    own = guarded_parts(
        order_totals=parts(logic="tree totals 2", sql="SELECT 2", write="write totals.csv"),
        raw_customers=parts(NodeKind.READ, logic="csv customers",
                            sources={"raw:customers.csv": ("d_c_2", 510)}))
    traces = built(GUARDED, guarded_parts())
    p = make_plan(GUARDED, own, traces, select={"order_totals"}, only=True, guards=GUARDS)
    assert [(s.node, s.status) for s in p.steps] == [("order_totals", REBUILD),
                                                     ("balance", REBUILD)]
    assert p.by_name[NodeId("order_totals")].export_waits == ("balance",)
    assert p.stale_unselected == ("raw_customers",)
    assert p.targets == {"order_totals"}


def test_an_excluded_guard_holds_the_export_it_guards() -> None:
    own = guarded_parts(order_totals=parts(logic="tree totals 2", sql="SELECT 2",
                                           write="write totals.csv"))
    traces = built(GUARDED, guarded_parts())
    p = make_plan(GUARDED, own, traces, guards=GUARDS, exclude={"balance"})
    assert NodeId("balance") not in p.by_name
    assert p.by_name[NodeId("order_totals")].export_waits == ("balance",)


def test_only_a_read_of_a_held_export_left_out_is_blocked() -> None:
    graph = g({"src": [], "w": ["src"], "r": ["w"]})
    own = {"src": parts(NodeKind.READ, logic="src"), "w": parts(logic="w", write="w.csv"),
           "r": parts(NodeKind.READ, logic="r")}
    traces = built(graph, own)
    traces[NodeId("w")] = replace(traces[NodeId("w")], held=("chk",))
    p = make_plan(graph, own, traces, select={"r"}, only=True)
    assert rows(p) == [("r", BLOCKED, (R(Reason.EXPORT_HELD, "w"),))]
    made = make_plan(graph, own, traces, select={"r"})  # brought along: w re-exports first
    assert [(s.node, s.status) for s in made.to_run()] == [("w", REEXPORT)]


def test_a_re_export_also_runs_rules_that_changed() -> None:
    own = chain_parts(order_totals=parts(logic="tree totals", sql="SELECT sum(amount) FROM "
                                         "stg_orders", write="write totals2.csv",
                                         validate="validate 2"))
    p = make_plan(CHAIN, own, BASE_TRACES)
    step = p.by_name[NodeId("order_totals")]
    assert (step.status, [r.reason for r in step.reasons]) == (
        REEXPORT, [Reason.WRITE_CHANGED, Reason.VALIDATE_CHANGED])


def test_an_export_held_back_last_time_is_re_exported_once_its_guard_passes() -> None:
    traces = built(GUARDED, guarded_parts())
    traces[NodeId("order_totals")] = replace(traces[NodeId("order_totals")], held=("balance",))
    p = make_plan(GUARDED, guarded_parts(), traces, guards=GUARDS,
                  failures={"balance": traces[NodeId("balance")].fingerprint})
    step = p.by_name[NodeId("order_totals")]
    assert (step.status, step.headline) == (REEXPORT, "export held back: balance")
    assert step.export_waits == ("balance",)
    assert p.by_name[NodeId("balance")].headline == "last build failed"


# -- a revert reads as a restore ----------------------------------------------------------
def test_a_reverted_node_is_restored_and_says_what_came_back() -> None:
    old = chain_parts(stg_orders=parts(logic="tree stg 0", sql="SELECT 0 FROM raw_orders",
                                       vars={"min_amount": "5"}))
    stored = built(CHAIN, old)
    stg = stored[NodeId("stg_orders")]
    p = make_plan(CHAIN, old, BASE_TRACES, stored={(NodeId("stg_orders"), stg.fingerprint): stg})
    step = p.by_name[NodeId("stg_orders")]
    assert step.status is Status.RESTORE
    assert step.headline == ("a stored version matches (sql, var min_amount = 5 as in an "
                             "earlier build)")
    assert [r.reason for r in step.reasons[1:]] == [Reason.SQL_CHANGED, Reason.VAR_CHANGED]


def test_a_node_restored_because_its_upstream_was_traces_the_root_cause() -> None:
    old = chain_parts(stg_orders=parts(logic="tree stg 0", sql="SELECT 0 FROM raw_orders"))
    stored = built(CHAIN, old)
    keys = {(n, t.fingerprint): t for n, t in stored.items()}
    p = make_plan(CHAIN, old, BASE_TRACES, stored=keys)
    step = p.by_name[NodeId("order_totals")]
    assert step.headline == "a stored version matches (upstream stg_orders as in an earlier build)"
    assert [n for n, _ in root_cause(p, NodeId("report"), CHAIN)] == [
        "report", "order_totals", "stg_orders"]


# -- what users read ---------------------------------------------------------------------
def test_summaries() -> None:
    table = [
        (R(Reason.NEW), "new node"),
        (R(Reason.SQL_CHANGED, diff="--- a\n+++ b"), "sql changed"),
        (R(Reason.SQL_REFORMATTED, diff="--- a\n+++ b"), "sql reformatted only"),
        (R(Reason.PYTHON_CHANGED, "transforms/value.py"), "python changed: transforms/value.py"),
        (R(Reason.CONFIG_CHANGED, "read.options.delim", "','", "';'"),
         "config changed: read.options.delim ',' -> ';'"),
        (R(Reason.VAR_CHANGED, "min_amount", "0", "5"), "var changed: min_amount 0 -> 5"),
        (R(Reason.SOURCE_CHANGED, "data/orders.csv (12.1 kB -> 12.4 kB)"),
         "source changed: data/orders.csv (12.1 kB -> 12.4 kB)"),
        (R(Reason.SOURCE_ADDED, "data/orders_2.csv"), "source added: data/orders_2.csv"),
        (R(Reason.SOURCE_REMOVED, "data/orders_2.csv"), "source removed: data/orders_2.csv"),
        (R(Reason.UPSTREAM_REBUILT, "clean_orders"), "upstream rebuilt: clean_orders"),
        (R(Reason.UPSTREAM_NOT_BUILT, "raw_orders"), "upstream not built: raw_orders"),
        (R(Reason.OUTPUT_MISSING, "table"), "output missing: table"),
        (R(Reason.OUTPUT_MISSING, "output/customer_value.parquet"),
         "output missing: output/customer_value.parquet"),
        (R(Reason.OUTPUT_MODIFIED, "output/customer_value.parquet"),
         "output modified outside odibi: output/customer_value.parquet"),
        (R(Reason.LAST_BUILD_FAILED), "last build failed"),
        (R(Reason.FORCED), "forced"),
        (R(Reason.ALWAYS_RUN), "always_run"),
        (R(Reason.WRITE_CHANGED), "write changed"),
        (R(Reason.VALIDATE_CHANGED), "validations changed"),
        (R(Reason.CONTRACTS_CHANGED), "contracts changed"),
        (R(Reason.SCHEME_CHANGED, old="0", new="1"), "fingerprint scheme changed 0 -> 1"),
        (R(Reason.STORED, "sql as in an earlier build"),
         "a stored version matches (sql as in an earlier build)"),
        (R(Reason.EXPORT_HELD, "orders_reference_customers"),
         "export held back: orders_reference_customers"),
        (R(Reason.UPSTREAM_RERUN, "raw_orders"), "upstream reruns: raw_orders"),
        (R(Reason.UPSTREAM_OUTPUT_CHANGED, "raw_orders"), "upstream output changed: raw_orders"),
        (R(Reason.INPUT_ADDED, "raw_orders"), "input added: raw_orders"),
        (R(Reason.INPUT_REMOVED, "raw_orders"), "input removed: raw_orders"),
        (R(Reason.ENV_CHANGED, "REGION"), "environment variable changed: REGION"),
        (R(Reason.CONFIG_CHANGED, "version", None, "'2'"),
         "config changed: version (unset) -> '2'"),
        (R(Reason.LAST_WARNING, "sum(o.paid) <= sum(o.amount) failed on o: sum(o.paid) = 9.5, "
                                "sum(o.amount) = 9"),
         "last run warned: sum(o.paid) <= sum(o.amount) failed on o: sum(o.paid) = 9.5, "
         "sum(o.amount) = 9"),
    ]
    assert [d.summary() for d, _ in table] == [text for _, text in table]
    assert {d.reason for d, _ in table} >= set(Reason) - {Reason.READ_CHANGED, Reason.CHECK_CHANGED}


# -- properties on random DAGs -------------------------------------------------------------
@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(1, 12))
    names = [f"n{i:02d}" for i in range(n)]
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        earlier = names[:i]
        deps[name] = (draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
                      if earlier else [])
    return deps


def _random_parts(deps: dict[str, list[str]], kinds: list[NodeKind]) -> dict[str, OwnParts]:
    return {n: parts(kinds[i % len(kinds)], logic=f"logic {n}", vars={"v": str(i)})
            for i, n in enumerate(deps)}


KINDS = st.lists(st.sampled_from([NodeKind.READ, NodeKind.SQL, NodeKind.PYTHON]), min_size=1,
                 max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deps=dags(), kinds=KINDS)
def test_after_a_complete_build_everything_is_up_to_date(deps: dict[str, list[str]],
                                                          kinds: list[NodeKind]) -> None:
    graph = g(deps)
    own = _random_parts(deps, kinds)
    p = make_plan(graph, own, built(graph, own))
    assert rows(p) == [(n, UP, ()) for n in graph.names]
    assert p.to_run() == () and p.stale_unselected == ()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deps=dags(), kinds=KINDS, data=st.data())
def test_changing_one_node_rebuilds_exactly_it_and_its_descendants(
        deps: dict[str, list[str]], kinds: list[NodeKind], data: st.DataObject) -> None:
    graph = g(deps)
    own = _random_parts(deps, kinds)
    traces = built(graph, own)
    changed = data.draw(st.sampled_from(sorted(deps)))
    i = sorted(deps).index(changed)
    own2 = {**own, changed: parts(own[changed].kind, logic=f"logic {changed}",
                                  vars={"v": str(i + 100)})}
    p = make_plan(graph, own2, traces)
    dirty = {changed} | {graph.names[j] for j in descendants(graph, [graph.index[NodeId(changed)]])}
    assert {s.node for s in p.to_run()} == dirty
    assert all(s.status is (REBUILD if s.node in dirty else UP) for s in p.steps)
    assert p.by_name[NodeId(changed)].reasons == (
        R(Reason.VAR_CHANGED, "v", str(i), str(i + 100)),)
    for s in p.steps:
        if s.node in dirty - {changed}:
            assert {r.reason for r in s.reasons} == {Reason.UPSTREAM_REBUILT}
            cause = root_cause(p, s.node, graph)
            assert cause[-1][0] == changed
            assert [n for n, _ in cause][0] == s.node
