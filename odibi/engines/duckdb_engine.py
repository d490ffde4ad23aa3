"""The DuckDB engine: an embedded warehouse file under `.odibi/`.

Layout: schema `odibi_store` holds one table per built version of a node, named
`<node>__<first 16 hex of its fingerprint>`; `main.<node>` is a view of the current one,
so SQL nodes read their inputs by plain name. Reads use DuckDB's own csv/parquet/json
readers on the exact files that were fingerprinted; exports are written by COPY to a
temporary file that is renamed into place. Data stays in DuckDB from read to write unless
a Python node needs it as a DataFrame.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from odibi.config.model import ReadSpec, WriteSpec
from odibi.engines.base import EngineError, TableInfo
from odibi.hashing import digest_bytes, digest_parts
from odibi.ids import Digest, Format, NodeId

STORE = "odibi_store"
_VIEW_TARGET = re.compile(r'FROM\s+"?odibi_store"?\.(?:"((?:[^"]|"")*)"|([A-Za-z0-9_]+))', re.I)
_READERS = {Format.CSV: "read_csv", Format.PARQUET: "read_parquet", Format.JSON: "read_json"}


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
    if fmt is Format.CSV and "header" not in {k.lower() for k in options}:
        parts.append("HEADER true")
    parts += [f"{k} {sql_literal(v)}" for k, v in options.items()]
    return ", ".join(parts)


def _error(e: Exception) -> EngineError:
    text = str(e).strip()
    return EngineError(text.split("\n\nLINE")[0] if text else type(e).__name__)


class DuckDBSession:
    """One worker's connection (a cursor of the engine's database). Not thread-safe; one
    thread uses it at a time, another may call `interrupt`."""

    def __init__(self, cursor: Any, python_path: Sequence[Path]) -> None:
        self.cur = cursor
        self.python_path = python_path
        self.in_txn = False

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        import duckdb

        try:
            return self.cur.execute(sql, params) if params is not None else self.cur.execute(sql)
        except duckdb.InterruptException:
            raise
        except duckdb.Error as e:
            raise _error(e) from None

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
        row = self._run(f"CREATE OR REPLACE TABLE {table} AS {select}").fetchone()
        return int(row[0]) if row else -1

    def run_python(self, table: str, fn: Callable[..., Any], inputs: Mapping[str, NodeId]) -> int:
        kwargs = {param: self._frame(node) for param, node in inputs.items()}
        result = fn(**kwargs)
        import pandas as pd

        if not isinstance(result, pd.DataFrame):
            raise EngineError(f"must return a pandas DataFrame, returned {type(result).__name__}")
        view = f"__odibi_result_{threading.get_ident()}"
        self.cur.register(view, result)
        try:
            return self._create(table, f"SELECT * FROM {quote_ident(view)}")
        finally:
            self.cur.unregister(view)

    def _frame(self, node: NodeId) -> Any:
        return self._run(f"SELECT * FROM main.{quote_ident(node)}").df()

    def describe(self, table: str, rows: int) -> TableInfo:
        """Schema and an order-insensitive content digest: the sum of DuckDB's 64-bit row
        hashes (a HUGEINT, so it cannot overflow), with the row count and the schema."""
        cur = self._run(f"SELECT coalesce(sum(hash(t)), 0)::VARCHAR FROM {table} AS t")
        (total,) = cur.fetchone()
        columns = self._run(f"SELECT * FROM {table} LIMIT 0").description
        schema = tuple(f"{c[0]} {c[1]}" for c in columns)
        return TableInfo(rows, schema, digest_parts("table", json.dumps(schema), str(rows), total))

    def publish(self, name: NodeId, table: str) -> None:
        self._run(f"CREATE OR REPLACE VIEW main.{quote_ident(name)} AS SELECT * FROM {table}")

    def export(self, name: NodeId, write: WriteSpec, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.odibi-tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            self._run(f"COPY (SELECT * FROM main.{quote_ident(name)}) TO "
                      f"{sql_literal(str(tmp))} ({_copy_options(write.format, write.rendered_options)})")
            os.replace(tmp, dest)
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
    """The warehouse `.odibi/warehouse.duckdb`, opened once per build."""

    def __init__(self, path: Path, python_path: Sequence[Path], *, threads: int | None = None,
                 read_only: bool = False) -> None:
        import duckdb  # deferred: only commands that touch data pay for it

        self.path = path
        self.python_path = python_path
        config = {"threads": threads} if threads else {}
        try:
            self.con = duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as e:
            raise EngineError(f"cannot open the warehouse {path}: {e}") from None
        if not read_only:
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {STORE}")
        _add_python_path(python_path)

    def session(self) -> DuckDBSession:
        return DuckDBSession(self.con.cursor(), self.python_path)

    def store_table(self, name: NodeId, fingerprint: Digest) -> str:
        return f"{STORE}.{quote_ident(f'{name}__{fingerprint[:16]}')}"

    def outputs(self) -> tuple[frozenset[str], Mapping[NodeId, str]]:
        tables = frozenset(
            f"{STORE}.{quote_ident(t)}" for (t,) in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ?", [STORE]).fetchall())
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

    def preview(self, name: NodeId, limit: int) -> tuple[list[str], list[tuple[Any, ...]], int]:
        """(columns, the first `limit` rows, the row count) of a node's output."""
        import duckdb

        try:
            cur = self.con.execute(f"SELECT * FROM main.{quote_ident(name)} LIMIT {limit}")
            columns = [d[0] for d in cur.description]
            rows = cur.fetchall()
            total = self.con.execute(f"SELECT count(*) FROM main.{quote_ident(name)}").fetchone()
        except duckdb.Error as e:
            raise EngineError(f"cannot read {name}: {_error(e)}") from None
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

    def close(self) -> None:
        self.con.close()


