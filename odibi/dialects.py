"""Translating a SELECT from one SQL dialect to another (sqlglot), faithfully or not at all.

`transpile(sql, read, write)` returns the statement in `write`'s dialect, or raises
`TranspileError(message, offset)` (offset: where in `sql`, when known). It refuses rather
than guesses: besides what sqlglot itself cannot translate (`ErrorLevel.RAISE`), a
statement is refused when the translation would not run on the target or would run
differently there:
- a function the target does not have (sqlglot passes an unknown function through as
  written): checked against Spark's builtin functions (`spark_functions.txt`, dumped once
  from `SHOW FUNCTIONS`, so no JVM is needed);
- a type the target does not have (HUGEINT, unsigned integers) or that means something else
  there (JSON);
- DuckDB constructs sqlglot passes through unchanged: `* REPLACE (...)`, `* RENAME (...)`,
  `COLUMNS(...)`, `SIMILAR TO`, POSITIONAL and ASOF joins;
- DuckDB constructs sqlglot translates to something that gives other results: the
  numbering of days of the week (`dayofweek`, `isodow`, `extract(dow ...)`),
  `regexp_replace` without 'g' (first match vs every match) or with other options;
- a computed column without a name in a relation (`SELECT count(*) FROM t`): each engine
  names it its own way (`count_star()` vs `count(1)`), so the output would differ.

One difference is fixed rather than refused, exactly: a number cast to an integer is
rounded on Spark as DuckDB rounds it (Spark truncates), by the value's type at run time.

Transpilations are pure, so they are cached (`transpile_all`, `TranspileCache`) by the
dialects, sqlglot's version and the text. `sqlglot` is imported only when something must
be translated.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from odibi.hashing import digest_parts
from odibi.ids import Digest
from odibi.sql_spark import blank_comments

DIALECTS = ("duckdb", "spark")
_SHOWN = {"duckdb": "DuckDB", "spark": "Spark"}


class TranspileError(Exception):
    """A statement that cannot be translated faithfully; `offset`: where in its text."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class TranspileCache(Protocol):
    def get_transpiled(self, keys: list[Digest]) -> dict[Digest, str]: ...
    def put_transpiled(self, items: Mapping[Digest, str]) -> None: ...


def _name(dialect: str) -> str:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    return "spark" if dialect == "spark" else "duckdb"


@functools.cache
def _sqlglot_version() -> str:
    from importlib.metadata import version  # the metadata only: sqlglot is not imported

    return version("sqlglot")


def transpile_key(sql: str, read: str, write: str) -> Digest:
    """The cache key of a translation: the dialects, sqlglot's version and the text."""
    return digest_parts("transpile", _name(read), _name(write), _sqlglot_version(), sql)


def transpile_all(texts: Iterable[str], read: str, write: str,
                  cache: TranspileCache | None = None) -> dict[str, str | TranspileError]:
    """Translate each distinct text; text -> its translation or the error. Only successes
    are cached. Nothing is parsed (nor sqlglot imported) when every text is cached."""
    distinct = list(dict.fromkeys(texts))
    if _name(read) == _name(write):
        return {t: t for t in distinct}
    keys = {t: transpile_key(t, read, write) for t in distinct}
    cached = cache.get_transpiled(list(keys.values())) if cache is not None else {}
    out: dict[str, str | TranspileError] = {}
    fresh: dict[Digest, str] = {}
    for text in distinct:
        hit = cached.get(keys[text])
        if hit is not None:
            out[text] = hit
            continue
        try:
            out[text] = fresh[keys[text]] = transpile(text, read, write)
        except TranspileError as e:
            out[text] = e
    if cache is not None and fresh:
        cache.put_transpiled(fresh)
    return out


