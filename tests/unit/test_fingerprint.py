"""Fingerprints: file digests cached by stat (with a fake, counting file system), chaining,
and which edits of a real project change which own part, and which change nothing.
Environment values never reach OwnParts, the build state or odibi.lock."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from odibi.builder import load
from odibi.config.load import parse_var_overrides
from odibi.fingerprint import FileDigests, OwnParts, chain, own_parts
from odibi.hashing import digest_bytes
from odibi.ids import Digest, NodeId, NodeKind
from odibi.resolve import Resolved
from tests.conftest import run_cli


# -- FileDigests --------------------------------------------------------------------------
class FakeFileSystem:
    """Files as (bytes, mtime_ns, inode); counts every hash."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int, int]] = {}
        self.hashed: list[str] = []

    def put(self, path: str, data: bytes, mtime_ns: int, inode: int = 1) -> None:
        self.files[path] = (data, mtime_ns, inode)

    def stat(self, path: str) -> tuple[int, int, int] | None:
        if path not in self.files:
            return None
        data, mtime, inode = self.files[path]
        return len(data), mtime, inode

    def hash(self, path: str) -> Digest:
        self.hashed.append(path)
        return digest_bytes(self.files[path][0])


def test_a_file_is_hashed_once_and_never_again_while_its_stat_is_unchanged() -> None:
    fs = FakeFileSystem()
    fs.put("/d/orders.csv", b"id,amount\n1,10\n", 1_000, inode=7)
    first = FileDigests({}, fs)
    assert first.digest("/d/orders.csv") == (digest_bytes(b"id,amount\n1,10\n"), 15)
    assert first.digest("/d/orders.csv") == (digest_bytes(b"id,amount\n1,10\n"), 15)
    assert fs.hashed == ["/d/orders.csv"]
    assert first.changed == {"/d/orders.csv": (15, 1_000, 7, digest_bytes(b"id,amount\n1,10\n"))}
    # the next command starts from the stored stamps: nothing is read at all
    second = FileDigests(dict(first.changed), fs)
    assert second.digest("/d/orders.csv") == (digest_bytes(b"id,amount\n1,10\n"), 15)
    assert fs.hashed == ["/d/orders.csv"]
    assert second.changed == {}


def test_a_touched_file_is_rehashed_once_and_found_unchanged() -> None:
    fs = FakeFileSystem()
    fs.put("/d/orders.csv", b"abc", 1_000)
    files = FileDigests({}, fs)
    files.digest("/d/orders.csv")
    stamps = dict(files.changed)
    fs.hashed.clear()
    fs.put("/d/orders.csv", b"abc", 2_000)  # touch: new mtime, same bytes
    again = FileDigests(stamps, fs)
    assert again.digest("/d/orders.csv") == (digest_bytes(b"abc"), 3)
    assert again.digest("/d/orders.csv") == (digest_bytes(b"abc"), 3)
    assert fs.hashed == ["/d/orders.csv"]
    assert again.changed == {"/d/orders.csv": (3, 2_000, 1, digest_bytes(b"abc"))}
    fs.hashed.clear()
    assert FileDigests(again.changed, fs).digest("/d/orders.csv") == (digest_bytes(b"abc"), 3)
    assert fs.hashed == []


def test_a_rewritten_file_gets_its_new_digest_and_size() -> None:
    fs = FakeFileSystem()
    fs.put("/d/a.csv", b"abc", 1_000)
    files = FileDigests({}, fs)
    files.digest("/d/a.csv")
    fs.put("/d/a.csv", b"abcd", 3_000)
    assert FileDigests(files.changed, fs).digest("/d/a.csv") == (digest_bytes(b"abcd"), 4)


def test_a_replaced_file_with_the_same_size_and_mtime_is_rehashed() -> None:
    fs = FakeFileSystem()
    fs.put("/d/a.csv", b"abc", 1_000, inode=1)
    files = FileDigests({}, fs)
    files.digest("/d/a.csv")
    fs.put("/d/a.csv", b"xyz", 1_000, inode=2)  # mv new.csv a.csv
    assert FileDigests(files.changed, fs).digest("/d/a.csv") == (digest_bytes(b"xyz"), 3)
    assert fs.hashed == ["/d/a.csv", "/d/a.csv"]


def test_a_missing_file_has_no_digest_and_is_not_read() -> None:
    fs = FakeFileSystem()
    files = FileDigests({"/d/gone.csv": (3, 1, 1, Digest("old"))}, fs)
    assert files.digest("/d/gone.csv") is None
    assert fs.hashed == [] and files.changed == {}


def test_real_file_system_digest_is_blake3_of_the_bytes(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"id\n1\n")
    assert FileDigests({}).digest(str(p)) == (digest_bytes(b"id\n1\n"), 5)


