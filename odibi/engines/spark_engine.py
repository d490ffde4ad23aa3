"""The Spark engine: outputs as immutable Parquet directories under the target's warehouse.

Layout and everything done without Spark: `odibi.engines.spark_files`. A stored version is
written once, into `tmp/`, then renamed into `store/` whole; its row count and an
order-insensitive digest (the sum of every row's 64-bit xxhash, as a decimal, which cannot
overflow) are observed while it is written, in the same Spark job. Nodes read their inputs
by name: each input is a temporary view of its current version, (re)registered when the
version it names changes. A node's pointer moves last (no transactions: see
`odibi.engines.base`). Exports are written by Spark once, and a copy of each is kept with
the version, so restoring a version with exports copies files back and runs no Spark job.

The Spark session starts on first use (`SparkEngine.spark`): a build that only restores,
and every planning command, start no JVM. All worker threads share it; each session runs
its jobs in a job group of its own (and a FAIR pool of its own), which `interrupt` cancels.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi.config.model import Format, ReadSpec, Target, WriteSpec
from odibi.engines.base import (Capabilities, Catalog, EngineError, EngineInterrupted,
                                EngineOptions, Location, Relation, TableInfo,
                                WarehouseDamaged, WarehouseUnavailable)
from odibi.engines.spark_files import SCHEMA_FILE, Files, Layout, LocalFiles, local_stamp
from odibi.hashing import digest_parts, digest_text
from odibi.ids import NodeId, OutputRef

if TYPE_CHECKING:
    from odibi.expr.measures import Query

CAPABILITIES = Capabilities(transactions=False, views=True, interrupt=True, dialect="spark",
                            frame="pyspark.sql.DataFrame")
KIND = "an odibi Spark warehouse"
_SESSIONS = itertools.count(1)
# DuckDB's reader options a project may use, as Spark's reader takes them
_READ_OPTIONS = {"header": "header", "delim": "sep", "sep": "sep", "delimiter": "sep",
                 "quote": "quote", "escape": "escape", "nullstr": "nullValue",
                 "dateformat": "dateFormat", "timestampformat": "timestampFormat",
                 "comment": "comment", "encoding": "encoding"}
_WRITE_OPTIONS = {"header": "header", "delim": "sep", "sep": "sep", "delimiter": "sep",
                  "quote": "quote", "escape": "escape", "nullstr": "nullValue",
                  "dateformat": "dateFormat", "timestampformat": "timestampFormat",
                  "compression": "compression"}


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class HadoopFiles:
    """A warehouse at a URI, through the cluster's Hadoop filesystem (needs the session)."""

    def __init__(self, uri: str, spark: Any) -> None:
        self.base = uri.rstrip("/")
        jvm = spark._jvm  # noqa: SLF001 - the Hadoop API is reached through py4j
        self._Path = jvm.org.apache.hadoop.fs.Path
        conf = spark._jsc.hadoopConfiguration()  # noqa: SLF001
        self.fs = self._Path(self.base).getFileSystem(conf)

    def _p(self, rel: str) -> Any:
        return self._Path(f"{self.base}/{rel}" if rel else self.base)

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._p(rel)))

    def uri(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def mkdirs(self, rel: str) -> None:
        self.fs.mkdirs(self._p(rel))

    def listdir(self, rel: str) -> list[str]:
        if not self.fs.exists(self._p(rel)):
            return []
        return [s.getPath().getName() for s in self.fs.listStatus(self._p(rel))]

    def read_text(self, rel: str) -> str | None:
        p = self._p(rel)
        if not self.fs.exists(p) or self.fs.getFileStatus(p).isDirectory():
            return None
        stream = self.fs.open(p)
        try:
            data = bytearray()
            while (b := stream.read()) != -1:
                data.append(b & 0xFF)
            return data.decode("utf-8")
        finally:
            stream.close()

    def write_text(self, rel: str, text: str) -> None:
        import uuid

        tmp = self._p(f"tmp/{rel.replace('/', '_')}.{uuid.uuid4().hex}")
        stream = self.fs.create(tmp, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        self.fs.delete(self._p(rel), False)
        if not self.fs.rename(tmp, self._p(rel)):
            raise EngineError(f"cannot write {self.uri(rel)}")

    def rename(self, src: str, dst: str) -> None:
        if self.fs.exists(self._p(dst)):
            self.fs.delete(self._p(dst), True)
        if not self.fs.rename(self._p(src), self._p(dst)):
            raise EngineError(f"cannot rename {self.uri(src)} to {self.uri(dst)}")

    def delete(self, rel: str) -> None:
        self.fs.delete(self._p(rel), True)

    def size(self, rel: str) -> int:
        p = self._p(rel)
        return int(self.fs.getContentSummary(p).getLength()) if self.fs.exists(p) else 0


class SparkSessionWorker:
    """One worker's session: its own job group on the shared Spark session."""

    def __init__(self, engine: SparkEngine) -> None:
        self.engine = engine
        self.group = f"odibi-{next(_SESSIONS)}"
        self.observed: dict[OutputRef, tuple[int, str, tuple[str, ...]]] = {}
        self._interrupted = False

    # -- plumbing --------------------------------------------------------------------
    @property
    def spark(self) -> Any:
        spark = self.engine.spark
        if not self.engine.connect:
            sc = spark.sparkContext
            sc.setJobGroup(self.group, "odibi", interruptOnCancel=True)
            sc.setLocalProperty("spark.scheduler.pool", self.group)
        else:  # Spark Connect: tags instead of job groups
            spark.addTag(self.group)
        return spark

    def _mapped(self, call: Callable[[], Any]) -> Any:
        self._interrupted = False
        try:
            return call()
        except EngineError:
            raise
        except Exception as e:  # noqa: BLE001 - pyspark's and py4j's errors, as ours
            if self._interrupted or "cancelled" in str(e).lower() and "group" in str(e):
                raise EngineInterrupted("interrupted") from None
            raise EngineError(self.engine.message(e)) from None

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    # -- producing -------------------------------------------------------------------
    def read(self, out: OutputRef, sources: Sequence[Location], spec: ReadSpec) -> int:
        if not sources:
            raise EngineError(f"no file matches {spec.rendered_path}")

        def run() -> int:
            reader = self.spark.read.format(spec.format.value)
            for key, value in read_options(spec).items():
                reader = reader.option(key, value)
            return self._store(out, reader.load([s.uri for s in sources]))
        return self._mapped(run)

    def run_sql(self, out: OutputRef, sql: str, inputs: Sequence[NodeId] = ()) -> int:
        def run() -> int:
            spark = self.spark
            self.engine.views(spark, inputs)
            return self._store(out, spark.sql(sql))
        return self._mapped(run)

    def frames(self, inputs: Mapping[str, Relation], pandas: Iterable[str] = ()
               ) -> dict[str, Any]:
        wanted = frozenset(pandas)

        def run() -> dict[str, Any]:
            spark = self.spark
            frames = {p: self.engine.frame(spark, rel) for p, rel in inputs.items()}
            return {p: (f.toPandas() if p in wanted else f) for p, f in frames.items()}
        return self._mapped(run)

    def create_from_frame(self, out: OutputRef, frame: Any) -> int:
        import pandas as pd

        def run() -> int:
            spark = self.spark
            if isinstance(frame, pd.DataFrame):
                return self._store(out, spark.createDataFrame(frame))
            if type(frame).__name__ == "DataFrame" and hasattr(frame, "schema"):
                return self._store(out, frame)
            raise EngineError("must return a Spark or pandas DataFrame, returned "
                              f"{type(frame).__name__}")
        return self._mapped(run)

    def _store(self, out: OutputRef, df: Any) -> int:
        """Write `df` as the version `out`, observing its rows and digest as it is written."""
        from pyspark.sql import Observation

        engine = self.engine
        obs = Observation(f"odibi_{self.group}_{out.version}".replace("-", "_"))
        observed = df.observe(obs, *digest_columns(df))
        tmp = engine.layout.temp(f"{out.node}__{out.version}")
        observed.write.mode("error").parquet(engine.files.uri(tmp))
        metrics = obs.get
        rows = int(metrics.get("rows") or 0)
        # its schema kept with it: reading it back infers nothing (no Spark job)
        engine.files.write_text(f"{tmp}/{SCHEMA_FILE}", df.schema.json())
        engine.files.rename(tmp, engine.layout.version_path(out))
        engine.remember_schema(out, df.schema)
        self.observed[out] = (rows, _digest_text(metrics), _schema_of(df))
        return rows

    # -- looking ---------------------------------------------------------------------
    def describe(self, out: OutputRef, rows: int) -> TableInfo:
        seen = self.observed.pop(out, None)
        if seen is None:  # (stored by another session: measured again)
            def run() -> tuple[int, str, tuple[str, ...]]:
                df = self.engine.frame(self.spark, out)
                row = df.agg(*digest_columns(df)).collect()[0].asDict()
                return int(row["rows"] or 0), _digest_text(row), _schema_of(df)
            seen = self._mapped(run)
        rows, total, schema = seen
        return TableInfo(rows, schema, digest_parts("table", json.dumps(schema), str(rows),
                                                    total))

    def columns(self, relation: Relation) -> dict[str, str]:
        return self._mapped(lambda: {f.name: f.dataType.simpleString() for f in
                                     self.engine.frame(self.spark, relation).schema.fields})

    def is_text(self, column_type: str) -> bool:
        return column_type == "string" or column_type.startswith(("varchar", "char"))

    def measure(self, query: Query, relations: Mapping[str, Relation]) -> dict[str, Any]:
        from odibi.engines.spark_rules import statement, values

        def run() -> dict[str, Any]:
            spark = self.spark
            names = {ds: self.engine.relation_sql(spark, rel) for ds, rel in relations.items()}
            rows = spark.sql(statement(query, lambda ds: names[ds])).collect()
            return values(query, rows[0] if rows else None)
        return self._mapped(run)

    # -- writing ---------------------------------------------------------------------
    def export(self, out: OutputRef, write: WriteSpec, dest: Location) -> None:
        key = digest_text(json.dumps([write.format.value, dict(write.rendered_options),
                                      dest.uri.endswith("/")], sort_keys=True, default=str))
        copy = self.engine.layout.export_copy(out, key)
        try:
            if self.engine.local is not None and (self.engine.local / copy).exists():
                _put(self.engine.local / copy, Path(dest.uri))  # a restore: no Spark job
                return
            self._mapped(lambda: self._export(out, write, dest, copy))
        except OSError as e:
            raise EngineError(f"cannot write {dest.uri}: {e.strerror or e}") from None

    def _export(self, out: OutputRef, write: WriteSpec, dest: Location, copy: str) -> None:
        engine = self.engine
        df = engine.frame(self.spark, out)
        single = not dest.uri.endswith("/")
        writer = (df.coalesce(1) if single else df).write.mode("overwrite")
        writer = writer.format(write.format.value)
        for k, v in write_options(write).items():
            writer = writer.option(k, v)
        target = Path(dest.uri.rstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.odibi-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        writer.save(str(tmp))
        try:
            if single:
                parts = [p for p in tmp.iterdir() if p.name.startswith("part-")]
                if len(parts) != 1:
                    raise EngineError(f"Spark wrote {len(parts)} files for {dest.uri}")
                os.replace(parts[0], target)
            else:
                for extra in tmp.iterdir():
                    if extra.name.startswith((".", "_")):
                        extra.unlink()
                _swap_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = engine.local / copy if engine.local is not None else None
        if kept is not None and not kept.exists():  # a restore copies it back
            _put(target, kept)

    def make_current(self, node: NodeId, out: OutputRef) -> None:
        self.engine.point(node, out)

    def interrupt(self) -> None:
        self._interrupted = True
        engine = self.engine
        if engine._spark is None:  # noqa: SLF001 - nothing ever ran
            return
        try:
            if engine.connect:
                engine._spark.interruptTag(self.group)  # noqa: SLF001
            else:
                engine._spark.sparkContext.cancelJobGroup(self.group)  # noqa: SLF001
        except Exception:  # noqa: BLE001 - nothing running
            pass

    def close(self) -> None:
        pass


def digest_columns(df: Any) -> list[Any]:
    """The aggregates a version's row count and content digest come from: the sums of the
    high and the low 32 bits of each row's 64-bit xxhash (order-insensitive; two bigint
    sums, which cannot overflow below 2^31 rows, are much cheaper than one decimal sum)."""
    from pyspark.sql import functions as F

    columns = [df[c] for c in df.columns]
    hashed = F.xxhash64(*columns) if columns else F.lit(0).cast("bigint")
    return [F.count(F.lit(1)).alias("rows"),
            F.sum(F.shiftright(hashed, 32)).alias("high"),
            F.sum(hashed.bitwiseAND(F.lit(0xFFFFFFFF))).alias("low")]


def _digest_text(values: Mapping[str, Any]) -> str:
    return f"{values.get('high') or 0}:{values.get('low') or 0}"


def _schema_of(df: Any) -> tuple[str, ...]:
    return tuple(f"{f.name} {f.dataType.simpleString()}" for f in df.schema.fields)


def _put(src: Path, dest: Path) -> None:
    """Copy a file or a directory to `dest`, whole: made under a temporary name and
    renamed (a build killed while copying leaves no half copy in `dest`). Exports are
    copied, never hard-linked: the user's file may be edited in place, and a re-export
    must put back what the version wrote."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.odibi-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.unlink(missing_ok=True)
    if src.is_dir():
        shutil.copytree(src, tmp)
        _swap_dir(tmp, dest)
    else:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def _swap_dir(new: Path, dest: Path) -> None:
    """Put directory `new` where `dest` is (the old one removed after)."""
    old = dest.parent / f".{dest.name}.odibi-old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def read_options(spec: ReadSpec) -> dict[str, str]:
    """A read's options for Spark's reader (CSV: a header and inferred types by default,
    as DuckDB's reader does)."""
    options: dict[str, str] = {}
    if spec.format is Format.CSV:
        options = {"header": "true", "inferSchema": "true"}
    elif spec.format is Format.JSON:
        options = {"multiLine": "false"}
    for key, value in spec.rendered_options.items():
        name = _READ_OPTIONS.get(str(key).lower())
        if name is None:
            raise EngineError(f"read option '{key}' is not supported on Spark "
                              f"(supported: {', '.join(sorted(set(_READ_OPTIONS)))})")
        options[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return options


def write_options(write: WriteSpec) -> dict[str, str]:
    options: dict[str, str] = {"header": "true"} if write.format is Format.CSV else {}
    for key, value in write.rendered_options.items():
        name = _WRITE_OPTIONS.get(str(key).lower())
        if name is None:
            raise EngineError(f"write option '{key}' is not supported on Spark")
        options[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return options


class SparkEngine:
    """The warehouse of a Spark target. `where`: a local directory, or a URI."""

    capabilities = CAPABILITIES

    def __init__(self, target: Target, location: str, options: EngineOptions = EngineOptions(),
                 on_open: Callable[[SparkEngine], None] | None = None, app: str = "odibi"
                 ) -> None:
        from odibi.config.targets import is_uri

        self.target = target
        self.location = location
        self.local: Path | None = None if is_uri(location) else Path(location)
        self.where = self.local if self.local is not None else Path(location)
        self.options = options
        self.on_open = on_open
        self.app = app
        self.connect = target.remote is not None
        self._spark: Any = None
        self._files: Files | None = LocalFiles(self.local) if self.local is not None else None
        self._lock = threading.RLock()
        self._opened = False
        self._current: dict[NodeId, OutputRef] | None = None
        self._views: dict[str, str] = {}  # view name -> the version path it reads
        self._schemas: dict[OutputRef, Any] = {}  # stored version -> its Spark schema
        if not options.lazy:
            self.open()

    # -- the session (started on first use) ----------------------------------------------
    @property
    def spark(self) -> Any:
        with self._lock:
            if self._spark is None:
                from odibi.engines.spark_setup import start_session

                try:
                    self._spark = start_session(self.target, self.app, self.target.conf)
                except Exception as e:  # noqa: BLE001 - the JVM's failure, said once
                    raise WarehouseUnavailable(
                        f"cannot start Spark for target '{self.target.name}': "
                        f"{self.message(e)}") from None
            return self._spark

    @property
    def files(self) -> Files:
        if self._files is None:
            self._files = HadoopFiles(self.location, self.spark)
        return self._files

    @property
    def layout(self) -> Layout:
        return Layout(self.files)

    def message(self, e: BaseException) -> str:
        """The first line of an error of Spark's, without the JVM's stack, redacted."""
        text = getattr(e, "getMessage", None)
        msg = str(text() if callable(text) else e).strip()
        msg = msg.split("\n\tat ")[0].split("\nJVM stacktrace:")[0].strip()
        lines = [ln for ln in msg.splitlines() if ln.strip()]
        # (the first line says it; what follows is plan text, with ids that change per run)
        msg = lines[0].strip() if lines else type(e).__name__
        for secret, shown in (self.options.redact or {}).items():
            msg = msg.replace(secret, shown)
        return msg

    # -- the Engine protocol ----------------------------------------------------------
    @property
    def exists(self) -> bool:
        if self.local is not None:
            return local_stamp(self.local) is not None
        return True

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(self) -> None:
        with self._lock:
            if self._opened:
                return
            kind = self.layout.is_warehouse()
            if kind is False:
                raise WarehouseDamaged(f"{self.location} is not {KIND}", KIND)
            if not self.options.read_only:
                self.layout.create()
                self.layout.clear_temps()
            self._opened = True
        if self.on_open is not None:
            self.on_open(self)

    def stamp(self) -> str | None:
        if self.local is not None:
            return local_stamp(self.local)
        return f"remote {self.location}"  # odibi is its only writer: the state is trusted

    def catalog(self) -> Catalog:
        self.open()
        kind = self.layout.is_warehouse()
        if kind is False:
            raise WarehouseDamaged(f"{self.location} is not {KIND}", KIND)
        current = self._pointers()
        return Catalog(self.layout.stored(), dict(current))

    def _pointers(self) -> dict[NodeId, OutputRef]:
        with self._lock:
            if self._current is None:
                self._current = self.layout.current()
            return self._current

    def point(self, node: NodeId, out: OutputRef) -> None:
        with self._lock:
            self.layout.point(node, out)
            self._pointers()[node] = out

    def set_aside(self) -> str:
        import time

        if self.local is None:
            raise WarehouseUnavailable(f"{self.location} is not {KIND}; move it away yourself")
        aside = self.local.with_name(f"{self.local.name}.corrupt-{int(time.time())}")
        os.replace(self.local, aside)
        self._opened = False
        return aside.name

    def session(self) -> SparkSessionWorker:
        self.open()
        return SparkSessionWorker(self)

    def prepare_python(self) -> None:
        import pandas  # noqa: F401

    def restore(self, current: Mapping[NodeId, OutputRef]) -> None:
        """Move pointers back to stored versions: file renames, no Spark job."""
        stored = self.layout.stored()
        for node, out in current.items():
            if out in stored:
                self.point(node, out)

    def drop(self, outputs: Iterable[OutputRef], nodes: Iterable[NodeId]) -> None:
        with self._lock:
            for node in nodes:
                self.layout.unpoint(node)
                self._pointers().pop(node, None)
            for out in outputs:
                self.layout.drop(out)

    def used_bytes(self) -> int:
        return sum(self.layout.walk_sizes())

    def name_of(self, out: OutputRef) -> str:
        return self.files.uri(self.layout.version_path(out))

    def preview(self, relation: Relation, limit: int
                ) -> tuple[list[str], list[tuple[Any, ...]], int]:
        try:
            df = self.frame(self.spark, relation)
            rows = [tuple(r) for r in df.limit(limit).collect()]
            return list(df.columns), rows, int(df.count())
        except EngineError:
            raise
        except Exception as e:  # noqa: BLE001
            raise EngineError(f"cannot read {relation}: {self.message(e)}") from None

    def close(self) -> None:
        """Stop the Spark session this engine started."""
        with self._lock:
            if self._spark is not None:
                try:
                    self._spark.stop()
                except Exception:  # noqa: BLE001 - already gone
                    pass
                self._spark = None
            self._views.clear()

    # -- naming data -------------------------------------------------------------------
    def path_of(self, rel: Relation) -> str:
        if isinstance(rel, OutputRef):
            return self.files.uri(self.layout.version_path(rel))
        out = self._pointers().get(rel)
        if out is None:
            raise EngineError(f"'{rel}' has no output in the warehouse (build it first)")
        return self.files.uri(self.layout.version_path(out))

    def frame(self, spark: Any, rel: Relation) -> Any:
        """A version (or a node's current one) as a DataFrame, read with the schema kept
        with it: Spark infers nothing, so this runs no job."""
        out = rel if isinstance(rel, OutputRef) else self._pointers().get(rel)
        path = self.path_of(rel)
        schema = self.schema(out) if out is not None else None
        reader = spark.read if schema is None else spark.read.schema(schema)
        return reader.parquet(path)

    def remember_schema(self, out: OutputRef, schema: Any) -> None:
        with self._lock:
            self._schemas[out] = schema

    def schema(self, out: OutputRef) -> Any:
        """The schema kept with a stored version (None: an older one without: inferred)."""
        with self._lock:
            if out in self._schemas:
                return self._schemas[out]
        text = self.files.read_text(f"{self.layout.version_path(out)}/{SCHEMA_FILE}")
        if text is None:
            return None
        from pyspark.sql.types import StructType

        schema = StructType.fromJson(json.loads(text))
        self.remember_schema(out, schema)
        return schema

    def relation_sql(self, spark: Any, rel: Relation) -> str:
        """How Spark SQL names a relation: a temporary view (of a node's current version,
        or, for a stored one, `__odibi_<node>__<version>`)."""
        name = f"__odibi_{rel.node}__{rel.version}" if isinstance(rel, OutputRef) else rel
        self._view(spark, name, rel)
        return quote(name)

    def views(self, spark: Any, names: Iterable[NodeId]) -> None:
        """A temporary view per input, reading its current version (re-registered only
        when that changed)."""
        for name in names:
            self._view(spark, name, name)

    def _view(self, spark: Any, name: str, rel: Relation) -> None:
        path = self.path_of(rel)
        with self._lock:
            if self._views.get(name) == path:
                return
            self.frame(spark, rel).createOrReplaceTempView(name)
            self._views[name] = path