def transpile(sql: str, read: str, write: str) -> str:
    """`sql` (one SELECT in `read`'s dialect) in `write`'s dialect. Raises TranspileError."""
    read, write = _name(read), _name(write)
    if read == write:
        return sql
    import sqlglot
    from sqlglot import ErrorLevel
    from sqlglot.errors import ParseError, TokenError, UnsupportedError

    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    plain = blank_comments(sql, read)  # same offsets; sqlglot misreads GROUP /* */ BY
    try:
        trees = [t for t in sqlglot.parse(plain, read=read, error_message_context=len(sql) + 1)
                 if t is not None and not isinstance(t, sqlglot.exp.Semicolon)]
    except TokenError:
        raise TranspileError("sqlglot cannot read this SQL (a quote or comment is not "
                             "closed)") from None
    except ParseError as e:
        raise _unreadable(e, read) from None
    if len(trees) != 1:
        raise TranspileError(f"holds {len(trees)} statements; a node is one SELECT")
    tree = trees[0]
    _refuse_unfaithful(tree, read, write, sql)
    if read == "duckdb" and write == "spark":
        tree = _round_integer_casts(tree)
    try:
        out = tree.sql(dialect=write, unsupported_level=ErrorLevel.RAISE, pretty=True,
                       comments=False)
    except UnsupportedError as e:
        raise TranspileError(f"no {write} equivalent: {_first_line(e)}") from None
    if write == "spark":
        _check_spark(out, sql)
    return out


def _first_line(error: Exception) -> str:
    return str(error).split("\n")[0]


def _unreadable(error: Any, read: str) -> TranspileError:
    """sqlglot's parser does not take everything DuckDB or Spark does: where it stopped."""
    first = error.errors[0] if getattr(error, "errors", None) else {}
    near = str(first.get("highlight") or "")
    offset = len(first["start_context"]) if "start_context" in first else None
    where = f' at or near "{near}"' if near else ""
    return TranspileError(f"sqlglot cannot read this {read} SQL{where}, so it cannot "
                          "translate it", offset)


def _offset(node: Any) -> int | None:
    """Where a node was written: the first position sqlglot kept for it or its parts."""
    found = [n.meta["start"] for n in node.walk()
             if isinstance(getattr(n, "meta", None), dict) and "start" in n.meta]
    return min(found) if found else None


# -- what a faithful translation needs ----------------------------------------------------
_DOW_PARTS = frozenset({"DOW", "ISODOW", "DAYOFWEEK", "DAYOFWEEK_ISO", "DOW_ISO", "WEEKDAY"})
_DOW_HINT = (": the days of the week are numbered differently (DuckDB: Sunday = 0, Spark: "
             "Sunday = 1)")


def _refuse_unfaithful(tree: Any, read: str, write: str, sql: str) -> None:
    """Raise TranspileError at the first construct (in the text) that `write` would not
    run, or would run differently (see the module docstring)."""
    from sqlglot import exp

    problems: list[tuple[str, int | None, int]] = []
    for node in tree.walk():
        construct = _construct_problem(node, exp, sql) if read == "duckdb" else None
        if construct is not None:
            problems.append((f"{construct[0]} has no faithful translation to "
                             f"{_SHOWN[write]} SQL{construct[1]}", _offset(node) if construct[2] is None
                             else construct[2], 0))
        if isinstance(node, (exp.Select, exp.Values)) and _names_columns(node, exp):
            unnamed = _unnamed_column(node, exp, sql)
            if unnamed is not None:
                problems.append((*unnamed, 1))
    if problems:  # the first in the text; at one place, the construct before its name
        message, offset, _ = min(problems, key=lambda p: (p[1] is None, p[1] or 0, p[2]))
        raise TranspileError(message, offset)


def _construct_problem(node: Any, exp: Any, sql: str) -> tuple[str, str, int | None] | None:
    """The DuckDB construct at `node` that Spark would not run or would run differently:
    (what, why, where when not the node's own position)."""
    if isinstance(node, exp.Star):
        for arg in ("replace", "rename"):
            if node.args.get(arg):
                return f"* {arg.upper()} (...)", "", None
    if isinstance(node, exp.Columns):
        return "COLUMNS(...)", "", None
    if isinstance(node, exp.SimilarTo):
        return "SIMILAR TO", "", _find(sql, "similar")
    method = str(node.args.get("method") or "").upper() if isinstance(node, exp.Join) else ""
    if method in ("POSITIONAL", "ASOF"):
        return f"{method} JOIN", "", _find(sql, method)
    if isinstance(node, (exp.DayOfWeek, exp.DayOfWeekIso)):
        return f"{_written(node, sql)}()", _DOW_HINT, None
    if isinstance(node, exp.Extract) and node.this.name.upper() in _DOW_PARTS:
        return f"extract({node.this.name.lower()} FROM ...)", _DOW_HINT, _find(sql, "extract")
    if isinstance(node, exp.Anonymous) and node.name.lower() == "date_part" and \
            node.expressions and node.expressions[0].name.upper() in _DOW_PARTS:
        return f"date_part('{node.expressions[0].name}', ...)", _DOW_HINT, None
    if isinstance(node, exp.RegexpReplace):
        return _regexp_replace_problem(node, exp)
    if isinstance(node, exp.DataType) and node.this.name in _OTHER_TYPES:
        name = _OTHER_TYPES[node.this.name]
        return f"the type {name}", "", _find(sql, name)
    return None