# -- chain ----------------------------------------------------------------------------------
def test_chain_ignores_mapping_order_and_changes_with_any_upstream() -> None:
    own, a, b = Digest("own"), Digest("fa"), Digest("fb")
    base = chain(own, {NodeId("a"): a, NodeId("b"): b})
    assert chain(own, {NodeId("b"): b, NodeId("a"): a}) == base
    variants = [
        chain(Digest("own2"), {NodeId("a"): a, NodeId("b"): b}),
        chain(own, {NodeId("a"): Digest("fa2"), NodeId("b"): b}),
        chain(own, {NodeId("a"): a, NodeId("b"): Digest("fb2")}),
        chain(own, {NodeId("a"): a}),
        chain(own, {NodeId("a"): a, NodeId("b"): b, NodeId("c"): Digest("fc")}),
        chain(own, {NodeId("a"): a, NodeId("c"): b}),  # same digests, another name
        chain(own, {NodeId("a"): b, NodeId("b"): a}),  # digests swapped between names
        chain(own, {}),
    ]
    assert len({base, *variants}) == len(variants) + 1


# -- own parts of a real project -------------------------------------------------------------
def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def parts_of(root: Path, *overrides: str) -> dict[NodeId, OwnParts]:
    resolved: Resolved = load(root, parse_var_overrides(list(overrides)), None)
    files = FileDigests({})
    return {n: own_parts(resolved, n, files) for n in resolved.graph.names}


def differing(a: OwnParts, b: OwnParts) -> set[str]:
    return {f.name for f in fields(OwnParts) if getattr(a, f.name) != getattr(b, f.name)}


def test_description_and_tags_do_not_change_anything(shop: Path) -> None:
    before = parts_of(shop)
    edit(shop / "pipelines/staging.yaml",
         "description: Orders that count as sales (not cancelled, above the minimum amount).",
         "description: Sales orders.\n    tags: [core, finance]")
    edit(shop / "pipelines/marts.yaml", "tags: [daily]\n    write:", "tags: [weekly]\n    write:")
    edit(shop / "pipelines/marts.yaml", "description: Tables the business reads.",
         "description: Marts.")
    after = parts_of(shop)
    assert after == before


def test_contracts_change_only_the_contracts_key(shop: Path) -> None:
    before = parts_of(shop)
    edit(shop / "pipelines/staging.yaml", "      - not_null(raw_orders.order_id)\n",
         "      - not_null(raw_orders.order_id)\n      - row_count(raw_orders) > 10\n")
    after = parts_of(shop)
    assert differing(before["stg_orders"], after["stg_orders"]) == {"contracts_key"}
    assert {n for n in before if before[n] != after[n]} == {"stg_orders"}


def test_validations_change_only_the_validate_key(shop: Path) -> None:
    before = parts_of(shop)
    edit(shop / "pipelines/staging.yaml", "      - all(amount > 0)\n",
         "      - all(amount > 0)\n      - not_null(customer_id)\n")
    after = parts_of(shop)
    assert differing(before["stg_orders"], after["stg_orders"]) == {"validate_key"}
    assert {n for n in before if before[n] != after[n]} == {"stg_orders"}


def test_writes_change_only_the_write_key(shop: Path) -> None:
    before = parts_of(shop)
    edit(shop / "pipelines/marts.yaml",
         "write: {connection: out, path: daily_revenue.csv, format: csv}",
         "write: {connection: out, path: daily_revenue.parquet, format: parquet}")
    after = parts_of(shop)
    assert differing(before["daily_revenue"], after["daily_revenue"]) == {"write_key"}
    assert {n for n in before if before[n] != after[n]} == {"daily_revenue"}


def test_sql_whitespace_comments_and_keyword_case_do_not_change_the_digest(shop: Path) -> None:
    before = parts_of(shop)
    edit(shop / "pipelines/staging.yaml",
         "      SELECT payment_id, order_id, lower(method) AS method, amount, paid_at\n"
         "      FROM raw_payments\n"
         "      WHERE amount > 0\n",
         "      -- payments that moved money\n"
         "      select   payment_id,\n"
         "               order_id,\n"
         "               lower(method) as method,  /* normalised */\n"
         "               amount, paid_at\n"
         "      from raw_payments\n\n"
         "      where amount > 0   -- refunds are negative\n")
    after = parts_of(shop)
    a, b = before["stg_payments"], after["stg_payments"]
    assert differing(a, b) == {"sql_text", "text_digest"}
    assert b.digest == a.digest and b.logic == a.logic
    assert b.sql_text is not None and b.sql_text.startswith("-- payments that moved money\n")


def test_a_real_sql_change_changes_the_logic_and_digest(shop: Path) -> None:
    before = parts_of(shop)
    edit(shop / "pipelines/staging.yaml", "WHERE amount > 0", "WHERE amount > 1")
    after = parts_of(shop)
    assert differing(before["stg_payments"], after["stg_payments"]) == {
        "logic", "digest", "sql_text", "text_digest"}


