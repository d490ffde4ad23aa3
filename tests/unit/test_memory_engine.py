"""The fake engine (odibi/engines/memory.py) does what odibi/engines/base.py promises:
a session's changes appear together on commit and never after a rollback, a restore skips
versions the warehouse no longer holds, an interrupt stops a hanging call, an export
writes its file whole, and every call is recorded."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from odibi.config.model import ReadSpec, WriteSpec
from odibi.engines.base import (Catalog, Engine, EngineError, EngineInterrupted, Location,
                                Session, WarehouseBusy, WarehouseDamaged)
from odibi.engines.memory import MEMORY, Behaviour, MemoryEngine, MemorySession
from odibi.engines.memory_rows import Table
from odibi.engines.memory_rules import Data, measure, value
from odibi.expr.ast import Op
from odibi.expr.measurements import (Agg, Aggregate, CountWhere, DistinctCount, Duplicates,
                                     NullCount, NullCounts, NullRows, Orphans, OrphanKeys,
                                     Outside, OutsideValues, RepeatedKeys, RowCount, RowsWhere)
from odibi.expr.rows import Abs, And, Between, Binary, Col, Const, In, IsNull, Neg, Not, Or
from odibi.errors import Span
from odibi.ids import Format, NodeId, OutputRef

A, B = NodeId("a"), NodeId("b")
A1, A2, B1 = OutputRef(A, "1111"), OutputRef(A, "2222"), OutputRef(B, "1111")
SPAN = Span("<test>", 1, 1)


def read_spec(path: str = "x.csv", fmt: Format = Format.CSV, **options: Any) -> ReadSpec:
    return ReadSpec("files", path, path, fmt, options, options, SPAN)


def write_spec(fmt: Format = Format.CSV, **options: Any) -> WriteSpec:
    return WriteSpec("out", "x", "x", fmt, options, options, SPAN)


def built(engine: MemoryEngine, out: OutputRef, sql: str = "SELECT 1") -> None:
    """Build `out` and make it current, committed."""
    s = engine.session()
    s.begin()
    s.run_sql(out, sql)
    s.make_current(out.node, out)
    s.commit()
    s.close()


def in_thread(fn: Any) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            raised.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, raised


# -- transactions -------------------------------------------------------------------------
def test_a_sessions_changes_appear_together_on_commit_and_not_before() -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"x": 1}, {"x": 2}])})
    s, other = engine.session(), engine.session()
    s.begin()
    assert s.run_sql(A1, "SELECT ...") == 2
    s.make_current(A, A1)
    assert s.columns(A) == {"x": "BIGINT"}  # the session sees its own changes
    with pytest.raises(EngineError, match="no output a"):
        other.columns(A)
    assert engine.catalog() == Catalog(frozenset(), {})
    s.commit()
    assert engine.catalog() == Catalog(frozenset({A1}), {A: A1})
    assert other.columns(A) == {"x": "BIGINT"}
    assert engine.rows("a") == [{"x": 1}, {"x": 2}]


def test_a_rollback_leaves_the_warehouse_as_it_was() -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"x": 1}])})
    built(engine, A1)
    stamp = engine.stamp()
    s = engine.session()
    s.begin()
    s.run_sql(A2, "SELECT 2")
    s.make_current(A, A2)
    s.rollback()
    assert engine.catalog() == Catalog(frozenset({A1}), {A: A1})
    assert engine.stamp() == stamp
    s.begin()  # the session is usable again
    s.commit()


def test_close_rolls_back_what_was_not_committed() -> None:
    engine = MemoryEngine()
    s = engine.session()
    s.begin()
    s.run_sql(A1, "SELECT 1")
    s.close()
    assert engine.catalog().stored == frozenset()


def test_transactions_are_checked_as_duckdb_checks_them() -> None:
    s = MemoryEngine().session()
    with pytest.raises(EngineError, match="no transaction is active"):
        s.commit()
    s.begin()
    with pytest.raises(EngineError, match="within a transaction"):
        s.begin()


def test_outside_a_transaction_a_change_applies_at_once() -> None:
    engine = MemoryEngine()
    s = engine.session()
    s.run_sql(A1, "SELECT 1")
    assert engine.catalog().stored == frozenset({A1})


def test_without_transactions_begin_and_commit_do_nothing() -> None:
    engine = MemoryEngine(capabilities=replace(MEMORY, transactions=False))
    s = engine.session()
    s.begin()
    s.run_sql(A1, "SELECT 1")
    assert engine.catalog().stored == frozenset({A1})
    s.rollback()
    assert engine.catalog().stored == frozenset({A1})
    s.commit()


def test_make_current_of_a_version_never_stored_fails() -> None:
    s = MemoryEngine().session()
    s.begin()
    with pytest.raises(EngineError, match="no output a@2222"):
        s.make_current(A, A2)


# -- restore, drop, catalog ---------------------------------------------------------------
def test_restore_points_back_at_stored_versions_and_skips_unknown_ones() -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"x": 1}])})
    built(engine, A1)
    engine.script[A] = Behaviour(rows=[{"x": 2}])
    built(engine, A2)
    built(engine, B1)
    engine.restore({A: A1, B: OutputRef(B, "9999")})
    assert engine.catalog() == Catalog(frozenset({A1, A2, B1}), {A: A1, B: B1})
    assert engine.rows("a") == [{"x": 1}]
    assert engine.called("restore")[-1] == (("a", "1111"), ("b", "9999"))


def test_drop_forgets_versions_and_current_outputs_together() -> None:
    engine = MemoryEngine()
    built(engine, A1)
    built(engine, B1)
    engine.drop([A1], [A])
    assert engine.catalog() == Catalog(frozenset({B1}), {B: B1})


def test_preview_and_used_bytes() -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"x": i} for i in range(5)])})
    built(engine, A1)
    assert engine.preview(A, 2) == (["x"], [(0,), (1,)], 5)
    assert engine.preview(A1, 10)[2] == 5
    assert engine.used_bytes() > 0
    with pytest.raises(EngineError, match="no output b"):
        engine.preview(B, 1)


def test_stamp_is_none_before_the_warehouse_exists_and_changes_with_its_content() -> None:
    engine = MemoryEngine()
    assert not engine.exists and engine.stamp() is None and not engine.is_open
    engine.open()
    first = engine.stamp()
    assert first is not None and engine.exists
    engine.catalog()  # reading changes nothing
    assert engine.stamp() == first
    built(engine, A1)
    assert engine.stamp() != first


def test_a_busy_or_damaged_warehouse_does_not_open_and_set_aside_starts_anew() -> None:
    engine = MemoryEngine()
    built(engine, A1)
    engine.close()
    engine.busy = True
    with pytest.raises(WarehouseBusy):
        engine.catalog()
    engine.busy, engine.damaged = False, True
    with pytest.raises(WarehouseDamaged):
        engine.session()
    assert engine.set_aside() == "memory-warehouse.damaged-1"
    assert engine.catalog() == Catalog(frozenset(), {})


# -- what a node computes -----------------------------------------------------------------
def test_unscripted_sql_gives_a_digest_that_follows_the_sql_text() -> None:
    s = MemoryEngine().session()
    digests = []
    for out, sql in ((A1, "SELECT 1"), (A2, "SELECT 1"), (B1, "SELECT 2")):
        s.run_sql(out, sql)
        digests.append(s.describe(out, 1).digest)
    assert digests[0] == digests[1] != digests[2]


def test_describe_is_order_insensitive_and_sees_schema_and_values() -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"x": 1, "y": "p"}, {"x": 2, "y": "q"}]),
                           "b": Behaviour(rows=[{"x": 2, "y": "q"}, {"x": 1, "y": "p"}])})
    s = engine.session()
    s.run_sql(A1, "")
    s.run_sql(B1, "")
    a, b = s.describe(A1, 2), s.describe(B1, 2)
    assert a.digest == b.digest and a.schema == ("x BIGINT", "y VARCHAR") and a.rows == 2
    engine.script[A] = Behaviour(rows=[{"x": 1, "y": "p"}, {"x": 2, "y": "r"}])
    s.run_sql(A2, "")
    assert s.describe(A2, 2).digest != a.digest
    engine.script[A] = Behaviour(rows=[{"x": "1", "y": "p"}, {"x": "2", "y": "q"}])
    s.run_sql(A2, "")
    assert s.describe(A2, 2).digest != a.digest  # text "1" is not the number 1


def test_a_scripted_error_fails_the_call_and_stores_nothing() -> None:
    engine = MemoryEngine({"a": Behaviour(error="Binder Error: no column z")})
    s = engine.session()
    s.begin()
    with pytest.raises(EngineError, match="Binder Error: no column z"):
        s.run_sql(A1, "SELECT z")
    s.rollback()
    assert engine.catalog().stored == frozenset()


def test_frames_are_lists_of_dicts_and_a_wrong_frame_type_is_named() -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"x": 1}])})
    built(engine, A1)
    s = engine.session()
    assert s.frames({"orders": A, "old": A1}) == {"orders": [{"x": 1}], "old": [{"x": 1}]}
    with pytest.raises(EngineError, match="must return a list of dicts, returned tuple"):
        s.create_from_frame(B1, ({"x": 1},))
    assert s.create_from_frame(B1, [{"x": 1}, {"y": True}]) == 2
    assert s.columns(B1) == {"x": "BIGINT", "y": "BOOLEAN"}
    assert engine.capabilities.frame == "list[dict]"


# -- interrupts and gates -----------------------------------------------------------------
def test_interrupt_stops_a_hanging_call_and_reaches_only_that_call() -> None:
    engine = MemoryEngine({"a": Behaviour(hang=True)})
    s = engine.session()
    s.begin()
    t, raised = in_thread(lambda: s.run_sql(A1, "SELECT 1"))
    assert engine.wait_running("a", timeout=5)
    s.interrupt()
    t.join(5)
    assert not t.is_alive() and len(raised) == 1 and isinstance(raised[0], EngineInterrupted)
    s.rollback()
    assert engine.catalog().stored == frozenset()
    s.interrupt()  # nothing running: lost, as in DuckDB
    assert s.run_sql(B1, "SELECT 1") == 1
    assert ("interrupt", "a") in engine.calls and ("interrupt", None) in engine.calls


def test_a_gate_holds_calls_running_together_and_max_running_counts_them() -> None:
    gate = threading.Event()
    engine = MemoryEngine({"a": Behaviour(gate=gate), "b": Behaviour(gate=gate)})
    threads = [in_thread(lambda out=out: engine.session().run_sql(out, "SELECT 1"))
               for out in (A1, B1)]
    assert engine.wait_running("a", "b", timeout=5)
    assert engine.catalog().stored == frozenset()
    gate.set()
    for t, raised in threads:
        t.join(5)
        assert not raised
    assert engine.max_running == 2 and engine.running == {}
    assert engine.catalog().stored == frozenset({A1, B1})


def test_entered_is_set_when_the_call_starts() -> None:
    entered, gate = threading.Event(), threading.Event()
    engine = MemoryEngine({"a": Behaviour(entered=entered, gate=gate)})
    t, _ = in_thread(lambda: engine.session().run_sql(A1, "SELECT 1"))
    assert entered.wait(5)
    gate.set()
    t.join(5)
    assert engine.max_running == 1


# -- files --------------------------------------------------------------------------------
def test_read_reads_csv_files_as_text_with_nulls(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,ann\n2,\n")
    (tmp_path / "b.csv").write_text("id,name\n3,cy\n")
    engine = MemoryEngine()
    s = engine.session()
    files = [Location.file(tmp_path / "a.csv"), Location.file(tmp_path / "b.csv")]
    assert s.read(A1, files, read_spec()) == 3
    s.make_current(A, A1)
    assert engine.rows(A) == [{"id": "1", "name": "ann"}, {"id": "2", "name": None},
                              {"id": "3", "name": "cy"}]
    assert s.columns(A) == {"id": "VARCHAR", "name": "VARCHAR"}


def test_read_csv_options_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1;x\n2;y\n")
    (tmp_path / "a.json").write_text('{"id": 1}\n{"id": 2}\n')
    s = MemoryEngine().session()
    s.read(A1, [Location.file(tmp_path / "a.csv")], read_spec(header=False, delim=";"))
    assert s.table(A1).dicts() == [{"column0": "1", "column1": "x"},
                                   {"column0": "2", "column1": "y"}]
    s.read(B1, [Location.file(tmp_path / "a.json")], read_spec("a.json", Format.JSON))
    assert s.table(B1).dicts() == [{"id": 1}, {"id": 2}]


def test_read_failures_are_engine_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n")
    (tmp_path / "b.csv").write_text("key\n1\n")
    s = MemoryEngine().session()
    with pytest.raises(EngineError, match=r"no file matches data/\*\.csv"):
        s.read(A1, [], read_spec("data/*.csv"))
    with pytest.raises(EngineError, match="cannot read .*missing.csv"):
        s.read(A1, [Location.file(tmp_path / "missing.csv")], read_spec())
    with pytest.raises(EngineError, match="b.csv has columns"):
        s.read(A1, [Location.file(tmp_path / "a.csv"), Location.file(tmp_path / "b.csv")],
               read_spec())
    with pytest.raises(EngineError, match="csv and json only"):
        s.read(A1, [Location.file(tmp_path / "a.csv")], read_spec(fmt=Format.PARQUET))


def test_export_writes_the_file_whole(tmp_path: Path) -> None:
    engine = MemoryEngine({"a": Behaviour(rows=[{"id": 1, "ok": True, "note": None},
                                                {"id": 2, "ok": False, "note": "a,b"}])})
    built(engine, A1)
    dest = tmp_path / "out" / "a.csv"
    s = engine.session()
    s.export(A1, write_spec(), Location.file(dest))
    assert dest.read_text() == 'id,ok,note\n1,true,\n2,false,"a,b"\n'
    s.export(A1, write_spec(Format.JSON), Location.file(tmp_path / "a.json"))
    assert (tmp_path / "a.json").read_text() == (
        '{"id": 1, "ok": true, "note": null}\n{"id": 2, "ok": false, "note": "a,b"}\n')
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.csv", "a.json", "out"]
    assert engine.called("export") == [("a", dest), ("a", tmp_path / "a.json")]


def test_a_failed_export_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    engine = MemoryEngine({"a": Behaviour(export_error="disk full")})
    built(engine, A1)
    dest = tmp_path / "a.csv"
    dest.write_text("old\n")
    s = engine.session()
    with pytest.raises(EngineError, match="disk full"):
        s.export(A1, write_spec(), Location.file(dest))
    engine.script.clear()
    with pytest.raises(EngineError, match="csv and json only"):
        s.export(A1, write_spec(Format.PARQUET), Location.file(dest))
    with pytest.raises(EngineError, match="no output b"):
        s.export(B1, write_spec(), Location.file(dest))
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(EngineError, match="cannot write .*dir.csv"):
        s.export(A1, write_spec(), Location.file(tmp_path / "dir.csv"))
    assert dest.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "dir.csv"]


# -- the record -----------------------------------------------------------------------------
def test_every_call_is_recorded_in_order() -> None:
    engine = MemoryEngine(lazy=False)
    built(engine, A1)
    assert engine.calls == [("open",), ("session",), ("begin",), ("run_sql", "a"),
                            ("make_current", "a", "1111"), ("commit",)]
    assert engine.called("run_sql") == [("a",)]


def test_the_memory_engine_imports_neither_duckdb_nor_pandas() -> None:
    code = ("import sys, odibi.engines.memory; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('duckdb', 'pandas', 'pyarrow', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fake,protocol", [(MemoryEngine, Engine), (MemorySession, Session)])
def test_the_fake_implements_every_method_of_the_interface_with_its_parameters(
        fake: type, protocol: type) -> None:
    for name, member in vars(protocol).items():
        if name.startswith("_") or not (callable(member) or isinstance(member, property)):
            continue
        ours = getattr(fake, name)
        assert isinstance(ours, property) == isinstance(member, property), name
        if callable(member):
            assert list(inspect.signature(ours).parameters) == \
                list(inspect.signature(member).parameters), name


# -- rules: the neutral form, measured over rows ---------------------------------------------
T_ROWS = [{"id": 1, "k": "a", "v": 10}, {"id": 2, "k": "a", "v": None},
          {"id": None, "k": "b", "v": -3}, {"id": 4, "k": None, "v": 5},
          {"id": 4, "k": "c", "v": 5}]
P_ROWS = [{"name": "a"}, {"name": None}]
NEG = Binary(Op.LT, Col("V"), Const(0))  # (names ignore case, as in rules)


@pytest.mark.parametrize("what,expected", [
    (RowCount(), 5),
    (CountWhere(Binary(Op.GT, Col("v"), Const(0))), 3),  # a NULL v is not counted
    (Aggregate(Agg.SUM, "v"), 17), (Aggregate(Agg.AVG, "v"), 4.25),
    (Aggregate(Agg.MIN, "v"), -3), (Aggregate(Agg.MAX, "k"), "c"),
    (NullCount(("id", "v")), 2), (DistinctCount("k"), 3),
    (Duplicates(("id",)), 1), (Duplicates(("k", "v")), 0),
    (Outside("k", ("a", "b")), 1), (Outside("k", ("a", None)), 0),
    (OutsideValues("k", ("a",)), ["b", "c"]),
    (RepeatedKeys(("k",)), [{"k": "a", "n": 2}]),
    (RepeatedKeys(("id", "v")), [{"k": (4, 5), "n": 2}]),
    (NullCounts(("id", "k", "v")), [1, 1, 1]),
    (NullRows(("k", "v")), [{"id": 2, "k": "a", "v": None}, {"id": 4, "k": None, "v": 5}]),
    (RowsWhere(("v",), NEG), [{"v": -3}]),
    (Orphans(("k",), ("name",)), 2), (OrphanKeys(("k",), ("name",)), ["b", "c"]),
    (OrphanKeys(("k", "id"), ("name", "name")), [("a", 1), ("a", 2), ("c", 4)]),
])
def test_each_measurement_gives_the_value_its_docstring_promises(what: Any, expected: Any
                                                                 ) -> None:
    t, p = Data(Table.of(T_ROWS)), Data(Table.of(P_ROWS))
    assert measure(what, t, p) == expected


def test_an_aggregate_of_no_values_is_null() -> None:
    t = Data(Table.of([{"v": None}]))
    assert [measure(Aggregate(fn, "v"), t, None) for fn in Agg] == [None] * 4


def test_examples_are_the_first_five_sorted_nulls_last() -> None:
    t = Data(Table.of([{"k": k} for k in (9, 3, None, 7, 1, 5, 8, 3)]))
    assert measure(OutsideValues("k", (0,)), t, None) == [1, 3, 5, 7, 8]
    t = Data(Table.of([{"a": None, "b": 1}, {"a": 2, "b": None}, {"a": 1, "b": None}]))
    assert measure(NullRows(("a", "b")), t, None) == [
        {"a": 1, "b": None}, {"a": 2, "b": None}, {"a": None, "b": 1}]


@pytest.mark.parametrize("expr,expected", [
    (And((Const(True), Const(None))), None), (And((Const(False), Const(None))), False),
    (Or((Const(True), Const(None))), True), (Or((Const(False), Const(None))), None),
    (Not(Const(None)), None), (Neg(Const(None)), None), (Abs(Const(-2)), 2),
    (In(Const(1), (2, None), False), None), (In(Const(1), (1,), True), False),
    (In(Const(None), (1,), False), None), (In(Const(3), (1, 2), True), True),
    (Between(Const(5), Const(1), Const(10)), True),
    (Between(Const(None), Const(1), Const(2)), None),
    (IsNull(Const(None), False), True), (IsNull(Const(None), True), False),
    (Binary(Op.DIV, Const(1), Const(0)), None), (Binary(Op.DIV, Const(3), Const(2)), 1.5),
    (Binary(Op.GT, Const("5"), Const(3)), True), (Binary(Op.EQ, Const(None), Const(None)), None),
])
def test_the_row_language_has_sqls_three_valued_logic(expr: Any, expected: Any) -> None:
    got = value(expr, {})
    assert (got, type(got)) == (expected, type(expected))


def test_text_that_is_no_number_compared_with_a_number_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="Could not convert string 'x'"):
        value(Binary(Op.GT, Col("k"), Const(3)), {"k": "x"})
    with pytest.raises(EngineError, match='no column "z"'):
        measure(CountWhere(Binary(Op.GT, Col("z"), Const(3))), Data(Table.of(T_ROWS)), None)


# -- the same rules, the same verdicts as on DuckDB ------------------------------------------
SAME_RULES = [
    "row_count(t) >= 10", "row_count(p) between 1 and 2",
    "not_null(t.id, t.v)", "not_null(t.k)", "not_null(p.name)",
    "unique(t.id)", "unique(t.k, t.v)", "unique(t.v)",
    "accepted_values(t.k, ['a', 'b'])", "accepted_values(t.k, ['a', 'b', 'c'])",
    "all(t.v > 0 and t.v < 8)", "all(t.v between -5 and 20)", "all(abs(t.v) >= 4)",
    "all(t.k in ['a', 'c'] or t.v is null)", "all(t.id * 2 != t.v % 3 or t.k is not null)",
    "all(t.id / 2 < 2)", "all(-t.v < 0)", "all(t.k not in ['b', null])", "all(t.id in [1, 4])",
    "references(t.k, p.name)", "references(t.k, t.k)",
    "sum(t.v) < 5", "avg(t.v) > 100", "min(t.v) >= 0", "max(t.id) == 3",
    "null_count(t.v) == 0", "distinct_count(t.k) >= 5", "has_columns(t.id, t.nope)",
]
T_SQL = ("SELECT * FROM (VALUES (1, 'a', 10), (2, 'a', NULL), (NULL, 'b', -3), (4, NULL, 5), "
         "(4, 'c', 5)) AS t(id, k, v)")
P_SQL = "SELECT * FROM (VALUES ('a'), (NULL)) AS p(name)"


def verdicts(session: Any, rules: list[str]) -> list[tuple[bool, str]]:
    from odibi.expr.check import Scope, compile_rules
    from odibi.expr.parse import parse_rule
    from odibi.rules import run_rules

    out = []
    for rule in rules:
        plan = compile_rules([(rule, parse_rule(rule))], Scope({"t": "t", "p": "p"}))
        out += [(r.ok, r.describe()) for r in run_rules(session, plan, {"t": T, "p": P})]
    return out


T, P = NodeId("t"), NodeId("p")


def test_rules_measured_by_the_fake_give_duckdbs_verdicts(tmp_path: Path) -> None:
    from odibi.engines import open_engine
    from odibi.engines.base import EngineOptions

    (tmp_path / ".odibi").mkdir()
    duck = open_engine(tmp_path, EngineOptions())
    fake = MemoryEngine({"t": Behaviour(rows=T_ROWS), "p": Behaviour(rows=P_ROWS)})
    sessions = []
    for engine in (duck, fake):
        s = engine.session()
        s.begin()
        for node, text in ((T, T_SQL), (P, P_SQL)):
            out = OutputRef(node, "1")
            s.run_sql(out, text)
            s.make_current(node, out)
        s.commit()
        sessions.append(s)
    try:
        expected = verdicts(sessions[0], SAME_RULES)
        assert verdicts(sessions[1], SAME_RULES) == expected
        assert sum(ok for ok, _ in expected) >= 5 and sum(not ok for ok, _ in expected) >= 15
    finally:
        sessions[0].close()
        duck.close()
