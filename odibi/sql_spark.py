"""Spark SQL analysis without a JVM, through sqlglot's Spark dialect.

The same contract as DuckDB's analysis (`odibi.sql.analyze`, which calls `parse_spark`):
a text is exactly one query (SELECT, set operation or VALUES), and its result is the base
tables it reads (not CTE names, not qualified names: `db.t` is not a node) with the offset
of each first reference, plus a digest of its parse tree that ignores layout, comments and
keyword case. Identifier case follows Spark's resolution (`spark.sql.caseSensitive` is
false): the case of a table, table alias or CTE name never counts, the case of a column
name or alias does, because Spark keeps it in the names of the output's columns
(`SELECT Amount` makes a column `Amount`).

Reads of files behind odibi's back are refused: `parquet.\\`/path\\`` (any data-source
format as a schema) and file-reading table functions (`read_files(...)`, and DuckDB's).

`sqlglot` is imported here only, lazily, by `parse_spark`: a no-op build parses nothing.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from odibi.hashing import digest_text
from odibi.sqlinfo import (
    NO_STATEMENT,
    NOT_A_SELECT,
    SqlInfo,
    SqlProblem,
    SqlResult,
    TableRef,
    reads_files,
    several_statements,
)

# `parquet.\`/data/x\``: Spark reads the path with that data source
FILE_FORMATS = frozenset("""
parquet csv json orc text avro delta binaryfile xml iceberg hudi""".split())
# table functions that read files or streams (Spark, Databricks; and DuckDB's, which Spark
# does not have but a project moved from DuckDB may still call)
FILE_FUNCTIONS = frozenset("""
read_files cloud_files read_kafka read_kinesis read_pubsub read_pulsar read_statestore
read_state_metadata read_csv read_csv_auto read_parquet parquet_scan read_json
read_json_auto read_ndjson read_ndjson_auto read_json_objects read_text read_blob glob
sniff_csv read_xlsx iceberg_scan delta_scan sqlite_scan postgres_scan mysql_scan
read_avro""".split())

_TOKEN_RE = re.compile(r"""
    (?P<skip>(?:\s+|--[^\n]*|/\*.*?\*/)+)
  | (?P<raw>[rR](?:'[^']*'|"[^"]*"))
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<ident>`(?:[^`]|``)*`)
  | (?P<open>['"`]|/\*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<other>.)
""", re.S | re.X)


def normalized_spark(text: str) -> str:
    """The text with each run of blanks and comments made one blank, and none at either
    end. Nothing else changes (not even keyword case: a keyword may be a column name in
    Spark, whose case counts), so two texts that normalize alike are the same statement."""
    out = []
    for m in _TOKEN_RE.finditer(text):
        out.append(" " if m.lastgroup == "skip" else m.group())
    return "".join(out).strip(" ")


# DuckDB's quoting: '' and "" doubled inside, no backslash escapes
_DUCKDB_TOKEN_RE = re.compile(r"""
    (?P<skip>(?:\s+|--[^\n]*|/\*.*?\*/)+)
  | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<other>.)