def _regexp_replace_problem(node: Any, exp: Any) -> tuple[str, str, int | None] | None:
    """DuckDB's regexp_replace replaces the first match unless told 'g'; Spark's replaces
    every match and takes no options."""
    options = node.args.get("modifiers")
    if isinstance(options, exp.Literal) and options.is_string and options.this == "g":
        return None
    if options is None:
        return ("regexp_replace() without 'g'", ": DuckDB replaces the first match only, "
                "Spark every match (add 'g' to replace every match on both)", None)
    return (f"regexp_replace() with options {options.sql('duckdb')}",
            " (Spark's takes none; write them in the pattern, e.g. (?i))", None)


_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INT", "BIGINT"})


def _round_integer_casts(tree: Any) -> Any:
    """DuckDB rounds a number cast to an integer type, Spark truncates it: round first on
    Spark, as DuckDB does for the value's type (half to even for DOUBLE and FLOAT,
    `CAST(2.5::DOUBLE AS INT)` is 2; half away from zero for DECIMAL and text, 3), but for
    what is an integer already. In a TRY_CAST, text that is not a number stays NULL."""
    from sqlglot import exp

    def fix(node: Any) -> Any:
        if isinstance(node, (exp.Cast, exp.TryCast)) and node.to.this.name in _INTEGERS \
                and not _integral(node.this, exp):
            node.set("this", _rounded(node.this, isinstance(node, exp.TryCast)))
        return node
    return tree.transform(fix)


def _rounded(value: Any, lenient: bool) -> Any:
    """`CASE WHEN typeof(v) IN ('double', 'float') THEN BROUND(v) ELSE ROUND(v) END`."""
    import sqlglot
    from sqlglot import exp

    decimal = value.copy()
    if lenient:
        decimal = exp.TryCast(this=decimal, to=exp.DataType.build("DECIMAL(38, 10)"), safe=True)
    case = sqlglot.parse_one("CASE WHEN typeof(v) IN ('double', 'float') THEN bround(v) "
                             "ELSE round(w) END", read="spark")
    for column in list(case.find_all(exp.Column)):
        column.replace((decimal if column.name == "w" else value).copy())
    return case


def _integral(node: Any, exp: Any) -> bool:
    """Whether an expression is an integer or a truth value whatever the input: a literal
    integer, a comparison or logical operation, an integer cast, a count."""
    if isinstance(node, exp.Paren):
        return _integral(node.this, exp)
    if isinstance(node, exp.Literal):
        return not node.is_string and node.this.lstrip("-").isdigit()
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.to.this.name in _INTEGERS or node.to.this.name == "BOOLEAN"
    return isinstance(node, (exp.Predicate, exp.Connector, exp.Not, exp.Boolean, exp.Count))


def _written(node: Any, sql: str) -> str:
    """A function's name as the text writes it."""
    meta = getattr(node, "meta", None) or {}
    if isinstance(meta.get("start"), int) and isinstance(meta.get("end"), int):
        return sql[meta["start"]:meta["end"] + 1]
    return node.sql_name().lower()


# DuckDB types Spark has not, or has with another meaning (JSON: a parsed value vs a
# string): sqlglot's name -> DuckDB's
_OTHER_TYPES = {"INT128": "HUGEINT", "UINT128": "UHUGEINT", "UBIGINT": "UBIGINT",
                "UINT": "UINTEGER", "USMALLINT": "USMALLINT", "UTINYINT": "UTINYINT",
                "UDECIMAL": "UDECIMAL", "UDOUBLE": "UDOUBLE", "JSON": "JSON", "BIT": "BIT",
                "BIGNUM": "BIGNUM", "UNION": "UNION"}