def _add_python_path(paths: Sequence[Path]) -> None:
    """Put the project's python_path first on sys.path (a later project in the same
    process, as in tests, takes precedence)."""
    for p in reversed(paths):
        if str(p) in sys.path:
            sys.path.remove(str(p))
        sys.path.insert(0, str(p))


def _inside(mod: Any, python_path: Sequence[Path]) -> bool:
    places = [getattr(mod, "__file__", None), *list(getattr(mod, "__path__", []) or [])]
    roots = [p.resolve() for p in python_path]
    return any(p is not None and any(Path(p).resolve().is_relative_to(r) for r in roots)
               for p in places)


def _purge(module: str) -> None:
    top = module.split(".")[0]
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[name]


_import_lock = threading.Lock()


def load_function(module: str, function: str, file: Path,
                  python_path: Sequence[Path]) -> Callable[..., Any]:
    """Import a transform's module from this project (re-importing it if its file changed
    since, or if a module of the same name came from elsewhere). Workers import one at a
    time: sys.modules and sys.path are process-wide."""
    with _import_lock:
        return _load_function(module, function, file, python_path)


def _load_function(module: str, function: str, file: Path,
                   python_path: Sequence[Path]) -> Callable[..., Any]:
    mtime = digest_bytes(file.read_bytes())  # content, not mtime: same-second edits count
    mod = sys.modules.get(module)
    loaded_from = getattr(mod, "__file__", None) if mod is not None else None
    if mod is not None and (loaded_from is None or Path(loaded_from).resolve() != file.resolve()):
        _purge(module)
        mod = None
    if mod is not None and getattr(mod, "__odibi_mtime__", None) != mtime:
        _purge(module)
        mod = None
    if mod is None:
        top = sys.modules.get(module.split(".")[0])
        if top is not None and not _inside(top, python_path):
            _purge(module)  # a package of the same name from another project (tests, notebooks)
        _add_python_path(python_path)
        importlib.invalidate_caches()
        mod = importlib.import_module(module)
    mod.__odibi_mtime__ = mtime  # type: ignore[attr-defined]
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise EngineError(f"{module} has no function {function}")
    return fn  # type: ignore[no-any-return]
