"""The Spark scratch engine (`odibi.engines.tools.Scratch`): what `odibi test` runs the
cases of a project whose SQL is Spark SQL (`sql_dialect: spark`) in.

One local Spark session per run (`local[2]`, the driver on 127.0.0.1, no UI, two shuffle
partitions), started when the first case runs (~5-8 s) and stopped by `close`; a session
already running in the process (a test suite's own) is used instead, and left running.
Stored versions are written as in a build (`spark_engine`), into a warehouse in a
temporary directory that `close` removes. Every case runs on a `SparkFixtureSession` (a
build's `SparkSessionWorker` that also loads fixtures), which drops what it made when
the case is done.

A fixture is a temporary view named after the node it stands for (SQL reads it by that
name, a Python node gets it as its input), computed once when loaded (so a bad cast is
the fixture's error, not the node's): rows through VALUES, typed as DuckDB's scratch
types them (YAML integers as BIGINT, floats as DOUBLE, dates and timestamps typed, lists
and mappings as ARRAY and STRUCT, a column of nulls as STRING), csv text or a file
through Spark's readers (csv: a header, inferred types, as a read node's); `schema`
casts the columns it names to its (Spark) types. `rows` gives plain Python values in the
shapes DuckDB's scratch gives (a STRUCT as a dict, an ARRAY as a list), so a case's
comparison and its failure message are the same on both.

Spark cannot be sandboxed as DuckDB is: a node's SQL here reaches what Spark can read.
"""

from __future__ import annotations

import datetime
import decimal
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from odibi.config.model import EngineKind, ReadSpec, Target
from odibi.engines.base import Access, EngineError, EngineOptions, Location, Relation
from odibi.engines.spark_engine import (CAPABILITIES, SparkEngine, SparkSessionWorker,
                                        quote)
from odibi.engines.tools import Fixture, FixtureError, FixtureProblem, MissingColumn, Rows
from odibi.ids import NodeId, OutputRef

_MISSING_COLUMN = re.compile(  # (Spark's error class; a Python node's pandas KeyError)
    r"UNRESOLVED_COLUMN\S*\] A column(?:, variable,)?(?: or function parameter)? with name "
    r"(?P<name>(?:`(?:[^`]|``)+`\.?)+) cannot be resolved"
    r"|KeyError: '(?:Column not found: )?(?P<key>[^']+)'")
_PART = re.compile(r"`((?:[^`]|``)+)`")
_BIGINT = range(-(2 ** 63), 2 ** 63)
TYPE_EXAMPLES = "BIGINT, DOUBLE, STRING, BOOLEAN, DATE, TIMESTAMP, DECIMAL(10,2), ARRAY<STRING>"


def scratch_conf(tmp: Path) -> dict[str, str]:
    """The local session's settings: small, quiet, reachable only from this machine, and
    writing nothing outside `tmp`."""
    return {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
            "spark.sql.warehouse.dir": str(tmp / "spark-sql-warehouse"),
            "spark.local.dir": str(tmp / "spark-local")}


class SparkScratch:
    """A local Spark session for test cases; `close` stops it (if it started it) and
    forgets its scratch warehouse."""

    capabilities = CAPABILITIES

    def __init__(self, access: Access) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="odibi-test-")
        self.tmp = Path(self._tmp.name)
        self.access = access  # (Spark reads what it can: nothing is enforced)
        target = Target("scratch", EngineKind.SPARK, master="local[2]",
                        conf=scratch_conf(self.tmp))
        self.engine = ScratchEngine(target, str(self.tmp / "warehouse"),
                                    EngineOptions(lazy=True), app="odibi-test")

    def session(self) -> SparkFixtureSession:
        self.engine.open()  # (the warehouse's directories: no JVM)
        return SparkFixtureSession(self.engine, self.tmp)

    def close(self) -> None:
        try:
            self.engine.close()
        finally:
            self._tmp.cleanup()