def test_a_var_changes_the_nodes_that_use_it_and_no_other(shop: Path) -> None:
    before = parts_of(shop)
    assert before["stg_orders"].vars == {"min_amount": "0"}
    assert before["daily_revenue"].vars == {"currency": '"EUR"'}
    assert before["stg_payments"].vars == {}
    edit(shop / "odibi.yaml", "min_amount: 0 ", "min_amount: 5 ")
    after = parts_of(shop)
    assert differing(before["stg_orders"], after["stg_orders"]) == {"vars", "digest"}
    assert after["stg_orders"].vars == {"min_amount": "5"}
    assert {n for n in before if before[n] != after[n]} == {"stg_orders"}
    # the same through --var, and a var the node does not use changes nothing
    assert parts_of(shop, "min_amount=0")["stg_orders"] == before["stg_orders"]
    overridden = parts_of(shop, "currency=USD")
    assert {n for n in after if after[n] != overridden[n]} == {"daily_revenue"}
    assert overridden["daily_revenue"].vars == {"currency": '"USD"'}


def test_a_source_file_change_changes_only_the_read_node(shop: Path) -> None:
    before = parts_of(shop)
    with open(shop / "data/payments.csv", "a") as f:
        f.write("9999,1001,card,1.00,2024-07-01\n")
    after = parts_of(shop)
    assert differing(before["raw_payments"], after["raw_payments"]) == {"sources", "digest"}
    assert {n for n in before if before[n] != after[n]} == {"raw_payments"}
    (digest, size), = after["raw_payments"].sources.values()
    assert list(after["raw_payments"].sources) == ["raw:payments.csv"]
    assert size == (shop / "data/payments.csv").stat().st_size


def test_kinds_and_python_file(shop: Path) -> None:
    p = parts_of(shop)
    assert p["raw_orders"].kind is NodeKind.READ and p["raw_orders"].sql_text is None
    seg = p["customer_segments"]
    assert seg.kind is NodeKind.PYTHON and seg.python_file == "transforms/segments.py"
    assert seg.config == {"python": '"transforms.segments:segment"'}
    assert p["raw_orders"].config == {"read.connection": '"raw"', "read.format": '"csv"',
                                      "read.path": '"orders.csv"'}


# -- environment values never reach the disk ---------------------------------------------------
SECRET = "s3cr3t-XYZZY-8c1f"


def test_env_values_never_appear_in_own_parts_state_or_lock(
        shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_TEST_SECRET", SECRET)
    edit(shop / "pipelines/staging.yaml", "read: {connection: raw, path: payments.csv}",
         "read: {connection: raw, path: payments.csv, "
         "options: {nullstr: '${env:ODIBI_TEST_SECRET}'}}")
    edit(shop / "pipelines/staging.yaml", "WHERE status <> 'cancelled'",
         "WHERE status <> 'cancelled' AND status <> '${env:ODIBI_TEST_SECRET}'")
    own = parts_of(shop)
    for name, parts in own.items():
        assert SECRET not in repr(parts), name
    assert own["raw_payments"].config["read.options.nullstr"] == '"${env:ODIBI_TEST_SECRET}"'
    assert "${env:ODIBI_TEST_SECRET}" in (own["stg_orders"].sql_text or "")

    r = run_cli("-C", str(shop), "build", "-j", "2")
    assert r.code == 0, r.text
    assert SECRET not in r.text
    written = [shop / "odibi.lock", *(p for p in (shop / ".odibi").rglob("*") if p.is_file())]
    assert len(written) >= 3  # the lock, state.db, warehouse.duckdb
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    # and what odibi prints about the node shows the placeholder, not the value
    edit(shop / "pipelines/staging.yaml", "AND status <> '${env:",
         "AND status <> 'void' AND status <> '${env:")
    r = run_cli("-C", str(shop), "explain", "stg_orders")
    assert r.code == 0, r.text
    assert "${env:ODIBI_TEST_SECRET}" in r.out and SECRET not in r.text
    for path in [shop / "odibi.lock", *(p for p in (shop / ".odibi").rglob("*") if p.is_file())]:
        assert SECRET.encode() not in path.read_bytes(), path
    # and the lock holds the template
    assert "${env:ODIBI_TEST_SECRET}" in (shop / "odibi.lock").read_text()


# -- stamps of the .sql files a project was loaded from ------------------------------------------
def test_a_file_stamp_trusts_an_aged_stat_and_rehashes_a_changed_or_racy_one(
        tmp_path: Path) -> None:
    import os
    import time

    from odibi.config.ytree import read_bytes
    from odibi.fingerprint import same_file, stamp_file

    path = tmp_path / "x.sql"
    path.write_text("SELECT 1 AS x\n")
    old = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(old, old))
    data, stamp = stamp_file(path, read_bytes)
    assert data == b"SELECT 1 AS x\n" and stamp[1] == old
    assert same_file(path, stamp)
    path.write_text("SELECT 2 AS x\n")  # same size, a new mtime: rehashed, found different
    assert not same_file(path, stamp)
    os.utime(path, ns=(old, old))  # the same stat as stamped: trusted (as git and make do)
    assert same_file(path, stamp)
    path.write_text("SELECT 1 AS x\n")  # just written: racy, never trusted by its stat
    _, racy = stamp_file(path, read_bytes)
    assert racy[1] == -1
    path.write_text("SELECT 3 AS x\n")
    assert not same_file(path, racy)
    path.unlink()
    with pytest.raises(OSError):
        same_file(path, stamp)
