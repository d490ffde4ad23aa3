"""SQL analysis: through DuckDB's own parser (`json_serialize_sql`) for DuckDB SQL, through
sqlglot for Spark SQL (`odibi.sql_spark`), one contract for both.

For each SQL text: is it exactly one SELECT, which tables does it read (base tables that
are not CTEs, unqualified or in schema `main`), and a digest of its parse tree with every
position removed, so whitespace, comments and keyword case do not change it.

`duckdb` (or `sqlglot`) is imported lazily, only when a text is not in the cache: a no-op
build parses nothing. Results are keyed by the digest of the text and the dialect
(`SqlCache`): a text analysed as Spark SQL never reuses its analysis as DuckDB SQL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any

from odibi.hashing import digest_parts, digest_text
from odibi.ids import Digest
from odibi.sql_spark import normalized_spark, parse_spark
from odibi.sqlinfo import (
    NO_STATEMENT,
    NOT_A_SELECT,
    SqlCache,
    SqlInfo,
    SqlProblem,
    SqlResult,
    TableRef,
    reads_files,
    several_statements,
)

__all__ = ["SqlCache", "SqlInfo", "SqlProblem", "SqlResult", "TableRef", "analyze",
           "normalized", "parse_tree", "second_statement"]
DIALECTS = ("duckdb", "spark")

_LOCATION_RE = re.compile(r'"query_location(?:_length)?":\d+,?')

# DuckDB's reserved keywords: never identifiers when unquoted, so their case never matters
_RESERVED = frozenset("""
all analyse analyze and any array as asc asymmetric both case cast check collate column
constraint create default deferrable desc describe distinct do else end except false fetch
for foreign from group having in initially intersect into lambda lateral leading limit not
null offset on only or order pivot pivot_longer pivot_wider placing primary qualify
references returning select show some summarize symmetric table then to trailing true union
unique unpivot using variadic when where window with""".split())
_TOKEN_RE = re.compile(r"""
    (?P<skip>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<op>[<>=!|&+\-*/%^~:@]+)
  | (?P<char>.)
""", re.S | re.X)


def normalized(text: str) -> str:
    """The text's tokens without comments and layout, reserved keywords upper-cased. Two
    texts that normalize alike are the same statement (the converse need not hold: a
    difference here only costs a parse), so a parse can be reused across reformatting
    without DuckDB."""
    out = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "skip":
            continue
        token = m.group()
        if kind == "word" and token.lower() in _RESERVED:
            token = token.upper()
        out.append(token)
    return " ".join(out)


# table functions that read files (or other databases) behind odibi's back
FILE_READERS = frozenset("""
read_csv read_csv_auto read_parquet parquet_scan read_json read_json_auto read_ndjson
read_ndjson_auto read_json_objects read_text read_blob glob sniff_csv read_xlsx
iceberg_scan delta_scan sqlite_scan postgres_scan mysql_scan read_avro""".split())


_lock = threading.Lock()
_con: Any = None


def _connection() -> Any:
    global _con
    if _con is None:
        import duckdb  # deferred: 240 ms, only paid when something must be parsed

        _con = duckdb.connect(":memory:")
    return _con


def _serialize(texts: list[str]) -> list[str]:
    with _lock:
        con = _connection()
        if any("\x00" in t for t in texts):  # DuckDB 1.x cannot read a NUL in a literal:
            # as a parameter, such a text fails on its own (a located problem)
            rows = con.execute("SELECT json_serialize_sql(unnest($1))", [texts]).fetchall()
        else:
            # the texts as literals, not as a parameter: DuckDB 1.x imports pandas and
            # numpy on its first query with a parameter (~0.3 s a command)
            literals = ", ".join("'" + t.replace("'", "''") + "'" for t in texts)
            rows = con.execute(f"SELECT json_serialize_sql(unnest([{literals}]))").fetchall()
    return [r[0] for r in rows]


def analyze(texts: Iterable[str], cache: SqlCache | None = None,
            dialect: str = "duckdb") -> dict[str, SqlResult]:
    """Analyse each distinct text as SQL of `dialect` ("duckdb" or "spark"); returns text
    -> result. Only successes are cached: by the text's key, and by the key of its
    normalized form, so that a reformatted or re-commented statement is recognised
    without parsing it (both keys name the dialect: `text_key`)."""
    spark = _is_spark(dialect)
    by_key: dict[Digest, str] = {}
    for t in texts:
        by_key.setdefault(text_key(t, dialect), t)
    results: dict[str, SqlResult] = {}
    cached = cache.get_sql(list(by_key)) if cache is not None else {}
    todo: list[tuple[Digest, str]] = []
    for key, text in by_key.items():
        hit = cached.get(key)
        if hit is not None:
            results[text] = hit
        else:
            todo.append((key, text))
    if not todo:
        return results
    fresh: dict[Digest, SqlInfo] = {}
    norm = {key: _norm_key(text, spark) for key, text in todo}
    if cache is not None:
        same = cache.get_sql(list(norm.values()))
        still: list[tuple[Digest, str]] = []
        for key, text in todo:
            hit = same.get(norm[key])
            if hit is None:
                still.append((key, text))
            else:
                results[text] = fresh[key] = _relocated(hit, text)
        todo = still
    for (key, text), result in zip(todo, _parse([t for _, t in todo], spark)):
        results[text] = result
        if isinstance(result, SqlInfo):
            fresh[key] = result
            fresh[norm[key]] = result
    if cache is not None and fresh:
        cache.put_sql(fresh)
    return results


def _is_spark(dialect: str) -> bool:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    return dialect == "spark"


def text_key(text: str, dialect: str = "duckdb") -> Digest:
    """The cache key of a text's analysis: its digest for DuckDB (as before dialects, so
    existing caches stay valid), a digest of the dialect and the text for Spark."""
    return digest_parts("spark", text) if _is_spark(dialect) else digest_text(text)


def _norm_key(text: str, spark: bool = False) -> Digest:
    if spark:
        return digest_parts("spark-normalized", normalized_spark(text))
    return digest_text("normalized:" + normalized(text))


def _parse(texts: list[str], spark: bool) -> list[SqlResult]:
    if not texts:
        return []
    if spark:
        return [parse_spark(t) for t in texts]
    return [_interpret(raw, t) for t, raw in zip(texts, _serialize(texts))]


def _relocated(info: SqlInfo, text: str) -> SqlInfo:
    """A parse reused for another layout of the same statement: find each table again."""
    tables = []
    for t in info.tables:
        m = re.search(r'(?<![\w"])' + re.escape(t.name) + r'(?![\w"])', text, re.I)
        tables.append(TableRef(t.name, m.start() if m else -1))
    return SqlInfo(info.tree, tuple(tables))


def _interpret(raw: str, text: str) -> SqlResult:
    doc = json.loads(raw)
    if doc.get("error"):
        message = doc.get("error_message", "invalid SQL")
        if doc.get("error_type") == "not implemented":
            return SqlProblem(NOT_A_SELECT)
        pos = doc.get("position")
        offset = int(pos) if isinstance(pos, str) and pos.isdigit() else None
        return SqlProblem(message.split("\n")[0], _chars(text, offset))
    statements = doc.get("statements", [])
    if len(statements) == 0:
        return SqlProblem(NO_STATEMENT)
    if len(statements) > 1:
        return SqlProblem(several_statements(len(statements)), second_statement(text))
    tables: dict[str, TableRef] = {}
    readers: list[TableRef] = []
    _walk(statements[0], frozenset(), tables, readers)
    if readers:
        first = min(readers, key=lambda r: r.offset)
        return SqlProblem(reads_files(f"{first.name}()"), _chars(text, first.offset))
    canonical = _LOCATION_RE.sub("", raw)
    tables = {k: TableRef(t.name, c if (c := _chars(text, t.offset)) is not None else -1)
              for k, t in tables.items()}
    ordered = sorted(tables.values(), key=lambda t: (t.offset < 0, t.offset, t.name.lower()))
    return SqlInfo(digest_text(canonical), tuple(ordered))


def _chars(text: str, offset: int | None) -> int | None:
    """DuckDB's offsets count UTF-8 bytes; ours count characters (None/-1: unknown)."""
    if offset is None or offset < 0:
        return None
    if text.isascii():
        return offset
    return len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))


