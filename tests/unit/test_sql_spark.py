"""Spark SQL analysis without a JVM (odibi/sql_spark.py through `analyze(..., dialect=
"spark")`): which tables a query reads, the parse-tree digest that ignores formatting but
not a real change (identifier case as Spark resolves it), the problems, located, and the
cache keyed by dialect."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odibi.hashing import digest_text
from odibi.ids import Digest
from odibi.sql import SqlInfo, SqlProblem, TableRef, analyze, text_key
from odibi.sql_spark import normalized_spark


def info(text: str) -> SqlInfo:
    result = analyze([text], dialect="spark")[text]
    assert isinstance(result, SqlInfo), result
    return result


def tables(text: str) -> list[str]:
    return [t.name for t in info(text).tables]


def problem(text: str) -> SqlProblem:
    result = analyze([text], dialect="spark")[text]
    assert isinstance(result, SqlProblem), result
    return result


# -- tables ---------------------------------------------------------------------------------
TABLE_CASES: list[tuple[str, list[str]]] = [
    ("SELECT 1", []),
    ("SELECT * FROM a", ["a"]),
    ("FROM a SELECT x", ["a"]),
    ("SELECT * FROM a, b", ["a", "b"]),
    ("SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id)", ["a", "b", "c"]),
    ("SELECT * FROM a LEFT ANTI JOIN b ON a.id = b.id", ["a", "b"]),
    ("SELECT * FROM a AS x CROSS JOIN b AS y", ["a", "b"]),
    ("SELECT * FROM (SELECT * FROM inner_t) s", ["inner_t"]),
    ("SELECT * FROM a WHERE id IN (SELECT id FROM b)", ["a", "b"]),
    ("SELECT * FROM a WHERE EXISTS (SELECT 1 FROM e WHERE e.id = a.id)", ["a", "e"]),
    ("SELECT (SELECT max(x) FROM sc) AS m FROM a", ["sc", "a"]),
    ("SELECT * FROM a UNION ALL SELECT * FROM b", ["a", "b"]),
    ("SELECT * FROM a EXCEPT SELECT * FROM b", ["a", "b"]),
    ("SELECT * FROM a INTERSECT SELECT * FROM b", ["a", "b"]),
    ("SELECT k, sum(v) OVER (PARTITION BY k ORDER BY t ROWS BETWEEN 1 PRECEDING AND "
     "CURRENT ROW) AS s FROM a", ["a"]),
    ("SELECT * FROM a QUALIFY row_number() OVER (PARTITION BY k ORDER BY t) = 1", ["a"]),
    ("SELECT * FROM `Quoted Name`", ["Quoted Name"]),
    ("SELECT id, x FROM a LATERAL VIEW explode(xs) e AS x", ["a"]),
    ("SELECT * FROM a TABLESAMPLE (10 PERCENT)", ["a"]),
    ("VALUES (1, 2), (3, 4)", []),
    # CTEs are not tables
    ("WITH c AS (SELECT * FROM a) SELECT * FROM c", ["a"]),
    ("WITH y AS (SELECT 1 AS v), x AS (SELECT * FROM y) SELECT * FROM x", []),
    ("WITH C AS (SELECT 1 AS x) SELECT * FROM c", []),  # names are case-insensitive
    ("WITH t AS (SELECT 1) SELECT * FROM (SELECT * FROM t) s", []),
    ("WITH RECURSIVE r AS (SELECT 1 AS v UNION ALL SELECT v + 1 FROM r WHERE v < 3) "
     "SELECT * FROM r", []),
    ("WITH c AS (SELECT * FROM a) SELECT * FROM c UNION SELECT * FROM b", ["a", "b"]),
    # ... but a CTE shadows a table only in its scope
    ("SELECT * FROM (WITH t AS (SELECT 1 AS x) SELECT * FROM t) q JOIN t USING (x)", ["t"]),
    ("SELECT * FROM t WHERE x IN (WITH t AS (SELECT 1 AS x) SELECT x FROM t)", ["t"]),
    # in its own body a (non-recursive) CTE's name is the table, as Spark runs it
    ("WITH orders AS (SELECT * FROM orders) SELECT * FROM orders", ["orders"]),
    ("WITH x AS (SELECT * FROM y), y AS (SELECT 1 AS v) SELECT * FROM x", ["y"]),
    # qualified names are not nodes (another database or catalog)
    ("SELECT * FROM other.t", []),
    ("SELECT * FROM spark_catalog.default.t", []),
    ("SELECT * FROM other.t JOIN u USING (id)", ["u"]),
    # table functions are not tables
    ("SELECT * FROM range(10)", []),
    ("SELECT * FROM range(3) r JOIN a ON a.id = r.id", ["a"]),
    ("SELECT * FROM explode(array(1, 2))", []),
]


@pytest.mark.parametrize(("text", "expected"), TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_tables_read_in_order_of_first_reference(text: str, expected: list[str]) -> None:
    assert tables(text) == expected


def test_a_table_named_twice_or_in_two_cases_counts_once() -> None:
    found = info("SELECT * FROM a JOIN a AS a2 USING (id) JOIN A AS a3 USING (id)").tables
    assert found == (TableRef("a", 14),)


def test_table_offsets_point_at_the_reference() -> None:
    text = "SELECT *\nFROM orders o\nJOIN `customers` c USING (customer_id)"
    refs = {t.name: t.offset for t in info(text).tables}
    assert refs == {"orders": text.index("orders"), "customers": text.index("`customers`")}


def test_offsets_count_characters() -> None:
    text = "SELECT 'é€' AS s FROM src"
    assert info(text).tables == (TableRef("src", text.index("src")),)


# -- the parse-tree digest ----------------------------------------------------------------
BASE = "SELECT a, b FROM t WHERE x > 1 ORDER BY a"
SAME = [
    "select a, b from t where x > 1 order by a",
    "SELECT a,b FROM t WHERE x>1 ORDER BY a",
    "SELECT\n    a,\n    b\nFROM t\nWHERE x > 1\nORDER BY a\n",
    "SELECT a, b -- the columns\nFROM t /* the table */ WHERE x > 1 ORDER BY a",
    "  SELECT a, b FROM t WHERE x > 1 ORDER BY a  ",
    "SELECT a, b FROM t WHERE x > 1 ORDER BY a;",
    "SELECT a, b FROM t WHERE x > 1 ORDER BY a ASC",
    "\tSeLeCt a, b FrOm t WhErE x > 1 oRdEr By a",
    "SELECT `a`, `b` FROM `t` WHERE `x` > 1 ORDER BY `a`",  # quoting a plain name
    "SELECT a, b FROM T WHERE x > 1 ORDER BY a",  # table names are case-insensitive
]
DIFFERENT = [
    "SELECT a, b FROM t WHERE x > 2 ORDER BY a",  # literal
    "SELECT a, c FROM t WHERE x > 1 ORDER BY a",  # column
    "SELECT a, b FROM u WHERE x > 1 ORDER BY a",  # table
    "SELECT a, b FROM t WHERE x >= 1 ORDER BY a",  # operator
    "SELECT a, b FROM t WHERE x > 1 ORDER BY a DESC",  # order
    "SELECT b, a FROM t WHERE x > 1 ORDER BY a",  # column order
    "SELECT a, b FROM t WHERE x > '1' ORDER BY a",  # literal type
    "SELECT a, b AS bb FROM t WHERE x > 1 ORDER BY a",  # alias
    "SELECT A, b FROM t WHERE x > 1 ORDER BY a",  # a column's case names the output column
    "SELECT a, b FROM t WHERE x > 1 ORDER BY a NULLS LAST",  # null order
    "SELECT DISTINCT a, b FROM t WHERE x > 1 ORDER BY a",
    "SELECT a, b FROM t WHERE x > 1 ORDER BY a LIMIT 5",
]


@pytest.mark.parametrize("text", SAME)
def test_digest_ignores_layout_comments_keyword_and_table_case(text: str) -> None:
    assert info(text).tree == info(BASE).tree


@pytest.mark.parametrize("text", DIFFERENT)
def test_digest_changes_with_the_logic(text: str) -> None:
    assert info(text).tree != info(BASE).tree


def test_digests_of_different_texts_are_all_distinct() -> None:
    digests = {info(t).tree for t in DIFFERENT + [BASE]}
    assert len(digests) == len(DIFFERENT) + 1


@pytest.mark.parametrize(("one", "other", "same"), [
    # names Spark resolves case-insensitively and never shows
    ("SELECT o.id FROM orders o", "SELECT O.id FROM Orders O", True),
    ("WITH c AS (SELECT 1 AS v) SELECT v FROM c", "WITH C AS (SELECT 1 AS v) SELECT v FROM C",
     True),
    ("SELECT max(v) FROM t", "SELECT MAX(v) FROM t", True),
    ("SELECT my_udf(v) FROM t", "SELECT MY_UDF(v) FROM t", True),
    ("SELECT v FROM t WHERE d > current_date() - INTERVAL 1 DAY",
     "SELECT v FROM t WHERE d > current_date() - interval 1 day", True),
    # names that become the output's column names: their case counts
    ("SELECT v AS total FROM t", "SELECT v AS Total FROM t", False),
    ("SELECT amount FROM t", "SELECT Amount FROM t", False),
    ("SELECT * FROM range(3) r(id)", "SELECT * FROM range(3) r(ID)", False),
    # string contents count, in every quoting
    ("SELECT 'a  b' AS s", "SELECT 'a b' AS s", False),
    ("SELECT 'x' AS s", "SELECT 'X' AS s", False),
    ('SELECT "x" AS s', "SELECT 'x' AS s", True),  # Spark: double quotes make a string
    ("SELECT 'it\\'s' AS s", "SELECT 'its' AS s", False),
    ("SELECT `a b` FROM t", "SELECT `a  b` FROM t", False),
    ("SELECT 1L AS n", "SELECT 1 AS n", False),
])
def test_identifier_case_follows_spark(one: str, other: str, same: bool) -> None:
    assert (info(one).tree == info(other).tree) is same


# -- reformatting and real edits, generated --------------------------------------------------
STATEMENTS = [  # tokens; any run of blanks or comments may go between two of them
    "SELECT o . customer_id , sum ( o . amount ) AS total FROM orders o JOIN customers c "
    "ON o . customer_id = c . id WHERE o . amount > 10 GROUP BY o . customer_id",
    "WITH recent AS ( SELECT * FROM events WHERE ts >= '2024-01-01' ) SELECT user_id , "
    "count ( * ) AS n FROM recent GROUP BY user_id HAVING count ( * ) > 2",
    "SELECT id , row_number ( ) OVER ( PARTITION BY k ORDER BY ts DESC ) AS rn FROM t "
    "UNION ALL SELECT id , 0 AS rn FROM u",
    "SELECT CASE WHEN amount > 100 THEN 'big' ELSE 'small' END AS size , CAST ( amount AS "
    "DECIMAL ( 10 , 2 ) ) AS amt FROM orders WHERE status IN ( 'a' , 'b' )",
]
KEYWORDS = {"select", "from", "join", "on", "where", "group", "by", "as", "with", "count",
            "having", "over", "partition", "order", "desc", "union", "all", "case", "when",
            "then", "else", "end", "cast", "decimal", "in", "sum", "row_number"}
GAPS = st.sampled_from([" ", "  ", "\n", "\n\t", " /* note */ ", " -- note\n", "\n-- x\n  "])


def _reformat(tokens: list[str], gaps: list[str], upper: list[bool]) -> str:
    out = []
    for i, tok in enumerate(tokens):
        if tok.lower() in KEYWORDS:
            tok = tok.upper() if upper[i % len(upper)] else tok.lower()
        out.append(tok)
        out.append(gaps[i % len(gaps)])
    return "".join(out)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(STATEMENTS), st.lists(GAPS, min_size=1, max_size=12),
       st.lists(st.booleans(), min_size=1, max_size=12))
def test_any_reformatting_keeps_the_digest(statement: str, gaps: list[str],
                                           upper: list[bool]) -> None:
    tokens = statement.split()
    assert info(_reformat(tokens, gaps, upper)).tree == info(statement).tree


def _edits(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """(what, tokens after) for each real edit of one token."""
    out = []
    for i, tok in enumerate(tokens):
        if tok.isdigit():
            out.append((f"literal {tok}", tokens[:i] + [str(int(tok) + 1)] + tokens[i + 1:]))
        elif tok in ("amount", "user_id", "id", "ts", "k"):
            out.append((f"column {tok}", tokens[:i] + [tok + "2"] + tokens[i + 1:]))
            out.append((f"case of {tok}", tokens[:i] + [tok.upper()] + tokens[i + 1:]))
        elif tok in (">", ">="):
            out.append((f"operator {tok}", tokens[:i] + ["<"] + tokens[i + 1:]))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_real_edit_changes_the_digest(data: st.DataObject) -> None:
    tokens = data.draw(st.sampled_from(STATEMENTS)).split()
    what, edited = data.draw(st.sampled_from(_edits(tokens)))
    gaps = data.draw(st.lists(GAPS, min_size=1, max_size=6))
    assert info(_reformat(edited, gaps, [True])).tree != info(" ".join(tokens)).tree, what


# -- problems -------------------------------------------------------------------------------
def test_two_statements_are_located_at_the_second() -> None:
    text = "SELECT 1 AS `a;b`, ';' AS c; -- x;\n  SELECT 2"
    p = problem(text)
    assert p.message == "holds 2 statements; a node is one SELECT"
    assert p.offset == text.index("SELECT 2")


@pytest.mark.parametrize("text", [
    "CREATE TABLE x AS SELECT 1",
    "DROP TABLE x",
    "INSERT INTO t VALUES (1)",
    "INSERT OVERWRITE TABLE t SELECT * FROM u",
    "DELETE FROM t",
    "UPDATE t SET a = 1",
    "SET spark.sql.shuffle.partitions = 4",
    "CACHE TABLE t",
    "SHOW TABLES",
])
def test_ddl_and_dml_are_refused(text: str) -> None:
    assert problem(text).message == (
        "must be a single SELECT statement (DDL and DML are not allowed)")


@pytest.mark.parametrize(("text", "near"), [
    ("SELECT * FROM a WHERE", "WHERE"),
    ("SELECT * FROM", "FROM"),
    ("SELECT * FROM a\nWHERE x = = 1", "="),
    ("SELECT (1 FROM t", "FROM"),
])
def test_syntax_errors_are_located(text: str, near: str) -> None:
    p = problem(text)
    assert p.message.startswith(f'syntax error at or near "{near}"')
    assert p.offset is not None and text[p.offset:].startswith(near)
    assert "\n" not in p.message and "<class" not in p.message


@pytest.mark.parametrize("text", ["SELECT 'abc", "SELECT `abc FROM t", "SELECT 1 /* open"])
def test_an_unterminated_quote_or_comment_is_located(text: str) -> None:
    p = problem(text)
    assert p.message == "unterminated quoted name, string or comment"
    assert p.offset == max(text.find("'"), text.find("`"), text.find("/*"))


@pytest.mark.parametrize("text", ["", "   ", "-- only a comment", ";", ";;"])
def test_no_statement(text: str) -> None:
    assert problem(text).message == "holds no statement"


@pytest.mark.parametrize("text", ["SELECT 1;", "SELECT 1 ;  ", "SELECT 1;\n-- done\n"])
def test_a_trailing_semicolon_is_fine(text: str) -> None:
    assert info(text).tree == info("SELECT 1").tree


@pytest.mark.parametrize(("text", "how"), [
    ("SELECT * FROM parquet.`/data/x.parquet`", "parquet.`...`"),
    ("SELECT * FROM a JOIN CSV.`s3a://b/k.csv` USING (id)", "csv.`...`"),
    ("SELECT * FROM delta.`/lake/t`", "delta.`...`"),
    ("SELECT * FROM read_files('/data', format => 'json')", "read_files()"),
    ("SELECT * FROM a WHERE id IN (SELECT id FROM read_parquet('x.parquet'))",
     "read_parquet()"),
    ("SELECT * FROM a WHERE id IN (SELECT id FROM read_csv('x.csv'))", "read_csv()"),
])
def test_direct_file_reads_are_refused(text: str, how: str) -> None:
    p = problem(text)
    assert p.message == (f"reads files directly with {how}; add a read node for them so "
                         "odibi can fingerprint them")
    assert p.offset == text.lower().index(how.split("`")[0].rstrip("()").lower())


# -- the cache ------------------------------------------------------------------------------
class DictCache:
    def __init__(self) -> None:
        self.items: dict[Digest, SqlInfo] = {}

    def get_sql(self, keys: list[Digest]) -> dict[Digest, SqlInfo]:
        return {k: self.items[k] for k in keys if k in self.items}

    def put_sql(self, items: dict[Digest, SqlInfo]) -> None:
        self.items.update(items)


def test_cache_keys_name_the_dialect() -> None:
    """The same text analysed as DuckDB and as Spark SQL: two entries, and neither is
    taken for the other (DuckDB reads "x" as a name, Spark as a string)."""
    cache = DictCache()
    text = 'SELECT "x" AS v FROM t'
    as_duckdb = analyze([text], cache)[text]
    as_spark = analyze([text], cache, dialect="spark")[text]
    assert text_key(text) == digest_text(text)  # DuckDB's keys are as before dialects
    assert text_key(text, "spark") != text_key(text)
    assert cache.items[text_key(text)] == as_duckdb
    assert cache.items[text_key(text, "spark")] == as_spark
    planted = SqlInfo(Digest("planted"), ())
    cache.items[text_key(text)] = planted
    assert analyze([text], cache, dialect="spark")[text] == as_spark
    assert analyze([text], cache)[text] is planted


def test_a_reformatted_statement_reuses_the_parse() -> None:
    cache = DictCache()
    base = "SELECT a FROM `t` WHERE x > 1"
    analyze([base], cache, dialect="spark")
    planted = SqlInfo(Digest("planted"), (TableRef("t", 0),))
    for key in list(cache.items):
        cache.items[key] = planted
    text = "SELECT a\n  -- the filter\n  FROM `t`   WHERE x > 1  "
    got = analyze([text], cache, dialect="spark")[text]
    assert got.tree == "planted"  # type: ignore[union-attr]
    assert got.tables == (TableRef("t", text.index("t`")),)  # type: ignore[union-attr]
    other = "SELECT a FROM `t` WHERE x > 2"
    assert analyze([other], cache, dialect="spark")[other].tree != "planted"  # type: ignore[union-attr]


@pytest.mark.parametrize(("one", "other"), [
    ("SELECT 'a  b'", "SELECT 'a b'"),
    ("SELECT 'a\\'  b'", "SELECT 'a\\' b'"),
    ("SELECT `a  b`", "SELECT `a b`"),
    ("SELECT 1L", "SELECT 1 L"),
    ("SELECT r'\\' AS a, 'b  c'", "SELECT r'\\' AS a, 'b c'"),
    ("SELECT Amount FROM t", "SELECT amount FROM t"),
    ("SELECT a-1", "SELECT a--1\n"),
])
def test_normalized_keeps_what_matters(one: str, other: str) -> None:
    assert normalized_spark(one) != normalized_spark(other)


def test_normalized_drops_layout_and_comments() -> None:
    assert normalized_spark("  select a -- x\n from /* y */ t ") == "select a from t"


def test_unknown_dialect_is_a_bug_not_a_user_error() -> None:
    with pytest.raises(ValueError):
        analyze(["SELECT 1"], dialect="postgres")


def test_nothing_is_parsed_when_every_text_is_cached() -> None:
    """A no-op build parses nothing: with every text in the cache, sqlglot is not even
    imported."""
    code = ("import sys\n"
            "from odibi.sql import analyze, SqlInfo\n"
            "class C:\n"
            "    def get_sql(self, keys): return {k: SqlInfo('x', ()) for k in keys}\n"
            "    def put_sql(self, items): raise AssertionError(items)\n"
            "analyze(['SELECT 1', 'SELECT * FROM t'], C(), dialect='spark')\n"
            "print('sqlglot' in sys.modules, 'duckdb' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
