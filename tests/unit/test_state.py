"""The build state in .odibi/state.db: traces round-trip, records and failures, caches;
a corrupt or old database is moved aside with a warning and the state starts empty; a
read-only state never creates anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from odibi.ids import Digest, NodeId, OutputRef
from odibi.sql import SqlInfo, TableRef
from odibi.state import SCHEMA_VERSION, Export, State, Trace, TraceParts


def trace(fp: str = "fp1", **changes: object) -> Trace:
    t = Trace(
        fingerprint=Digest(fp), kind="sql",
        parts=TraceParts.from_dict(
            {"logic": "l", "config": {"read.options.delim": '";"'}, "vars": {"min_amount": "0"},
             "sources": {"raw:orders.csv": ["d1", 12100]}, "upstream": {"raw_orders": "fpr"},
             "scheme": 1}),
        stored=OutputRef.of(NodeId("stg_orders"), Digest(fp)), output=Digest("out1"), rows=62,
        schema=("order_id BIGINT", "amount DOUBLE"), inputs={"raw_orders": "outr"},
        exports=(Export("/p/output/a.csv", 120, 1_700_000_000_123_456_789, Digest("e1")),
                 Export("/p/output/a.parquet", 900, 1_700_000_000_000_000_001, Digest("e2"))),
        write_key=Digest("wk"), validate_key=Digest("vk"),
        sql_text="SELECT *\nFROM raw_orders -- 'ü'\n", text_digest=Digest("td"))
    for k, v in changes.items():
        object.__setattr__(t, k, v)
    return t


# -- Trace ----------------------------------------------------------------------------------
def test_trace_json_round_trip() -> None:
    t = trace()
    assert Trace.from_json(t.to_json()) == t
    assert Trace.from_json(t.to_json()).to_json() == t.to_json()


def test_trace_json_round_trip_of_a_bare_trace() -> None:
    t = Trace(fingerprint=Digest("f"), kind="check", parts=TraceParts.from_dict({"logic": ""}),
              stored=None, output=None, rows=None, schema=())
    assert Trace.from_json(t.to_json()) == t


def test_trace_json_is_deterministic() -> None:
    a = trace()
    b = trace(parts=TraceParts.from_dict(dict(reversed(list(a.parts.to_dict().items())))))
    assert a.to_json() == b.to_json()


# -- records ----------------------------------------------------------------------------------
def test_record_traces_and_failures(tmp_path: Path) -> None:
    s = State(tmp_path)
    assert (tmp_path / ".odibi" / "state.db").is_file()
    assert s.records.traces() == {} and s.records.failures() == {}
    assert s.records.fingerprints() == {}
    s.records.record("stg_orders", trace("fp1"))
    s.records.record("raw_orders", trace("fpr", kind="read"))
    assert s.records.traces() == {"stg_orders": trace("fp1"),
                                  "raw_orders": trace("fpr", kind="read")}
    assert s.records.traces(["raw_orders", "nosuch"]) == {"raw_orders": trace("fpr", kind="read")}
    assert s.records.fingerprints() == {"stg_orders": "fp1", "raw_orders": "fpr"}
    s.records.record("stg_orders", trace("fp2"))  # a rebuild replaces the record
    assert s.records.traces()[NodeId("stg_orders")] == trace("fp2")

    s.records.record_failure("stg_orders", "fp3", "Binder Error: column x not found")
    assert s.records.failures() == {"stg_orders": ("fp3", "Binder Error: column x not found")}
    assert s.records.traces()[NodeId("stg_orders")] == trace("fp2")  # the last success is kept
    s.records.record("stg_orders", trace("fp3"))  # success forgets the failure
    assert s.records.failures() == {}

    s.records.forget(["raw_orders"])
    assert set(s.records.traces()) == {"stg_orders"}
    s.close()
    again = State(tmp_path, create=False)
    assert again.records.traces() == {"stg_orders": trace("fp3")}
    assert again.warnings == []
    again.close()


def test_many_names_are_looked_up_in_chunks(tmp_path: Path) -> None:
    s = State(tmp_path)
    for i in range(1_200):
        s.records.record(f"n{i}", trace(f"fp{i}"))
    got = s.records.traces([f"n{i}" for i in range(0, 1_200, 2)])
    assert len(got) == 600 and got[NodeId("n1198")].fingerprint == "fp1198"
    s.close()


# -- damaged databases ----------------------------------------------------------------------
def test_a_corrupt_state_db_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / ".odibi").mkdir()
    garbage = b"this is not a database\x00\xff" * 200
    (tmp_path / ".odibi" / "state.db").write_bytes(garbage)
    s = State(tmp_path)
    assert len(s.warnings) == 1
    warning = s.warnings[0]
    aside = [p for p in (tmp_path / ".odibi").iterdir() if p.name.startswith("state.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert warning.startswith("build state was unreadable (")
    assert warning.endswith(f"moved it to {aside[0].name} and starting from nothing built")
    assert s.available and s.records.traces() == {} and s.records.failures() == {}
    s.records.record("a", trace())  # and it works from there
    s.close()
    again = State(tmp_path)
    assert again.warnings == [] and again.records.traces() == {"a": trace()}
    again.close()


def test_an_old_schema_version_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    s = State(tmp_path)
    s.records.record("a", trace())
    s.close()
    con = sqlite3.connect(tmp_path / ".odibi" / "state.db")
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION - 1),))
    con.commit()
    con.close()
    old = State(tmp_path)
    assert len(old.warnings) == 1
    assert old.warnings[0].startswith(
        f"build state was unreadable (build state version {SCHEMA_VERSION - 1} is not "
        f"{SCHEMA_VERSION}); moved it to state.db.corrupt-")
    assert old.records.traces() == {}
    assert any(p.name.startswith("state.db.corrupt-") for p in (tmp_path / ".odibi").iterdir())
    old.close()


def test_a_read_only_state_on_a_corrupt_db_warns_starts_empty_and_loses_nothing(
        tmp_path: Path) -> None:
    # (whether a read-only command moves it aside or leaves it is not specified; either way
    # the user is told, nothing counts as built, and the bytes are kept)
    (tmp_path / ".odibi").mkdir()
    db = tmp_path / ".odibi" / "state.db"
    db.write_bytes(b"garbage" * 100)
    s = State(tmp_path, create=False)
    assert len(s.warnings) == 1 and "unreadable" in s.warnings[0]
    assert s.warnings[0].endswith("nothing built")
    assert s.records.traces() == {} and s.records.failures() == {} and s.caches.file_stamps() == {}
    s.close()
    kept = [p for p in (tmp_path / ".odibi").iterdir() if p.read_bytes() == b"garbage" * 100]
    assert len(kept) == 1


def test_a_read_only_state_without_odibi_dir_creates_nothing(tmp_path: Path) -> None:
    s = State(tmp_path, create=False)
    assert not s.available and s.warnings == []
    assert s.records.traces() == {} and s.records.fingerprints() == {}
    assert s.records.failures() == {}
    assert s.meta("warehouse") is None and s.caches.get_yaml("x", "k") is None
    assert s.caches.get_sql([Digest("k")]) == {}
    assert s.history.durations() == {} and s.history.runs() == []
    s.records.record("a", trace())
    s.records.record_failure("a", "fp", "boom")
    s.caches.put_file_stamps({"/x": (1, 2, 3, Digest("d"))})
    s.caches.put_yaml("x", "k", {"a": 1})
    s.set_meta("warehouse", "stamp")
    assert s.history.start_run("build") is None
    s.close()
    assert list(tmp_path.iterdir()) == []


# -- caches -------------------------------------------------------------------------------
def test_sql_cache_round_trip(tmp_path: Path) -> None:
    s = State(tmp_path)
    info = SqlInfo(Digest("tree1"), (TableRef("raw_orders", 14), TableRef("stg_x", -1)))
    s.caches.put_sql({Digest("k1"): info, Digest("k2"): SqlInfo(Digest("tree2"), ())})
    assert s.caches.get_sql([Digest("k1"), Digest("k3")]) == {"k1": info}
    assert s.caches.get_sql([]) == {}
    many = [Digest(f"k{i}") for i in range(300)]  # the one-scan path
    assert s.caches.get_sql(many) == {"k1": info, "k2": SqlInfo(Digest("tree2"), ())}
    s.close()


def test_transpile_cache_round_trip(tmp_path: Path) -> None:
    """Translations to another dialect survive the command that made them."""
    s = State(tmp_path)
    s.caches.put_transpiled({Digest("t1"): "SELECT\n  `a b`\nFROM t", Digest("t2"): "SELECT 1"})
    s.close()
    again = State(tmp_path)
    assert again.caches.get_transpiled([Digest("t1"), Digest("t3")]) == {
        "t1": "SELECT\n  `a b`\nFROM t"}
    assert again.caches.get_transpiled([]) == {}
    again.close()


def test_file_stamps_round_trip(tmp_path: Path) -> None:
    s = State(tmp_path)
    stamps = {"/p/data/orders.csv": (12100, 1_700_000_000_123_456_789, 42, Digest("d1")),
              "/p/data/ä.csv": (0, 1, 2, Digest("d2"))}
    s.caches.put_file_stamps(stamps)
    s.caches.put_file_stamps({"/p/data/ä.csv": (5, 6, 7, Digest("d3"))})
    s.close()
    again = State(tmp_path)
    assert again.caches.file_stamps() == {**stamps, "/p/data/ä.csv": (5, 6, 7, Digest("d3"))}
    again.close()


def test_yaml_cache_round_trip_is_keyed_by_path_and_content(tmp_path: Path) -> None:
    s = State(tmp_path)
    value = {"pipeline": "orders", "nodes": [{"name": "a", "sql": "SELECT 1"}], "n": (1, 2.5)}
    s.caches.put_yaml("/p/pipelines/a.yaml", "key1", value)
    assert s.caches.get_yaml("/p/pipelines/a.yaml", "key1") == value
    assert s.caches.get_yaml("/p/pipelines/a.yaml", "key2") is None  # the file changed since
    assert s.caches.get_yaml("/p/pipelines/b.yaml", "key1") is None
    s.caches.put_yaml("/p/pipelines/a.yaml", "key2", [1])
    assert s.caches.get_yaml("/p/pipelines/a.yaml", "key1") is None  # one entry per path
    assert s.caches.get_yaml("/p/pipelines/a.yaml", "key2") == [1]
    s.close()


def test_a_broken_yaml_cache_entry_is_a_miss(tmp_path: Path) -> None:
    s = State(tmp_path)
    s.close()
    con = sqlite3.connect(tmp_path / ".odibi" / "state.db")
    con.execute("INSERT INTO yaml_cache VALUES ('/p/a.yaml', 'k', ?)", (b"not a pickle",))
    con.commit()
    con.close()
    again = State(tmp_path)
    assert again.caches.get_yaml("/p/a.yaml", "k") is None
    again.close()


def test_meta_durations_and_runs(tmp_path: Path) -> None:
    s = State(tmp_path)
    assert s.meta("schema_version") == str(SCHEMA_VERSION)
    s.set_meta("warehouse", "[1,2,3,null]")
    assert s.meta("warehouse") == "[1,2,3,null]"
    s.set_meta("warehouse", None)
    assert s.meta("warehouse") is None
    s.history.put_durations({"a": 1.5, "b": 0.25})
    assert s.history.durations() == {"a": 1.5, "b": 0.25}
    run = s.history.start_run("build -j 2")
    s.history.finish_run(run, "ok", {"built": 3})
    (rid, started, finished, command, status, summary), = s.history.runs()
    assert (rid, command, status, summary) == (run, "build -j 2", "ok", {"built": 3})
    assert finished is not None and finished >= started
    s.close()


# -- what goes through which part -----------------------------------------------------------
def test_a_first_build_holds_its_cache_writes_and_replays_them_into_the_new_state(
        tmp_path: Path) -> None:
    first = State(tmp_path, create=False)  # the project is loaded before .odibi/ exists
    first.hold_caches()
    assert first.holding and not first.available
    info = SqlInfo(Digest("tree"), (TableRef("raw_orders", 14),))
    first.caches.put_sql({Digest("k"): info})
    first.caches.put_yaml("/p/a.yaml", "key", {"nodes": []})
    first.caches.put_schemas({Digest("s"): (("id", "BIGINT"),)})
    first.caches.put_file_stamps({"/p/data/a.csv": (1, 2, 3, Digest("d"))})
    first.caches.put_project("/p", "made", ["the", "project"])
    assert list(tmp_path.iterdir()) == []  # nothing written while the project is unproven
    assert first.caches.get_sql([Digest("k")]) == {}  # held, not readable back
    held = first.held()
    assert len(held) == 5
    first.close()

    state = State(tmp_path)  # the project is valid: the state is created
    state.replay(held)
    state.close()
    again = State(tmp_path, create=False)
    assert again.caches.get_sql([Digest("k")]) == {"k": info}
    assert again.caches.get_yaml("/p/a.yaml", "key") == {"nodes": []}
    assert again.caches.get_schema(Digest("s")) == (("id", "BIGINT"),)
    assert again.caches.file_stamps() == {"/p/data/a.csv": (1, 2, 3, Digest("d"))}
    assert again.caches.get_project("/p", lambda made: made == "made") == ["the", "project"]
    assert again.caches.get_project("/p", lambda made: False) is None  # not fresh: a miss
    again.close()


def test_record_meta_and_history_writes_are_never_held(tmp_path: Path) -> None:
    first = State(tmp_path, create=False)
    first.hold_caches()
    first.records.record("a", trace())
    first.records.record_many([("b", trace("fp2"))], deferred=True)
    first.records.record_failure("c", "fp", "boom")
    first.set_meta("warehouse", "stamp")
    first.history.put_durations({"a": 1.0})
    first.caches.put_yaml("/p/a.yaml", "key", 1)
    assert [sql.split(" INTO ")[1].split()[0] for sql, _ in first.held()] == ["yaml_cache"]
    assert first.records.recorded == {}  # nothing counts as recorded
    state = State(tmp_path)
    state.replay(first.held())
    assert state.records.traces() == {} and state.records.failures() == {}
    assert state.records.pending_restores() == {} and state.history.durations() == {}
    assert state.meta("warehouse") is None
    assert state.caches.get_yaml("/p/a.yaml", "key") == 1
    state.close()


def _lock_out(tmp_path: Path, state: State) -> sqlite3.Connection:
    """Another process's build holding the write lock; `state` waits 50 ms for it (a
    build waits 30 s, a read-only command 0.2 s)."""
    blocker = sqlite3.connect(tmp_path / ".odibi" / "state.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    assert state._db.con is not None
    state._db.con.execute("PRAGMA busy_timeout = 50")
    return blocker


def test_a_cache_write_that_loses_a_race_is_dropped_a_record_write_is_not(
        tmp_path: Path) -> None:
    s = State(tmp_path)
    s.records.record("a", trace())
    blocker = _lock_out(tmp_path, s)
    s.caches.put_sql({Digest("k"): SqlInfo(Digest("tree"), ())})  # silently dropped
    s.caches.put_yaml("/p/a.yaml", "key", 1)
    s.caches.put_schemas({Digest("s"): (("id", "BIGINT"),)})
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        s.records.record("b", trace("fp2"))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        s.records.record_failure("a", "fp9", "boom")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        s.history.put_durations({"a": 1.0})
    blocker.rollback()
    blocker.close()
    assert s.caches.get_sql([Digest("k")]) == {} and s.caches.get_yaml("/p/a.yaml", "key") is None
    assert s.records.traces() == {"a": trace()} and s.records.failures() == {}
    s.caches.put_yaml("/p/a.yaml", "key", 1)  # the race is over: kept
    assert s.caches.get_yaml("/p/a.yaml", "key") == 1
    s.close()


def test_a_read_only_command_keeps_schemas_only_and_never_waits_for_a_build(
        tmp_path: Path) -> None:
    State(tmp_path).close()
    ro = State(tmp_path, create=False)
    ro.caches.put_schemas({Digest("s1"): (("id", "BIGINT"),)})
    ro.caches.put_yaml("/p/a.yaml", "key", 1)  # a build's cache, not a read-only command's
    ro.records.record("a", trace())
    assert ro.history.start_run("validate") is None
    blocker = _lock_out(tmp_path, ro)
    ro.caches.put_schemas({Digest("s2"): (("id", "BIGINT"),)})  # busy: dropped
    blocker.rollback()
    blocker.close()
    ro.close()
    again = State(tmp_path, create=False)
    assert again.caches.get_schema(Digest("s1")) == (("id", "BIGINT"),)
    assert again.caches.get_schema(Digest("s2")) is None
    assert again.caches.get_yaml("/p/a.yaml", "key") is None and again.records.traces() == {}
    again.close()


def test_restores_recorded_without_the_warehouse_are_pending_until_applied(
        tmp_path: Path) -> None:
    s = State(tmp_path)
    s.records.record_many([("a", trace("fp1")), ("b", trace("fp2"))])
    assert s.records.pending_restores() == {}
    s.records.record_many([("a", trace("fp3")), ("c", trace("fp4", stored=None))], deferred=True)
    assert s.records.pending_restores() == {"a": OutputRef("stg_orders", "fp3")}  # c: no output
    assert set(s.records.recorded) == {"a", "b", "c"}
    assert s.records.recorded[NodeId("a")] == trace("fp3")
    s.records.forget(["a"])  # its record gone: it is rebuilt, nothing to restore
    assert s.records.pending_restores() == {"a": None}
    s.records.restores_applied(["a"])
    assert s.records.pending_restores() == {}
    assert sorted((n, f, t) for n, f, t, _ in s.records.versions()) == [
        ("a", "fp1", OutputRef("stg_orders", "fp1")), ("a", "fp3", OutputRef("stg_orders", "fp3")),
        ("b", "fp2", OutputRef("stg_orders", "fp2")), ("c", "fp4", None)]
    assert s.records.version("a", "fp1") == trace("fp1") and s.records.version("a", "x") is None
    s.records.forget_versions([("a", "fp1")])
    assert s.records.version("a", "fp1") is None
    s.close()