class ScratchEngine(SparkEngine):
    """A build's Spark engine over a temporary warehouse, whose nodes may also be
    fixtures: temporary views, read by name instead of from a stored version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fixtures: dict[NodeId, Any] = {}  # node -> its (cached) DataFrame
        self.borrowed = False  # the session was running already: not ours to stop

    @property
    def spark(self) -> Any:
        with self._lock:
            if self._spark is None:
                from odibi.engines.spark_setup import quiet_query_logs

                quiet_query_logs()
                running = _running_session()
                if running is not None:
                    self._spark, self.borrowed = running, True
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # (else Spark warns)
            return super().spark

    def message(self, e: BaseException) -> str:
        """Spark's sentence (its first line), without the plan or the SQL it prints after
        it: a case's failure reads the same every run (a plan's expression ids do not)."""
        text = getattr(e, "getMessage", None)
        lines = [ln for ln in str(text() if callable(text) else e).splitlines() if ln.strip()]
        msg = lines[0].strip() if lines else type(e).__name__
        for secret, shown in (self.options.redact or {}).items():
            msg = msg.replace(secret, shown)
        return msg

    def frame(self, spark: Any, rel: Relation) -> Any:
        if isinstance(rel, str) and rel in self.fixtures:
            return self.fixtures[rel]
        return super().frame(spark, rel)

    def relation_sql(self, spark: Any, rel: Relation) -> str:
        if isinstance(rel, str) and rel in self.fixtures:
            return quote(rel)
        return super().relation_sql(spark, rel)

    def views(self, spark: Any, names: Any) -> None:
        super().views(spark, [n for n in names if n not in self.fixtures])

    def close(self) -> None:
        if self.borrowed:
            self._spark, self.borrowed = None, False
            self._views.clear()
            return
        super().close()


class SparkFixtureSession(SparkSessionWorker):
    """A build's session on the scratch engine that remembers what it made (fixtures,
    stored versions, current pointers) and `clear`s exactly that."""

    engine: ScratchEngine

    def __init__(self, engine: ScratchEngine, tmp: Path) -> None:
        super().__init__(engine)
        self.tmp = tmp
        self._fixtures: list[NodeId] = []
        self._stored: list[OutputRef] = []
        self._current: list[NodeId] = []

    # -- what a build's session makes, remembered -------------------------------------
    def read(self, out: OutputRef, sources: Sequence[Location], spec: ReadSpec) -> int:
        self._stored.append(out)
        return super().read(out, sources, spec)

    def run_sql(self, out: OutputRef, sql: str, inputs: Sequence[NodeId] = ()) -> int:
        self._stored.append(out)
        return super().run_sql(out, sql, inputs)

    def create_from_frame(self, out: OutputRef, frame: Any) -> int:
        self._stored.append(out)
        return super().create_from_frame(out, frame)

    def make_current(self, node: NodeId, out: OutputRef) -> None:
        self._current.append(node)
        super().make_current(node, out)

    def clear(self) -> None:
        engine = self.engine
        fixtures, self._fixtures = self._fixtures, []
        for node in fixtures:
            df = engine.fixtures.pop(node, None)
            if df is not None and engine._spark is not None:  # noqa: SLF001
                df.unpersist()
                engine._spark.catalog.dropTempView(node)  # noqa: SLF001
        stored, current, self._stored, self._current = self._stored, self._current, [], []
        for node in current:
            engine._views.pop(node, None)  # noqa: SLF001
        engine.drop(stored, current)

    # -- fixtures ---------------------------------------------------------------------
    def load(self, node: NodeId, fixture: Fixture) -> None:
        spark = self._spark_or_error()
        if fixture.schema:
            self._check_types(spark, fixture.schema)
        if fixture.rows is not None:
            df = self._loaded(lambda: spark.sql(_values(fixture.rows or (), fixture.schema)))
        else:
            df = self._file_frame(spark, fixture)
        df = _no_void(df)
        self._fixtures.append(node)
        self.engine.fixtures[node] = df
        df.createOrReplaceTempView(node)
        self._loaded(lambda: df.cache().count())  # computed now: its errors are the fixture's

    def _spark_or_error(self) -> Any:
        try:
            return self.spark
        except EngineError as e:  # (Spark did not start: the run cannot go on)
            raise FixtureError(FixtureProblem.UNLOADABLE, str(e)) from None

    def _loaded(self, call: Any, problem: FixtureProblem = FixtureProblem.UNLOADABLE) -> Any:
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - Spark's errors, as the fixture's
            raise FixtureError(problem, self.engine.message(e).splitlines()[0]) from None

    def _file_frame(self, spark: Any, fixture: Fixture) -> Any:
        path = fixture.file
        if fixture.csv is not None:
            path = self.tmp / f"fixture_{time.perf_counter_ns()}.csv"
            path.write_text(fixture.csv)
        assert path is not None
        if path.suffix.lower() in (".parquet", ".pq"):
            reader = spark.read.format("parquet")
        else:
            reader = spark.read.format("csv").option("header", "true").option(
                "inferSchema", "true")
        df = self._loaded(lambda: reader.load(str(path)), FixtureProblem.UNREADABLE)
        if not fixture.schema:
            return df
        for c in fixture.schema:
            if c not in df.columns:
                raise FixtureError(FixtureProblem.NO_COLUMN, f"no column {c}", c, df.columns)
        return df.selectExpr(*(f"CAST({quote(c)} AS {fixture.schema[c]}) AS {quote(c)}"
                               if c in fixture.schema else quote(c) for c in df.columns))

    def _check_types(self, spark: Any, schema: Mapping[str, str]) -> None:
        for column, t in schema.items():
            try:
                spark.sql(f"SELECT CAST(NULL AS {t})")  # parsed and analysed: no job
            except Exception as e:  # noqa: BLE001 - Spark's parse error
                raise FixtureError(FixtureProblem.TYPE, self.engine.message(e).splitlines()[0],
                                   column, engine="Spark", examples=TYPE_EXAMPLES) from None

    # -- reading back -----------------------------------------------------------------
    def rows(self, relation: Relation, *, order: bool = False) -> Rows:
        from pyspark.sql.types import MapType

        def run() -> Rows:
            df = self.engine.frame(self.spark, relation)
            fields = df.schema.fields
            if order:  # (DuckDB's ORDER BY ALL: nulls last; a MAP cannot be ordered)
                df = df.orderBy(*(df[f.name].asc_nulls_last() for f in fields
                                  if not isinstance(f.dataType, MapType)))
            return Rows([f.name for f in fields], [f.dataType.simpleString() for f in fields],
                        [tuple(_plain(v) for v in row) for row in df.collect()])
        return self._mapped(run)

    def missing_column(self, error: str) -> MissingColumn | None:
        found = _MISSING_COLUMN.search(error)
        if found is None:
            return None
        if found.group("key") is not None:
            return MissingColumn(found.group("key"))
        parts = [p.replace("``", "`") for p in _PART.findall(found.group("name"))]
        return MissingColumn(parts[-1], parts[-2] if len(parts) > 1 else None)


def _running_session() -> Any:
    """The Spark session already running in this process, if any (without starting one)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is None:  # noqa: SLF001
        return None
    return SparkSession.getActiveSession()


