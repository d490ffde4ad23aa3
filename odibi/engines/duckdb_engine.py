"""The DuckDB engine: an embedded warehouse file under `.odibi/`.

Layout: schema `odibi_store` holds one table per built version of a node, named
`<node>__<first 16 hex of its fingerprint>`; `main.<node>` is a view of the current one,
so SQL nodes read their inputs by plain name. Reads use DuckDB's own csv/parquet/json
readers on the exact files that were fingerprinted; exports are written by COPY to a
temporary file that is renamed into place. Data stays in DuckDB from read to write unless
a Python node needs it as a DataFrame.

Sandbox: every DuckDB odibi runs user SQL in (`connect`) has external access off, except
for the files it is given (`Reachable`: a build's read nodes' files and its exports'
temporary files), no extension loading or installing, and its configuration locked, so
no statement can read or write another file, attach a database or load an extension.
DuckDB's own files (the database, its WAL, its spill directory) are not subject to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.config.model import ReadSpec, WriteSpec
from odibi.engines.base import EngineError, EngineInterrupted, TableInfo, WarehouseUnavailable
from odibi.hashing import digest_parts
from odibi.ids import Digest, Format, NodeId

if TYPE_CHECKING:
    from odibi.expr.measures import Query

STORE = "odibi_store"
# The block size of a warehouse is chosen when odibi creates it (an existing one keeps
# its own). DuckDB stores every table in blocks of its own: a tiny table costs a whole
# block, written at each checkpoint, so a project of many small nodes wants small blocks;
# large tables are scanned and written faster in DuckDB's default 256 KiB ones (bench/,
# README "Warehouse blocks").
SMALL_BLOCKS = 16384  # bytes: sources that add up to less than SMALL_SOURCES
LARGE_BLOCKS = 262144  # bytes: DuckDB's default
SMALL_SOURCES = 4 * 1024 * 1024  # bytes of source files


def block_size_for(source_bytes: int) -> int:
    """The block size of a new warehouse for a project whose sources add up to
    `source_bytes` (its outputs are of that order)."""
    return SMALL_BLOCKS if source_bytes < SMALL_SOURCES else LARGE_BLOCKS


READER_WAIT = 30.0  # seconds a build waits for a reader to let go of the warehouse
_VIEW_TARGET = re.compile(r'FROM\s+"?odibi_store"?\.(?:"((?:[^"]|"")*)"|([A-Za-z0-9_]+))', re.I)
_READERS = {Format.CSV: "read_csv", Format.PARQUET: "read_parquet", Format.JSON: "read_json"}


@dataclass(frozen=True, slots=True)
class Reachable:
    """The files a sandboxed DuckDB may touch: `reads` (read as they are) and `writes`
    (export destinations: DuckDB writes only their temporary file, `export_temp`)."""

    reads: tuple[Path, ...] = ()
    writes: tuple[Path, ...] = ()
    directories: tuple[Path, ...] = ()  # and everything below them

    def paths(self) -> list[str]:
        return sorted({str(p) for p in self.reads} | {str(export_temp(w)) for w in self.writes})

    def dirs(self) -> list[str]:
        # a partitioned export writes a directory of files at its temporary path
        found = {str(export_temp(w)) + os.sep for w in self.writes}
        return sorted(found | {str(d).rstrip(os.sep) + os.sep for d in self.directories})


NOTHING = Reachable()


def export_temp(dest: Path) -> Path:
    """Where an export is written before it is renamed into place: known before the
    build starts (the sandbox allows exactly it), one per destination and process (one
    node writes a file, and a node's exports run one after another)."""
    return dest.with_name(f".{dest.name}.odibi-tmp-{os.getpid()}")


def connect(database: str, reachable: Reachable = NOTHING, *, read_only: bool = False,
            config: Mapping[str, Any] | None = None, session: Sequence[str] = ()) -> Any:
    """A DuckDB connection in odibi's sandbox (module docstring). DuckDB accepts
    `allowed_paths` only once it runs, so they are set after connecting, then access is
    turned off and the configuration locked (a statement cannot turn it back on).
    `session`: SET statements for this connection, run before the lock."""
    import duckdb

    settings = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                **(config or {})}
    con = duckdb.connect(database, read_only=read_only, config=settings)
    try:
        for statement in session:
            con.execute(statement)
        con.execute(f"SET allowed_paths = {sql_literal(reachable.paths())}")
        con.execute(f"SET allowed_directories = {sql_literal(reachable.dirs())}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


SANDBOX_HINT = ("odibi runs SQL in DuckDB's sandbox: it reaches only the files of read nodes "
                "and exports; add a read node for that file")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    """A YAML option value as a DuckDB literal (strings, numbers, booleans, lists, maps)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{sql_literal(str(k))}: {sql_literal(v)}"
                               for k, v in value.items()) + "}"
    raise EngineError(f"cannot pass {value!r} to DuckDB")


def _options(options: Mapping[str, Any]) -> str:
    return "".join(f", {k} = {sql_literal(v)}" for k, v in options.items())


def _copy_options(fmt: Format, options: Mapping[str, Any]) -> str:
    parts = [f"FORMAT {fmt.value}"]
    given = {k.lower() for k in options}
    if fmt is Format.CSV and "header" not in given:
        parts.append("HEADER true")
    if "use_tmp_file" not in given:  # odibi writes a temporary file and renames it itself
        parts.append("USE_TMP_FILE false")
    parts += [f"{k} {sql_literal(v)}" for k, v in options.items()]
    return ", ".join(parts)


def _error(e: Exception, redact: Mapping[str, str] | None = None) -> EngineError:
    text = str(e).strip()
    text = text.split("\n\nLINE")[0] if text else type(e).__name__
    if type(e).__name__ == "PermissionException":  # the sandbox refused a file
        text = f"{text} ({SANDBOX_HINT})"
    # DuckDB quotes the values it could not use: an `${env:X}` value would otherwise reach
    # the terminal, the logs and the state's record of the failure
    for value, placeholder in (redact or {}).items():
        text = text.replace(value, placeholder)
    return EngineError(text)


def _drop_stale_temps(dest: Path) -> None:
    """Remove what a killed odibi left of an earlier write of `dest` (its temp files, named
    after the process that wrote them, when that process is gone)."""
    prefix = f".{dest.name}.odibi-tmp-"
    try:
        names = [n for n in os.listdir(dest.parent) if n.startswith(prefix)]
    except OSError:
        return
    for n in names:
        pid = n[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(dest.parent / n)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: leave it
    return True


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
            raise _error(e, self.redact) from None

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self._mapped(lambda: self.cur.execute(sql, params) if params is not None
                            else self.cur.execute(sql))

    def _one(self, sql: str) -> Any:
        """Execute and fetch one row (fetching runs the query too: errors are mapped)."""
        return self._mapped(lambda: self.cur.execute(sql).fetchone())

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

    def read(self, table: str, files: Sequence[Path], spec: ReadSpec) -> int:
        if not files:
            raise EngineError(f"no file matches {spec.rendered_path}")
        paths = sql_literal([str(f) for f in files])
        reader = _READERS[spec.format]
        return self._create(table, f"SELECT * FROM {reader}({paths}"
                                   f"{_options(spec.rendered_options)})")

    def run_sql(self, table: str, sql: str) -> int:
        return self._create(table, sql)

    def _create(self, table: str, select: str) -> int:
        """CREATE TABLE AS; DuckDB answers with the number of rows it wrote."""
        row = self._one(f"CREATE OR REPLACE TABLE {table} AS {select}")
        return int(row[0]) if row else -1

    def frames(self, inputs: Mapping[str, NodeId]) -> dict[str, Any]:
        """Each input node's output as a pandas DataFrame, by parameter name."""
        return self._mapped(lambda: {
            param: self.cur.execute(f"SELECT * FROM main.{quote_ident(node)}").df()
            for param, node in inputs.items()})

    def create_from_frame(self, table: str, frame: Any) -> int:
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
            return self._create(table, f"SELECT * FROM {quote_ident(view)}")
        finally:  # (after an interrupt the transaction is aborted: the view goes with it)
            import duckdb

            with contextlib.suppress(duckdb.Error):
                self.cur.unregister(view)

    def describe(self, table: str, rows: int) -> TableInfo:
        """Schema and an order-insensitive content digest: the sum of DuckDB's 64-bit row
        hashes (a HUGEINT, so it cannot overflow), with the row count and the schema."""
        # (the empty sum and the text of the HUGEINT made here, not in SQL: ~0.1 ms less a
        # node, the same digest as `coalesce(sum(hash(t)), 0)::VARCHAR`)
        (total,) = self._one(f"SELECT sum(hash(t)) FROM {table} AS t")
        total = str(total or 0)
        schema = tuple(f"{c} {t}" for c, t in self.columns(table).items())
        return TableInfo(rows, schema, digest_parts("table", json.dumps(schema), str(rows), total))

    def columns(self, table: str) -> dict[str, str]:
        """column -> type of a table or view, in column order, as DuckDB writes the type
        (`DECIMAL(18,3)`, `STRUCT(x INTEGER)`)."""
        columns = self._run(f"SELECT * FROM {table} LIMIT 0").description
        if any(isinstance(c[1], str) for c in columns):  # DuckDB < 1.5 says NUMBER, dict...
            return {str(r[0]): str(r[1]) for r in self._run(f"DESCRIBE {table}").fetchall()}
        return {c[0]: str(c[1]) for c in columns}

    def measure(self, query: Query, relations: Mapping[str, str]) -> dict[str, Any]:
        """The measures of `query` in one statement (`duckdb_rules.statement`): {key: value}.
        DuckDB gives lists, structs (dicts) and rows (tuples) back as Python values, kept
        as they are (a top-level row becomes a list)."""
        from odibi.engines.duckdb_rules import statement  # not on a no-op build's path

        row = self._one(statement(query, lambda ds: self._relation_sql(relations[ds])))
        return {m.key: (list(v) if isinstance(v, tuple) else v)
                for m, v in zip(query.measures, row or ())}

    def _relation_sql(self, relation: str) -> str:
        """The SQL that names what a rule reads."""
        return relation

    def publish(self, name: NodeId, table: str) -> None:
        self._run(f"CREATE OR REPLACE VIEW main.{quote_ident(name)} AS SELECT * FROM {table}")

    def export(self, name: NodeId, write: WriteSpec, dest: Path) -> None:
        tmp = export_temp(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _drop_stale_temps(dest)
            self._run(f"COPY (SELECT * FROM main.{quote_ident(name)}) TO "
                      f"{sql_literal(str(tmp))} ({_copy_options(write.format, write.rendered_options)})")
            os.replace(tmp, dest)
        except OSError as e:  # the file system refused: the node's failure, not odibi's
            raise EngineError(f"cannot write {dest}: {e.strerror or e}") from None
        finally:
            if tmp.exists():
                tmp.unlink()

    def drop(self, table: str) -> None:
        self._run(f"DROP TABLE IF EXISTS {table}")

    def interrupt(self) -> None:
        try:
            self.cur.interrupt()
        except Exception:  # noqa: BLE001 - nothing running
            pass

    def close(self) -> None:
        self.rollback()
        self.cur.close()


class DuckDBEngine:
    """The warehouse `.odibi/warehouse.duckdb`, opened once per build.

    `lazy=True` defers connecting (and importing DuckDB) to the first use: a build that
    only restores earlier versions never opens the warehouse (the state records which
    views to repoint; `on_open` applies them when the warehouse is next opened)."""

    def __init__(self, path: Path, python_path: Sequence[Path] = (), *,
                 threads: int | None = None, read_only: bool = False, lazy: bool = False,
                 on_open: Callable[[DuckDBEngine], None] | None = None,
                 redact: Mapping[str, str] | None = None,
                 block_size: int = LARGE_BLOCKS, reachable: Reachable = NOTHING) -> None:
        """`redact`: {secret text: what to show instead}, applied to every error message
        (the values of the project's `${env:X}`, see `builder.env_redactions`).
        `block_size`: of the warehouse, if this creates it (`block_size_for`).
        `reachable`: the files its SQL may touch (the sandbox; by default none)."""
        self.redact = redact
        self.reachable = reachable
        self.block_size = block_size
        self.path = path
        self.python_path = python_path
        self.threads = threads
        self.read_only = read_only
        self.on_open = on_open
        self._con: Any = None
        self._opening = threading.Lock()
        if not lazy:
            self.open()

    @property
    def is_open(self) -> bool:
        return self._con is not None

    def open(self) -> None:
        """Connect (once); then run `on_open` (the build syncs deferred view repoints)."""
        with self._opening:
            if self._con is not None:
                return
            import duckdb  # deferred: only commands that touch data pay for it

            # (applies only to a warehouse created now)
            config: dict[str, Any] = {"default_block_size": str(self.block_size)}
            if self.threads:
                config["threads"] = self.threads
            deadline = time.monotonic() + (0 if self.read_only else READER_WAIT)
            while True:
                try:
                    con = connect(str(self.path), self.reachable, read_only=self.read_only,
                                  config=config)
                    break
                except duckdb.Error as e:
                    # a read-only command (`show`, `test --generate`) holds the file for a
                    # moment: a build, which holds the build lock, waits for it to let go
                    if "Conflicting lock" in str(e) and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    raise WarehouseUnavailable(
                        f"cannot open the warehouse {self.path}: {e}") from None
            if not self.read_only:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {STORE}")
            self._con = con
        if self.on_open is not None:
            self.on_open(self)

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

    def view(self, name: NodeId) -> str:
        return f"main.{quote_ident(name)}"

    def store_table(self, name: NodeId, fingerprint: Digest) -> str:
        return f"{STORE}.{quote_ident(f'{name}__{fingerprint[:16]}')}"

    def outputs(self) -> tuple[frozenset[str], Mapping[NodeId, str]]:
        tables = frozenset(
            f"{STORE}.{quote_ident(t)}" for (t,) in self.con.execute(
                # (no parameter: DuckDB 1.x imports pandas on its first parameterized query)
                f"SELECT table_name FROM duckdb_tables() WHERE schema_name = {sql_literal(STORE)}"
                ).fetchall())
        views: dict[NodeId, str] = {}
        for name, sql in self.con.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'main' "
                "AND NOT internal").fetchall():
            # DuckDB keeps the view's SQL with or without the quotes it was written with
            m = _VIEW_TARGET.search(sql)
            if m:
                target = m.group(1) if m.group(1) is not None else m.group(2)
                views[NodeId(name)] = f"{STORE}.{quote_ident(target.replace(chr(34) * 2, chr(34)))}"
        return tables, views

    def preview(self, table: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]], int]:
        """(columns, the first `limit` rows, the row count) of a store table."""
        import duckdb

        try:
            cur = self.con.execute(f"SELECT * FROM {table} LIMIT {limit}")
            columns = [d[0] for d in cur.description]
            rows = cur.fetchall()
            total = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        except duckdb.Error as e:
            raise EngineError(f"cannot read {table}: {_error(e, self.redact)}") from None
        return columns, rows, int(total[0]) if total else 0

    def drop_views(self, names: Iterable[NodeId]) -> None:
        for n in names:
            self.con.execute(f"DROP VIEW IF EXISTS main.{quote_ident(n)}")

    def drop_tables(self, tables: Iterable[str], views: Iterable[NodeId]) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            for v in views:
                self.con.execute(f"DROP VIEW IF EXISTS main.{quote_ident(v)}")
            for t in tables:
                self.con.execute(f"DROP TABLE IF EXISTS {t}")
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def used_bytes(self) -> int:
        """Bytes of the warehouse in use (after a checkpoint)."""
        self.con.execute("CHECKPOINT")
        row = self.con.execute("SELECT used_blocks * block_size FROM pragma_database_size()"
                               ).fetchone()
        return int(row[0]) if row else 0

    def repoint(self, views: Mapping[NodeId, str]) -> None:
        """Point node views at store tables, in one transaction (tables that are gone are
        skipped: the planner reports those nodes' outputs missing)."""
        tables, _ = self.outputs()
        session = self.session()
        try:
            session.begin()
            for name, table in views.items():
                if table in tables:
                    session.publish(name, table)
            session.commit()
        finally:
            session.close()  # rolls back what did not commit

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