""", re.S | re.X)


def blank_comments(text: str, dialect: str = "spark") -> str:
    """The text with every comment made blanks (line breaks kept), so offsets, lines and
    columns stay those of the text: sqlglot does not read `GROUP /* x */ BY` as Spark
    and DuckDB do (it takes GROUP BY for one keyword), and comments never count anyway."""
    out = []
    pattern = _TOKEN_RE if dialect == "spark" else _DUCKDB_TOKEN_RE
    for m in pattern.finditer(text):
        token = m.group()
        out.append(re.sub(r"[^\n]", " ", token) if m.lastgroup == "skip" else token)
    return "".join(out)


def unterminated(text: str) -> int | None:
    """Offset of a quote or comment that is never closed, if any."""
    for m in _TOKEN_RE.finditer(text):
        if m.lastgroup == "open":
            return m.start()
    return None


def parse_spark(text: str) -> SqlResult:
    """Analyse one Spark SQL text (see the module docstring)."""
    import sqlglot  # deferred: ~130 ms, only paid when something must be parsed
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back" warnings
    dialect = sqlglot.Dialect.get_or_raise("spark")
    try:
        plain = blank_comments(text)
        tokens = dialect.tokenize(plain)
        trees = dialect.parser(error_message_context=len(text) + 1).parse(tokens, plain)
    except TokenError:
        where = unterminated(text)
        return SqlProblem("unterminated quoted name, string or comment", where)
    except ParseError as e:
        return _syntax_problem(e)
    statements = [t for t in trees if t is not None and not isinstance(t, exp.Semicolon)]
    if not statements:
        return SqlProblem(NO_STATEMENT)
    if len(statements) > 1:
        return SqlProblem(several_statements(len(statements)), _second_start(tokens))
    tree = statements[0]
    if not isinstance(tree, (exp.Query, exp.Values)):
        return SqlProblem(NOT_A_SELECT)
    tables: dict[str, TableRef] = {}
    readers: list[TableRef] = []
    _walk(tree, frozenset(), tables, readers)
    if readers:
        first = min(readers, key=lambda r: r.offset)
        return SqlProblem(reads_files(first.name), first.offset)
    ordered = sorted(tables.values(), key=lambda t: (t.offset < 0, t.offset, t.name.lower()))
    return SqlInfo(digest_text(json.dumps(_canonical(tree), separators=(",", ":"))),
                   tuple(ordered))


def _syntax_problem(error: Any) -> SqlProblem:
    """sqlglot's first error, as `syntax error at or near "X"` at X's offset."""
    first = error.errors[0] if getattr(error, "errors", None) else {}
    near = str(first.get("highlight") or "")
    offset = len(first["start_context"]) if "start_context" in first else None
    described = str(first.get("description", "")).split(" but got ")[0].split("\n")[0]
    message = f'syntax error at or near "{near}"' if near else "syntax error at the end"
    if described.startswith(("Expect", "Required")) and "<class" not in described:
        message += f" ({described[0].lower()}{described[1:]})"
    return SqlProblem(message, offset)


def _second_start(tokens: list[Any]) -> int | None:
    """Offset of the first token of the second non-empty statement."""
    from sqlglot.tokens import TokenType

    starts: list[int] = []
    fresh = True
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            fresh = True
        elif fresh:
            starts.append(tok.start)
            fresh = False
    return starts[1] if len(starts) > 1 else None


def _offset(node: Any) -> int:
    meta = getattr(node, "meta", None) or {}
    start = meta.get("start")
    return start if isinstance(start, int) else -1


def _walk(node: Any, scope: frozenset[str], out: dict[str, TableRef],
          readers: list[TableRef]) -> None:
    """Collect base-table references, honouring CTE scopes as DuckDB's analysis does: a
    CTE shadows a table in the main query and in the bodies of the CTEs after it (in its
    own body too when the WITH is RECURSIVE), but not in its own body otherwise (Spark
    reads the table there: `WITH orders AS (SELECT * FROM orders)`)."""
    from sqlglot import exp

    stack: list[tuple[Any, frozenset[str]]] = [(node, scope)]
    while stack:
        item, inner = stack.pop()
        with_ = item.args.get("with_")
        if isinstance(with_, exp.With):
            recursive = bool(with_.args.get("recursive"))
            for cte in with_.expressions:
                name = cte.alias_or_name.lower()
                stack.append((cte.this, inner | {name} if recursive else inner))
                inner = inner | {name}
        if isinstance(item, exp.Table):
            _table(item, inner, out, readers)
        for key, value in item.args.items():
            if key == "with_":
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, exp.Expression):
                    stack.append((child, inner))


def _table(table: Any, scope: frozenset[str], out: dict[str, TableRef],
           readers: list[TableRef]) -> None:
    from sqlglot import exp

    this, db, catalog = table.this, table.args.get("db"), table.args.get("catalog")
    if isinstance(this, exp.Func):
        name = this.name if isinstance(this, exp.Anonymous) else this.sql_name()
        if name.lower() in FILE_FUNCTIONS:
            readers.append(TableRef(f"{name.lower()}()", _offset(this)))
        return
    if not isinstance(this, exp.Identifier):
        return
    if db is not None and catalog is None and db.name.lower() in FILE_FORMATS:
        readers.append(TableRef(f"{db.name.lower()}.`...`", _offset(db)))
        return
    name, offset = this.name, _offset(this)
    if db is None and catalog is None and name.lower() not in scope:
        seen = out.get(name.lower())  # the walk is not in text order: keep the first
        if seen is None or offset >= 0 and (seen.offset < 0 or offset < seen.offset):
            out[name.lower()] = TableRef(name, offset)


# identifiers whose case Spark never shows: (class of the parent, argument)
_NAMES = {("Table", "this"), ("Table", "db"), ("Table", "catalog"), ("TableAlias", "this"),
          ("Column", "table"), ("Column", "db"), ("Column", "catalog")}


def _canonical(node: Any, parent: str = "", key: str = "") -> Any:
    """The tree as plain data, without comments, positions, quoting or keyword case:
    [class, [argument, value]...] with empty arguments (None, False, []) left out."""
    from sqlglot import exp

    if isinstance(node, list):
        return [_canonical(x, parent, key) for x in node]
    if not isinstance(node, exp.Expression):
        return node if isinstance(node, (str, int, float, bool)) else str(node)
    kind = type(node).__name__
    if isinstance(node, exp.Identifier):
        name = node.this
        return [kind, name.lower() if (parent, key) in _NAMES else name]
    args = []
    for k, v in sorted(node.args.items()):
        if v is None or v is False or v == []:
            continue
        if isinstance(v, str) and isinstance(node, exp.Anonymous) and k == "this":
            v = v.lower()  # Spark's function names are case-insensitive
        elif isinstance(v, str) and isinstance(node, exp.Var):
            v = v.upper()  # keywords held as text (interval units, options)
        args.append([k, _canonical(v, kind, k)])
    return [kind, args]