def _no_void(df: Any) -> Any:
    """A column of nulls only (VOID, which Parquet cannot store) as STRING, as Spark's csv
    reader would read it."""
    from pyspark.sql.types import NullType

    if not any(isinstance(f.dataType, NullType) for f in df.schema.fields):
        return df
    return df.selectExpr(*(f"CAST({quote(f.name)} AS STRING) AS {quote(f.name)}"
                           if isinstance(f.dataType, NullType) else quote(f.name)
                           for f in df.schema.fields))


def _plain(value: Any) -> Any:
    """A value Spark collected, in the shape DuckDB's scratch gives it."""
    from pyspark.sql import Row

    if isinstance(value, Row):
        return {k: _plain(v) for k, v in value.asDict(recursive=False).items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def _values(rows: tuple[Mapping[str, Any], ...], schema: Mapping[str, str]) -> str:
    if not rows:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {quote(c)}" for c, t in schema.items())
        return f"SELECT {cols} WHERE false"
    columns = list(rows[0])
    body = ", ".join("(" + ", ".join(_literal(r[c]) for c in columns) + ")" for r in rows)
    select = f"SELECT * FROM VALUES {body} AS v({', '.join(quote(c) for c in columns)})"
    if not schema:
        return select
    cols = ", ".join(f"CAST({quote(c)} AS {schema[c]}) AS {quote(c)}" if c in schema
                     else quote(c) for c in columns)
    return f"SELECT {cols} FROM ({select})"


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _literal(value: Any) -> str:
    """A YAML value as a Spark SQL literal, typed as DuckDB's scratch types it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L" if value in _BIGINT else f"CAST('{value}' AS DECIMAL(38,0))"
    if isinstance(value, float):
        return f"CAST('{value!r}' AS DOUBLE)" if not math.isfinite(value) or "e" in repr(
            value) else f"{value!r}D"
    if isinstance(value, decimal.Decimal):
        return f"{value}BD"
    if isinstance(value, datetime.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, list):
        return "array(" + ", ".join(_literal(v) for v in value) + ")"
    if isinstance(value, dict):
        return "named_struct(" + ", ".join(f"{_string(str(k))}, {_literal(v)}"
                                           for k, v in value.items()) + ")"
    return _string(str(value))