def _names_columns(query: Any, exp: Any) -> bool:
    """Whether the column names of `query` (a SELECT or VALUES) become those of a relation:
    the statement's, a CTE's, a table subquery's (FROM, JOIN), through parentheses and the
    first branch of set operations; not those of a scalar, IN or EXISTS subquery."""
    node = query
    while True:
        parent = node.parent
        if parent is None or isinstance(parent, (exp.CTE, exp.From, exp.Join, exp.Lateral)):
            return True
        if isinstance(parent, exp.SetOperation):
            if node.arg_key != "this":
                return False
        elif not isinstance(parent, exp.Subquery):
            return False
        node = parent


def _unnamed_column(query: Any, exp: Any, sql: str) -> tuple[str, int | None] | None:
    """A computed column without a name: each engine names it its own way."""
    if isinstance(query, exp.Values):
        alias = query.args.get("alias")
        if alias is None or not alias.columns:
            at = _offset(query)
            at = sql.lower().rfind("values", 0, at) if at is not None else -1
            return ("VALUES without column names (AS v(a, b)): DuckDB and Spark name its "
                    "columns differently", at if at >= 0 else None)
        return None
    for column in query.expressions:
        if not isinstance(column, (exp.Column, exp.Star, exp.Alias)):
            return (f"the column {column.sql('duckdb')} has no name, and DuckDB and Spark "
                    "would name it differently: give it one with AS",
                    _offset(column))
    return None


# -- checking the translation against Spark -------------------------------------------------
_SPARK_SYNTAX = frozenset({"try_cast", "exists", "in", "values", "over", "filter", "within",
                           "grouping", "rollup", "cube", "struct", "array", "map"})
_SPARK_TYPES = frozenset({"BOOLEAN", "TINYINT", "BYTE", "SMALLINT", "SHORT", "INT", "INTEGER",
                          "BIGINT", "LONG", "FLOAT", "REAL", "DOUBLE", "DECIMAL", "DEC",
                          "NUMERIC", "STRING", "VARCHAR", "CHAR", "BINARY", "DATE",
                          "TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "INTERVAL", "ARRAY",
                          "MAP", "STRUCT", "VOID", "VARIANT", "NULL"})
_CALL_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")


@functools.cache
def spark_functions() -> frozenset[str]:
    """Spark's builtin function names (lower case), from `spark_functions.txt`."""
    text = (Path(__file__).with_name("spark_functions.txt")).read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def _check_spark(out: str, sql: str) -> None:
    """Every function the translation calls is one of Spark's, every type one it has."""
    import sqlglot
    from sqlglot import exp

    known = spark_functions() | _SPARK_SYNTAX
    for node in sqlglot.parse_one(out, read="spark").walk():
        if isinstance(node, exp.DataType):
            name = node.sql("spark").split("(")[0].split("<")[0].strip().upper()
            if name and name not in _SPARK_TYPES:
                raise TranspileError(f"the type {name} has no Spark equivalent",
                                     _find(sql, name))
        if not isinstance(node, exp.Func):
            continue
        m = _CALL_RE.match(node.sql("spark"))
        if m and m.group(1).lower() not in known:
            fn = m.group(1).lower()
            where = _find(sql, fn)
            if where is None:  # not written: made by the translation (a table function...)
                raise TranspileError(
                    "this statement has no faithful Spark translation (sqlglot's "
                    f"translation calls {fn}(), which Spark does not have)")
            raise TranspileError(f"Spark has no function {fn}() (not among its builtin "
                                 "functions)", where)


def _find(sql: str, word: str) -> int | None:
    m = re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", sql, re.I)
    return m.start() if m else None


def _dump_spark_functions() -> None:  # pragma: no cover - run by hand, needs a JVM
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").getOrCreate()
    try:
        names = sorted({r[0] for r in spark.sql("SHOW FUNCTIONS").collect()})
    finally:
        spark.stop()
    print(f"# Spark SQL's builtin functions: SHOW FUNCTIONS of Spark {spark.version}, one a line.")
    print("# odibi.dialects refuses to transpile a call of a function not listed here (no JVM "
          "needed).")
    print("# Regenerate: python -m odibi.dialects --spark-functions > odibi/spark_functions.txt")
    print("\n".join(names))


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:] == ["--spark-functions"]:
        _dump_spark_functions()
