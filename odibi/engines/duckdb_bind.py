"""Binding SQL to columns in DuckDB, without data: what `odibi validate` and a build's
pre-flight check ask of the engine (`odibi/bind.py` decides what to bind and when).

`DuckDBBinder` is an in-memory DuckDB that reaches no file at all (the sandbox of
`duckdb_sandbox.connect` with nothing allowed). A node's SQL is bound against stand-ins of
its inputs: each input is a CTE of the input's columns, typed and empty, around the
node's statement,

    WITH "raw_orders" AS (SELECT NULL::BIGINT AS "order_id", ... LIMIT 0)
    SELECT * FROM (
    <the node's SQL>
    )

so that the statement sees its inputs and nothing else (`query_table('other_node')` finds
no table), and DuckDB's relation API binds it without running it (`columns` and `types`
of an unexecuted relation: ~0.25 ms a node). A statement that names `main.<input>`
cannot see a CTE: it is bound against empty tables created in a transaction that is
rolled back. The subquery gives duplicate column names the suffixes a table gets
(`a`, `a_1`), so a bound schema is the schema the node's output table will have.

A failure comes back as a `BindFailure` located in the node's text (DuckDB's
`errors_as_json` gives the byte position; the stand-ins before the text are subtracted).
`read_schemas` asks DuckDB's readers for the schema of read nodes' files (their header or
metadata), in a sandbox that reaches exactly those files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from odibi.config.model import ReadSpec
from odibi.engines.base import Access, EngineError, Schema
from odibi.engines.duckdb_sandbox import (
    NOTHING,
    READERS,
    connect,
    quote_ident,
    reader_options,
    sql_literal,
)
from odibi.engines.tools import BindFailure, BindProblem
from odibi.sql import second_statement


_MAIN = re.compile(r'(?:\bmain|"main")\s*\.', re.I)
_NESTED_CALL = re.compile(r"\bquery(?:_table)?\s*\(", re.I)
_FILE = re.compile(r'(?:file|directory) "([^"]*)"')
_NO_COLUMN = re.compile(r'(?:column named|[Cc]olumn) "((?:[^"]|"")+)"')
_CATALOG_NAME = re.compile(r'with name "?([^"\s]+?)"? (?:does not|is not)')
_SUGGESTION = re.compile(r'Did you mean "((?:[^"]|"")+)"\?')


class DuckDBBinder:
    """The `Binder` of DuckDB: one in-memory DuckDB, reaching nothing; not thread-safe."""

    def __init__(self) -> None:
        self.con = connect(":memory:", NOTHING, session=("SET errors_as_json = true",))

    def bind(self, text: str, inputs: Mapping[str, Schema]) -> Schema | BindFailure:
        """The schema of `text`'s result, given its inputs' schemas; never runs it."""
        import duckdb

        body = _statement(text)
        if _MAIN.search(body):
            return self._bind_on_tables(body, inputs)
        prefix = _stand_ins(inputs)
        try:
            rel = self.con.sql(f"{prefix}{body}\n)")
            return tuple(zip(rel.columns, map(str, rel.types)))
        except duckdb.Error as e:
            return self._failure(prefix, body, e, inputs)

    def _bind_on_tables(self, body: str, inputs: Mapping[str, Schema]) -> Schema | BindFailure:
        import duckdb

        self.con.execute("BEGIN TRANSACTION")
        try:
            for name, schema in inputs.items():
                columns = ", ".join(f"{quote_ident(c)} {t}" for c, t in schema)
                try:
                    self.con.execute(f"CREATE TABLE main.{quote_ident(name)} ({columns})")
                except duckdb.Error as e:
                    return BindFailure(BindProblem.INPUTS, _message(e))
            prefix = "SELECT * FROM (\n"
            try:
                rel = self.con.sql(f"{prefix}{body}\n)")
                return tuple(zip(rel.columns, map(str, rel.types)))
            except duckdb.Error as e:
                return self._failure(prefix, body, e, inputs)
        finally:
            self.con.execute("ROLLBACK")

    def _failure(self, prefix: str, body: str, first: Exception,
                 inputs: Mapping[str, Schema]) -> BindFailure:
        """Bind again through DESCRIBE, whose errors carry their position as JSON (the
        relation API's do not), once the stand-ins are known to bind on their own."""
        import duckdb

        if inputs:
            every = ", ".join(quote_ident(name) for name in inputs)
            try:
                self.con.sql(f"{prefix}SELECT 1 FROM {every}\n)")
            except duckdb.Error as e:  # the stand-ins themselves: a type odibi cannot use
                return BindFailure(BindProblem.INPUTS, _message(e))
        head = f"DESCRIBE {prefix}"
        try:
            self.con.execute(f"{head}{body}\n)")
        except duckdb.Error as e:
            return _interpret(e, body, len(head.encode("utf-8")))
        return BindFailure(BindProblem.OTHER, _message(first))

    def close(self) -> None:
        self.con.close()


def read_schemas(items: Sequence[tuple[Sequence[Path], ReadSpec]]) -> list[Schema | str]:
    """Each read's schema, as DuckDB's reader gives it with the node's options (from the
    files' header or metadata), or DuckDB's message when it cannot read them. One
    sandboxed connection that reaches exactly these files."""
    import duckdb

    if not items:
        return []
    reach = Access(reads=tuple(f for files, _ in items for f in files))
    con = connect(":memory:", reach)
    out: list[Schema | str] = []
    try:
        for files, spec in items:
            try:  # (an option DuckDB cannot take is the read's failure, as in a build)
                paths = sql_literal([str(f) for f in files])
                select = (f"SELECT * FROM {READERS[spec.format]}({paths}"
                          f"{reader_options(spec.rendered_options)})")
                rel = con.sql(f"SELECT * FROM ({select})")
                out.append(tuple(zip(rel.columns, map(str, rel.types))))
            except duckdb.Error as e:
                out.append(_message(e))
            except EngineError as e:
                out.append(str(e))
    finally:
        con.close()
    return out


def _statement(text: str) -> str:
    """The statement without a trailing ';' and what follows it (comments: the text was
    found to be one statement), ready to be wrapped."""
    end = second_statement(text) if ";" in text else None
    if end is None:
        return text
    return text[:text.rfind(";", 0, end)]


def _stand_ins(inputs: Mapping[str, Schema]) -> str:
    if not inputs:
        return "SELECT * FROM (\n"
    ctes = []
    for name, schema in inputs.items():
        columns = ", ".join(f"NULL::{t} AS {quote_ident(c)}" for c, t in schema)
        ctes.append(f"{quote_ident(name)} AS (SELECT {columns} LIMIT 0)")
    return f"WITH {', '.join(ctes)} SELECT * FROM (\n"


def _message(e: Exception) -> str:
    text = str(e)
    doc = _json(text)
    if doc is not None:
        text = str(doc.get("exception_message", text))
    else:
        text = text.split(": ", 1)[-1] if text.split(": ", 1)[0].endswith("Error") else text
    return text.split("\n")[0].strip()


def _json(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        doc = json.loads(text[start:])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _interpret(e: Exception, body: str, skip: int) -> BindFailure:
    """A DuckDB error as a BindFailure, its position moved from the wrapped statement
    (whose first `skip` bytes are odibi's) into the node's text."""
    doc = _json(str(e)) or {}
    full = str(doc.get("exception_message", ""))
    message = _message(e)
    kind = str(doc.get("exception_type", ""))
    raw = doc.get("position")
    offset = None
    if isinstance(raw, str) and raw.isdigit() and int(raw) >= skip:
        # (a smaller one is inside a string handed to query(), counted from its start)
        offset = _chars(body, int(raw) - skip)
    name = doc.get("name") if isinstance(doc.get("name"), str) else None
    candidates = tuple(c for c in str(doc.get("candidates", "")).split(",") if c)
    m = _SUGGESTION.search(full)
    suggestion = m.group(1).replace('""', '"') if m else None
    if kind == "Permission":
        found = _FILE.search(message)
        path = found.group(1) if found else None
        problem = BindProblem.FILE if path and "access file" in message else BindProblem.OUTSIDE
        return BindFailure(problem, message, *_place(body, path, None), path)
    if kind == "Parser":  # the outer statement parsed: this is one handed to query()
        nested = _NESTED_CALL.search(body)
        return BindFailure(BindProblem.NESTED, message, nested.start() if nested else None,
                           len(nested.group(0)) - 1 if nested else 1)
    if doc.get("error_subtype") == "COLUMN_NOT_FOUND" or (
            kind == "Binder" and "column" in message and "not" in message):
        if name is None:
            found = _NO_COLUMN.search(message)
            name = found.group(1).replace('""', '"') if found else None
        if name is not None:
            return BindFailure(BindProblem.COLUMN, message, *_place(body, name, offset), name,
                               candidates, suggestion)
    if kind == "Catalog":
        if name is None:
            found = _CATALOG_NAME.search(message)
            name = found.group(1) if found else None
        problem = (BindProblem.TABLE if message.startswith("Table with name")
                   else BindProblem.EXTENSION if "extension" in message
                   else BindProblem.MISSING)
        return BindFailure(problem, message, *_place(body, name, offset), name,
                           candidates, suggestion)
    return BindFailure(BindProblem.OTHER, message, offset, _width(doc), name, candidates,
                       suggestion)


def _width(doc: Mapping[str, Any]) -> int:
    m = re.fullmatch(r"\[(\d+),(\d+)\]", str(doc.get("location", "")))
    return max(1, int(m.group(2))) if m else 1


def _chars(text: str, offset: int) -> int | None:
    """DuckDB's offsets count UTF-8 bytes; ours count characters."""
    data = text.encode("utf-8")
    if offset > len(data):
        return None
    return len(data[:offset].decode("utf-8", errors="ignore"))


def _place(body: str, name: str | None, offset: int | None) -> tuple[int | None, int]:
    """Where `name` is written: at `offset` if it is there; else its first occurrence
    after `offset` (DuckDB points at `t.col` by its qualifier, and 2.x gives positions
    inside a string handed to query() relative to that string), else its last before."""
    if not name:
        return offset, 1
    lowered, needle = body.lower(), name.lower()
    spots = []
    for quoted in {needle, needle.replace("'", "''"), needle.replace('"', '""')}:
        start = lowered.find(quoted)
        while start >= 0:
            end = start + len(quoted)
            if not (_word(lowered, start - 1) and _word(lowered, start)) and \
                    not (_word(lowered, end - 1) and _word(lowered, end)):
                spots.append((start, len(quoted)))
            start = lowered.find(quoted, start + 1)
    if not spots:
        return offset, 1
    if offset is None:
        return min(spots)
    after = [s for s in spots if s[0] >= offset]
    return min(after) if after else max(spots)


def _word(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")
