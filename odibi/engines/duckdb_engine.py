"""The DuckDB engine: an embedded warehouse file under `.odibi/`.

Layout: schema `odibi_store` holds one table per stored version (`OutputRef`), named
`<node>__<version>`; `main.<node>` is a view of the node's current version, so SQL nodes
read their inputs by plain name. Reads use DuckDB's own csv/parquet/json readers on the
exact files that were fingerprinted; exports are written by COPY to a temporary file that
is renamed into place. Data stays in DuckDB from read to write unless a Python node needs
it as a DataFrame (pandas). Every connection is sandboxed (`odibi.engines.duckdb_sandbox`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.config.model import ReadSpec, WriteSpec
from odibi.engines.base import (Capabilities, Catalog, EngineError, EngineInterrupted,
                                EngineOptions, Location, Relation, TableInfo, WarehouseBusy,
                                WarehouseDamaged, WarehouseUnavailable)
from odibi.engines.duckdb_files import stamp
from odibi.engines.duckdb_sandbox import (READERS, connect, copy_options, drop_stale_temps,
                                          engine_error, export_temp, quote_ident,
                                          reader_options, sql_literal)
from odibi.hashing import digest_parts
from odibi.ids import NodeId, OutputRef

if TYPE_CHECKING:
    from odibi.expr.measures import Query

CAPABILITIES = Capabilities(transactions=True, views=True, interrupt=True, dialect="duckdb",
                            frame="pandas.DataFrame")
STORE = "odibi_store"
# The block size of a warehouse is chosen when odibi creates it (an existing one keeps
# its own). DuckDB stores every table in blocks of its own: a tiny table costs a whole
# block, written at each checkpoint, so a project of many small nodes wants small blocks;
# large tables are scanned and written faster in DuckDB's default 256 KiB ones (bench/,
# README "Warehouse blocks").
SMALL_BLOCKS = 16384  # bytes: sources that add up to less than SMALL_SOURCES
LARGE_BLOCKS = 262144  # bytes: DuckDB's default
SMALL_SOURCES = 4 * 1024 * 1024  # bytes of source files
READER_WAIT = 30.0  # seconds a build waits for a reader to let go of the warehouse
_VIEW_TARGET = re.compile(r'FROM\s+"?odibi_store"?\.(?:"((?:[^"]|"")*)"|([A-Za-z0-9_]+))', re.I)


def block_size_for(source_bytes: int) -> int:
    """The block size of a new warehouse for a project whose sources add up to
    `source_bytes` (its outputs are of that order)."""
    return SMALL_BLOCKS if source_bytes < SMALL_SOURCES else LARGE_BLOCKS


def store_table(out: OutputRef) -> str:
    return f"{STORE}.{quote_ident(f'{out.node}__{out.version}')}"


def relation_sql(rel: Relation) -> str:
    """How DuckDB SQL names a relation: a stored version's table, or a node's view."""
    if isinstance(rel, OutputRef):
        return store_table(rel)
    return f"main.{quote_ident(rel)}"


def _ref_of(table: str) -> OutputRef | None:
    """The stored version a store table (its unquoted name) holds."""
    node, sep, version = table.rpartition("__")
    return OutputRef(NodeId(node), version) if sep and node else None


class DuckDBSession:
    """One worker's connection (a cursor of the engine's database). Not thread-safe; one
    thread uses it at a time, another may call `interrupt`."""

    def __init__(self, cursor: Any, redact: Mapping[str, str] | None = None) -> None:
        self.cur = cursor
        self.in_txn = False
        self.redact = redact

    def _mapped(self, call: Callable[[], Any]) -> Any:
        """call(), with DuckDB's errors as the engine's (an interrupt, or an EngineError)."""
        import duckdb

        try:
            return call()
        except duckdb.InterruptException:
            raise EngineInterrupted("interrupted") from None
        except duckdb.Error as e:
            raise engine_error(e, self.redact) from None

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self._mapped(lambda: self.cur.execute(sql, params) if params is not None
                            else self.cur.execute(sql))

    def _one(self, sql: str) -> Any:
        """Execute and fetch one row (fetching runs the query too: errors are mapped)."""
        return self._mapped(lambda: self.cur.execute(sql).fetchone())

    @staticmethod
    def _relation_sql(rel: Relation) -> str:
        return relation_sql(rel)

    def begin(self) -> None:
        self._run("BEGIN TRANSACTION")
        self.in_txn = True

    def commit(self) -> None:
        self._run("COMMIT")
        self.in_txn = False

    def rollback(self) -> None:
        if self.in_txn:
            try:
                self.cur.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the transaction may already be gone
                pass
            self.in_txn = False

    def read(self, out: OutputRef, sources: Sequence[Location], spec: ReadSpec) -> int:
        if not sources:
            raise EngineError(f"no file matches {spec.rendered_path}")
        paths = sql_literal([s.uri for s in sources])
        return self._create(out, f"SELECT * FROM {READERS[spec.format]}({paths}"
                                 f"{reader_options(spec.rendered_options)})")

    def run_sql(self, out: OutputRef, sql: str, inputs: Sequence[NodeId] = ()) -> int:
        return self._create(out, sql)

    def _create(self, out: OutputRef, select: str) -> int:
        """CREATE TABLE AS; DuckDB answers with the number of rows it wrote."""
        row = self._one(f"CREATE OR REPLACE TABLE {store_table(out)} AS {select}")
        return int(row[0]) if row else -1

    def frames(self, inputs: Mapping[str, Relation], pandas: Iterable[str] = ()
               ) -> dict[str, Any]:
        """Each input as a pandas DataFrame, by parameter name."""
        return self._mapped(lambda: {
            param: self.cur.execute(f"SELECT * FROM {relation_sql(rel)}").df()
            for param, rel in inputs.items()})

    def create_from_frame(self, out: OutputRef, frame: Any) -> int:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise EngineError(f"must return a pandas DataFrame, returned {type(frame).__name__}")
        import pyarrow as pa

        view = f"__odibi_result_{threading.get_ident()}"
        try:  # through Arrow: DuckDB's own pandas scan costs ~2 ms more per frame
            data = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError):
            data = frame  # mixed-type object columns: let DuckDB's pandas scan decide
        self._mapped(lambda: self.cur.register(view, data))
        try:
            return self._create(out, f"SELECT * FROM {quote_ident(view)}")
        finally:  # (after an interrupt the transaction is aborted: the view goes with it)
            import duckdb

            with contextlib.suppress(duckdb.Error):
                self.cur.unregister(view)

    def describe(self, out: OutputRef, rows: int) -> TableInfo:
        """Schema and an order-insensitive content digest: the sum of DuckDB's 64-bit row
        hashes (a HUGEINT, so it cannot overflow), with the row count and the schema."""
        # (the empty sum and the text of the HUGEINT made here, not in SQL: ~0.1 ms less a
        # node, the same digest as `coalesce(sum(hash(t)), 0)::VARCHAR`)
        (total,) = self._one(f"SELECT sum(hash(t)) FROM {store_table(out)} AS t")
        total = str(total or 0)
        schema = tuple(f"{c} {t}" for c, t in self.columns(out).items())
        return TableInfo(rows, schema, digest_parts("table", json.dumps(schema), str(rows), total))

    def columns(self, relation: Relation) -> dict[str, str]:
        """column -> type, in column order, as DuckDB writes the type (`DECIMAL(18,3)`,
        `STRUCT(x INTEGER)`)."""
        name = relation_sql(relation)
        columns = self._run(f"SELECT * FROM {name} LIMIT 0").description
        if any(isinstance(c[1], str) for c in columns):  # DuckDB < 1.5 says NUMBER, dict...
            return {str(r[0]): str(r[1]) for r in self._run(f"DESCRIBE {name}").fetchall()}
        return {c[0]: str(c[1]) for c in columns}

    def is_text(self, column_type: str) -> bool:
        return column_type == "VARCHAR"

    def measure(self, query: Query, relations: Mapping[str, Relation]) -> dict[str, Any]:
        """The measures of `query` in one statement (`duckdb_rules.statement`): {key: value}.
        DuckDB gives lists, structs (dicts) and rows (tuples) back as Python values, kept
        as they are (a top-level row becomes a list)."""
        from odibi.engines.duckdb_rules import statement  # not on a no-op build's path

        row = self._one(statement(query, lambda ds: self._relation_sql(relations[ds])))
        return {m.key: (list(v) if isinstance(v, tuple) else v)
                for m, v in zip(query.measures, row or ())}


    def make_current(self, node: NodeId, out: OutputRef) -> None:
        self._run(f"CREATE OR REPLACE VIEW main.{quote_ident(node)} AS "
                  f"SELECT * FROM {store_table(out)}")

    def export(self, out: OutputRef, write: WriteSpec, dest: Location) -> None:
        path = dest.path
        tmp = export_temp(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            drop_stale_temps(path)
            self._run(f"COPY (SELECT * FROM {store_table(out)}) TO {sql_literal(str(tmp))} "
                      f"({copy_options(write.format, write.rendered_options)})")
            os.replace(tmp, path)
        except OSError as e:  # the file system refused: the node's failure, not odibi's
            raise EngineError(f"cannot write {path}: {e.strerror or e}") from None
        finally:
            if tmp.exists():
                tmp.unlink()

    def interrupt(self) -> None:
        try:
            self.cur.interrupt()
        except Exception:  # noqa: BLE001 - nothing running
            pass

    def close(self) -> None:
        self.rollback()
        self.cur.close()


class DuckDBEngine:
    """The warehouse `.odibi/warehouse.duckdb`, opened once per command.

    `lazy` defers connecting (and importing DuckDB) to the first use: a build that only
    restores earlier versions never opens the warehouse (the state records which versions
    to make current; `on_open` applies them when the warehouse is next opened)."""

    capabilities = CAPABILITIES

    def __init__(self, path: Path, options: EngineOptions = EngineOptions(),
                 on_open: Callable[[DuckDBEngine], None] | None = None) -> None:
        """`options.redact`: {secret text: what to show instead}, applied to every error
        message (the values of the project's `${env:X}`). `options.access`: the files its
        SQL may touch (the sandbox; by default none)."""
        self.path = self.where = path
        self.options = options
        self.redact = options.redact
        self.read_only = options.read_only
        self.on_open = on_open
        self._con: Any = None
        self._opening = threading.Lock()
        if not options.lazy:
            self.open()

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def is_open(self) -> bool:
        return self._con is not None

    def stamp(self) -> str | None:
        """Size/mtime/inode of the warehouse file and its WAL."""
        return stamp(self.path)

    def open(self) -> None:
        """Connect (once); then run `on_open` (the build applies deferred restores)."""
        with self._opening:
            if self._con is not None:
                return
            self._con = self._connect()
        if self.on_open is not None:
            self.on_open(self)

    def _connect(self) -> Any:
        import duckdb  # deferred: only commands that touch data pay for it

        # (the block size applies only to a warehouse created now)
        config: dict[str, Any] = {
            "default_block_size": str(block_size_for(self.options.source_bytes))}
        if self.options.threads:
            config["threads"] = self.options.threads
        deadline = time.monotonic() + (0 if self.read_only else READER_WAIT)
        while True:
            try:
                con = connect(str(self.path), self.options.access, read_only=self.read_only,
                              config=config)
                break
            except duckdb.Error as e:
                # a read-only command (`show`, `test --generate`) holds the file for a
                # moment: a build, which holds the build lock, waits for it to let go
                if "Conflicting lock" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise _unavailable(self.path, e) from None
        if not self.read_only:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {STORE}")
        return con

    @property
    def con(self) -> Any:
        if self._con is None:
            self.open()
        return self._con

    def session(self) -> DuckDBSession:
        return DuckDBSession(self.con.cursor(), self.redact)

    def prepare_python(self) -> None:
        """Import pandas once, up front, rather than inside the first Python node."""
        import pandas  # noqa: F401

    def catalog(self) -> Catalog:
        stored = frozenset(ref for (t,) in self.con.execute(
            # (no parameter: DuckDB 1.x imports pandas on its first parameterized query)
            f"SELECT table_name FROM duckdb_tables() WHERE schema_name = {sql_literal(STORE)}"
            ).fetchall() if (ref := _ref_of(t)) is not None)
        current: dict[NodeId, OutputRef] = {}
        for name, sql in self.con.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'main' "
                "AND NOT internal").fetchall():
            # DuckDB keeps the view's SQL with or without the quotes it was written with
            m = _VIEW_TARGET.search(sql)
            target = (m.group(1) if m.group(1) is not None else m.group(2)) if m else None
            ref = _ref_of(target.replace('""', '"')) if target is not None else None
            if ref is not None:
                current[NodeId(name)] = ref
        return Catalog(stored, current)

    def set_aside(self) -> str:
        self.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        for suffix in ("", ".wal"):
            if Path(str(self.path) + suffix).exists():
                os.replace(Path(str(self.path) + suffix), Path(str(aside) + suffix))
        return aside.name

    def preview(self, relation: Relation, limit: int
                ) -> tuple[list[str], list[tuple[Any, ...]], int]:
        import duckdb

        name = relation_sql(relation)
        try:
            cur = self.con.execute(f"SELECT * FROM {name} LIMIT {limit}")
            columns = [d[0] for d in cur.description]
            rows = cur.fetchall()
            total = self.con.execute(f"SELECT count(*) FROM {name}").fetchone()
        except duckdb.Error as e:
            raise EngineError(f"cannot read {name}: {engine_error(e, self.redact)}") from None
        return columns, rows, int(total[0]) if total else 0

    def drop(self, outputs: Iterable[OutputRef], nodes: Iterable[NodeId]) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            for n in nodes:
                self.con.execute(f"DROP VIEW IF EXISTS main.{quote_ident(n)}")
            for out in outputs:
                self.con.execute(f"DROP TABLE IF EXISTS {store_table(out)}")
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def name_of(self, out: OutputRef) -> str:
        return store_table(out)

    def used_bytes(self) -> int:
        """Bytes of the warehouse in use (after a checkpoint)."""
        self.con.execute("CHECKPOINT")
        row = self.con.execute("SELECT used_blocks * block_size FROM pragma_database_size()"
                               ).fetchone()
        return int(row[0]) if row else 0

    def restore(self, current: Mapping[NodeId, OutputRef]) -> None:
        """Point node views at stored versions, in one transaction (versions that are gone
        are skipped: the planner reports those nodes' outputs missing)."""
        stored = self.catalog().stored
        session = self.session()
        try:
            session.begin()
            for name, out in current.items():
                if out in stored:
                    session.make_current(name, out)
            session.commit()
        finally:
            session.close()  # rolls back what did not commit

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _unavailable(path: Path, e: Exception) -> WarehouseUnavailable:
    text = f"cannot open the warehouse {path}: {e}"
    if "not a valid DuckDB database" in str(e):
        return WarehouseDamaged(text, "a DuckDB database")
    if "Conflicting lock" in str(e) or "lock" in str(e).lower():
        return WarehouseBusy(text)
    return WarehouseUnavailable(text)
