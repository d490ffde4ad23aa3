"""The build state in .odibi/state.db: traces round-trip, records and failures, caches;
a corrupt or old database is moved aside with a warning and the state starts empty; a
read-only state never creates anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
        stored=OutputRef.of(NodeId("stg_orders"), fp), output=Digest("out1"), rows=62,
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
    assert s.traces() == {} and s.failures() == {} and s.fingerprints() == {}
    s.record("stg_orders", trace("fp1"))
    s.record("raw_orders", trace("fpr", kind="read"))
    assert s.traces() == {"stg_orders": trace("fp1"), "raw_orders": trace("fpr", kind="read")}
    assert s.traces(["raw_orders", "nosuch"]) == {"raw_orders": trace("fpr", kind="read")}
    assert s.fingerprints() == {"stg_orders": "fp1", "raw_orders": "fpr"}
    s.record("stg_orders", trace("fp2"))  # a rebuild replaces the record
    assert s.traces()[NodeId("stg_orders")] == trace("fp2")

    s.record_failure("stg_orders", "fp3", "Binder Error: column x not found")
    assert s.failures() == {"stg_orders": ("fp3", "Binder Error: column x not found")}
    assert s.traces()[NodeId("stg_orders")] == trace("fp2")  # the last success is kept
    s.record("stg_orders", trace("fp3"))  # success forgets the failure
    assert s.failures() == {}

    s.forget(["raw_orders"])
    assert set(s.traces()) == {"stg_orders"}
    s.close()
    again = State(tmp_path, create=False)
    assert again.traces() == {"stg_orders": trace("fp3")}
    assert again.warnings == []
    again.close()


def test_many_names_are_looked_up_in_chunks(tmp_path: Path) -> None:
    s = State(tmp_path)
    for i in range(1_200):
        s.record(f"n{i}", trace(f"fp{i}"))
    got = s.traces([f"n{i}" for i in range(0, 1_200, 2)])
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
    assert s.available and s.traces() == {} and s.failures() == {}
    s.record("a", trace())  # and it works from there
    s.close()
    again = State(tmp_path)
    assert again.warnings == [] and again.traces() == {"a": trace()}
    again.close()


def test_an_old_schema_version_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    s = State(tmp_path)
    s.record("a", trace())
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
    assert old.traces() == {}
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
    assert s.traces() == {} and s.failures() == {} and s.file_stamps() == {}
    s.close()
    kept = [p for p in (tmp_path / ".odibi").iterdir() if p.read_bytes() == b"garbage" * 100]
    assert len(kept) == 1


def test_a_read_only_state_without_odibi_dir_creates_nothing(tmp_path: Path) -> None:
    s = State(tmp_path, create=False)
    assert not s.available and s.warnings == []
    assert s.traces() == {} and s.fingerprints() == {} and s.failures() == {}
    assert s.meta("warehouse") is None and s.get_yaml("x", "k") is None
    assert s.get_sql([Digest("k")]) == {} and s.durations() == {} and s.runs() == []
    s.record("a", trace())
    s.record_failure("a", "fp", "boom")
    s.put_file_stamps({"/x": (1, 2, 3, Digest("d"))})
    s.put_yaml("x", "k", {"a": 1})
    s.set_meta("warehouse", "stamp")
    assert s.start_run("build") is None
    s.close()
    assert list(tmp_path.iterdir()) == []


# -- caches -------------------------------------------------------------------------------
def test_sql_cache_round_trip(tmp_path: Path) -> None:
    s = State(tmp_path)
    info = SqlInfo(Digest("tree1"), (TableRef("raw_orders", 14), TableRef("stg_x", -1)))
    s.put_sql({Digest("k1"): info, Digest("k2"): SqlInfo(Digest("tree2"), ())})
    assert s.get_sql([Digest("k1"), Digest("k3")]) == {"k1": info}
    assert s.get_sql([]) == {}
    many = [Digest(f"k{i}") for i in range(300)]  # the one-scan path
    assert s.get_sql(many) == {"k1": info, "k2": SqlInfo(Digest("tree2"), ())}
    s.close()


def test_file_stamps_round_trip(tmp_path: Path) -> None:
    s = State(tmp_path)
    stamps = {"/p/data/orders.csv": (12100, 1_700_000_000_123_456_789, 42, Digest("d1")),
              "/p/data/ä.csv": (0, 1, 2, Digest("d2"))}
    s.put_file_stamps(stamps)
    s.put_file_stamps({"/p/data/ä.csv": (5, 6, 7, Digest("d3"))})
    s.close()
    again = State(tmp_path)
    assert again.file_stamps() == {**stamps, "/p/data/ä.csv": (5, 6, 7, Digest("d3"))}
    again.close()


def test_yaml_cache_round_trip_is_keyed_by_path_and_content(tmp_path: Path) -> None:
    s = State(tmp_path)
    value = {"pipeline": "orders", "nodes": [{"name": "a", "sql": "SELECT 1"}], "n": (1, 2.5)}
    s.put_yaml("/p/pipelines/a.yaml", "key1", value)
    assert s.get_yaml("/p/pipelines/a.yaml", "key1") == value
    assert s.get_yaml("/p/pipelines/a.yaml", "key2") is None  # the file changed since
    assert s.get_yaml("/p/pipelines/b.yaml", "key1") is None
    s.put_yaml("/p/pipelines/a.yaml", "key2", [1])
    assert s.get_yaml("/p/pipelines/a.yaml", "key1") is None  # one entry per path
    assert s.get_yaml("/p/pipelines/a.yaml", "key2") == [1]
    s.close()


def test_a_broken_yaml_cache_entry_is_a_miss(tmp_path: Path) -> None:
    s = State(tmp_path)
    s.close()
    con = sqlite3.connect(tmp_path / ".odibi" / "state.db")
    con.execute("INSERT INTO yaml_cache VALUES ('/p/a.yaml', 'k', ?)", (b"not a pickle",))
    con.commit()
    con.close()
    again = State(tmp_path)
    assert again.get_yaml("/p/a.yaml", "k") is None
    again.close()


def test_meta_durations_and_runs(tmp_path: Path) -> None:
    s = State(tmp_path)
    assert s.meta("schema_version") == str(SCHEMA_VERSION)
    s.set_meta("warehouse", "[1,2,3,null]")
    assert s.meta("warehouse") == "[1,2,3,null]"
    s.set_meta("warehouse", None)
    assert s.meta("warehouse") is None
    s.put_durations({"a": 1.5, "b": 0.25})
    assert s.durations() == {"a": 1.5, "b": 0.25}
    run = s.start_run("build -j 2")
    s.finish_run(run, "ok", {"built": 3})
    (rid, started, finished, command, status, summary), = s.runs()
    assert (rid, command, status, summary) == (run, "build -j 2", "ok", {"built": 3})
    assert finished is not None and finished >= started
    s.close()