def second_statement(text: str) -> int | None:
    """Offset where a second statement starts: after the first ';' that is not inside a
    string, quoted identifier or comment, and after the blanks that follow it."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in ("'", '"'):
            end = text.find(c, i + 1)
            while end != -1 and end + 1 < n and text[end + 1] == c:  # doubled quote
                end = text.find(c, end + 2)
            i = n if end == -1 else end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif c == ";":
            i += 1
            while i < n and text[i].isspace():
                i += 1
            return i
        else:
            i += 1
    return None


def _walk(node: Any, ctes: frozenset[str], out: dict[str, TableRef],
          readers: list[TableRef]) -> None:
    """Collect base-table references, honouring CTE scopes: a CTE shadows a table in the
    main query and in the bodies of the CTEs after it (in its own body too when recursive),
    but not in its own non-recursive body or in those before it."""
    stack: list[tuple[Any, frozenset[str]]] = [(node, ctes)]
    while stack:
        item, scope = stack.pop()
        if isinstance(item, list):
            stack.extend((x, scope) for x in item)
            continue
        if not isinstance(item, dict):
            continue
        cte_map = item.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            inner = scope
            for entry in cte_map["map"]:
                name = str(entry["key"]).lower()
                body = entry.get("value", {})
                recursive = _self_recursive(body.get("query_node"))
                stack.append((body, inner | {name} if recursive else inner))
                inner = inner | {name}
            scope = inner
        if item.get("type") == "TABLE_FUNCTION":
            fn = item.get("function") or {}
            name = str(fn.get("function_name", "")).lower()
            if name in FILE_READERS:
                loc = item.get("query_location", -1)
                readers.append(TableRef(name, loc if isinstance(loc, int) and loc < 2**62 else -1))
        if item.get("type") == "BASE_TABLE":
            name = item.get("table_name", "")
            schema = item.get("schema_name", "")
            catalog = item.get("catalog_name", "")
            local = not catalog and schema in ("", "main")
            if local and (schema or name.lower() not in scope) and name.lower() not in out:
                loc = item.get("query_location", -1)
                offset = loc if isinstance(loc, int) and loc < 2**62 else -1
                out[name.lower()] = TableRef(name, offset)
        for key, value in item.items():
            if key != "cte_map" and isinstance(value, (dict, list)):
                stack.append((value, scope))


def _self_recursive(query: Any) -> bool:
    """DuckDB marks a recursive CTE body as a RECURSIVE_CTE_NODE."""
    return isinstance(query, dict) and query.get("type") == "RECURSIVE_CTE_NODE"


def parse_tree(text: str) -> Any | None:
    """DuckDB's parse tree (`json_serialize_sql`, decoded) of a text that is exactly one
    statement, None when it is not. Not cached: for the occasional command that needs more
    than `analyze` keeps (`odibi test --generate`)."""
    doc = json.loads(_serialize([text])[0])
    statements = doc.get("statements", [])
    return statements[0] if not doc.get("error") and len(statements) == 1 else None
