"""The fake engine's data (`odibi.engines.memory`): tables of Python rows, and the files
it reads and writes with the standard library.

A `Table` is a schema (column, type) and rows (tuples, in the schema's order). Types are
named as DuckDB names them, from the Python values (BIGINT, DOUBLE, BOOLEAN, VARCHAR);
what a CSV file holds is text (VARCHAR), an empty field NULL (None), as DuckDB reads it
with `all_varchar`. Files: CSV (csv module) and JSON (an array of objects, or one object
per line) are read and written; Parquet needs a library and is an EngineError. A written
file appears whole or not at all: a temporary file beside it, renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from odibi.config.model import ReadSpec, WriteSpec
from odibi.engines.base import EngineError, Schema
from odibi.hashing import digest_parts
from odibi.ids import Format

_TYPES = ((bool, "BOOLEAN"), (int, "BIGINT"), (float, "DOUBLE"), (str, "VARCHAR"))


@dataclass(frozen=True, slots=True)
class Table:
    schema: Schema  # (column, type), in column order
    rows: tuple[tuple[Any, ...], ...]  # each in the schema's order

    @staticmethod
    def of(rows: Sequence[Mapping[Any, Any]], columns: Sequence[str] = ()) -> Table:
        """Rows given as mappings: the columns are `columns`, then any others in the
        order they first appear; a row without a column holds None there."""
        names = list(columns)
        seen = set(names)
        for row in rows:
            for key in row:
                if str(key) not in seen:
                    seen.add(str(key))
                    names.append(str(key))
        values = tuple(tuple(_get(row, c) for c in names) for row in rows)
        return Table(tuple((c, _type(v[i] for v in values)) for i, c in enumerate(names)),
                     values)

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.schema]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.names, row)) for row in self.rows]

    def content_sum(self) -> int:
        """The sum of the rows' digests (mod 2**128): the same for the same rows in any
        order, as DuckDB's `sum(hash(t))`."""
        return sum(int(digest_parts(*map(repr, row)), 16) for row in self.rows) % 2 ** 128

    def size(self) -> int:
        """Bytes it would take as JSON: what `used_bytes` adds up."""
        return len(json.dumps(self.rows, default=str))


def _get(row: Mapping[Any, Any], column: str) -> Any:
    if column in row:
        return row[column]
    return next((v for k, v in row.items() if str(k) == column), None)


def _type(values: Any) -> str:
    """The type of a column's values: of its first non-null one; text if they differ."""
    found = {next((name for t, name in _TYPES if isinstance(v, t)), type(v).__name__.upper())
             for v in values if v is not None}
    return found.pop() if len(found) == 1 else "VARCHAR"


# -- reading ---------------------------------------------------------------------------------
def read_files(paths: Sequence[Path], spec: ReadSpec) -> Table:
    """The files' rows, one table: they must have the first one's columns."""
    tables = [_read_one(p, spec) for p in paths]
    first = tables[0]
    for path, table in zip(paths, tables):
        if table.names != first.names:
            raise EngineError(f"{path} has columns {table.names}, {paths[0]} has {first.names}")
    return Table(first.schema, tuple(row for t in tables for row in t.rows))


def _read_one(path: Path, spec: ReadSpec) -> Table:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EngineError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise EngineError(f"cannot read {path}: not UTF-8 text ({e.reason})") from None
    match spec.format:
        case Format.CSV:
            return _parse_csv(text, _lower(spec.rendered_options))
        case Format.JSON:
            return _parse_json(text, path)
        case Format.PARQUET:
            raise EngineError(f"cannot read {path}: the memory engine reads csv and json only")
        case _:
            assert_never(spec.format)


def _lower(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in options.items()}


def _delimiter(options: Mapping[str, Any]) -> str:
    return str(options.get("delim", options.get("sep", options.get("delimiter", ","))))


def _parse_csv(text: str, options: Mapping[str, Any]) -> Table:
    lines = list(csv.reader(io.StringIO(text), delimiter=_delimiter(options)))
    if not lines:
        return Table((), ())
    if options.get("header", True):
        names, body = lines[0], lines[1:]
    else:  # DuckDB's names for the columns of a file without a header
        names, body = [f"column{i}" for i in range(len(lines[0]))], lines
    rows = tuple(tuple(v if v != "" else None for v in line) for line in body)
    return Table(tuple((n, "VARCHAR") for n in names), rows)


def _parse_json(text: str, path: Path) -> Table:
    try:
        data = json.loads(text)
        records = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:  # one object per line
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise EngineError(f"cannot read {path}: not JSON ({e.msg})") from None
    if not all(isinstance(r, dict) for r in records):
        raise EngineError(f"cannot read {path}: not a JSON object per row")
    return Table.of(records)


# -- writing ---------------------------------------------------------------------------------
def write_file(table: Table, write: WriteSpec, dest: Path) -> None:
    """Write `table` to `dest` whole (a temporary file renamed into place), or not at all."""
    text = _render(table, write)
    tmp = dest.with_name(f".{dest.name}.odibi-tmp-{os.getpid()}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, dest)
    except OSError as e:
        raise EngineError(f"cannot write {dest}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _render(table: Table, write: WriteSpec) -> str:
    match write.format:
        case Format.CSV:
            options = _lower(write.rendered_options)
            out = io.StringIO()
            writer = csv.writer(out, delimiter=_delimiter(options), lineterminator="\n")
            if options.get("header", True):
                writer.writerow(table.names)
            writer.writerows([_text(v) for v in row] for row in table.rows)
            return out.getvalue()
        case Format.JSON:  # as DuckDB's COPY writes it: one object per line
            return "".join(json.dumps(r, default=str) + "\n" for r in table.dicts())
        case Format.PARQUET:
            raise EngineError("the memory engine writes csv and json only")
        case _:
            assert_never(write.format)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
