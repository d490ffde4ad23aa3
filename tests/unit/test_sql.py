"""SQL analysis through DuckDB's parser (odibi/sql.py): which tables a SELECT reads, the
parse-tree digest that ignores formatting, and the problems reported for anything that is
not exactly one SELECT. Also `odibi.resolve.placeholder_text`."""

from __future__ import annotations

import pytest

from odibi.ids import Digest
from odibi.resolve import placeholder_text
from odibi.hashing import digest_text
from odibi.sql import SqlInfo, SqlProblem, TableRef, analyze, normalized


def info(text: str) -> SqlInfo:
    result = analyze([text])[text]
    assert isinstance(result, SqlInfo), result
    return result


def tables(text: str) -> set[str]:
    return {t.name for t in info(text).tables}


def problem(text: str) -> SqlProblem:
    result = analyze([text])[text]
    assert isinstance(result, SqlProblem), result
    return result


# -- tables ---------------------------------------------------------------------------------
TABLE_CASES: list[tuple[str, set[str]]] = [
    ("SELECT 1", set()),
    ("SELECT * FROM a", {"a"}),
    ("FROM a", {"a"}),
    ("SELECT * FROM a, b", {"a", "b"}),
    ("SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id)", {"a", "b", "c"}),
    ("SELECT * FROM a AS x CROSS JOIN b AS y", {"a", "b"}),
    ("SELECT * FROM (SELECT * FROM inner_t) s", {"inner_t"}),
    ("SELECT * FROM a WHERE id IN (SELECT id FROM b)", {"a", "b"}),
    ("SELECT * FROM a WHERE EXISTS (SELECT 1 FROM e WHERE e.id = a.id)", {"a", "e"}),
    ("SELECT (SELECT max(x) FROM sc) AS m FROM a", {"a", "sc"}),
    ("SELECT * FROM a UNION ALL SELECT * FROM b", {"a", "b"}),
    ("SELECT * FROM a EXCEPT SELECT * FROM b", {"a", "b"}),
    ("SELECT * FROM a QUALIFY row_number() OVER (PARTITION BY k) = 1", {"a"}),
    ('SELECT * FROM "Quoted Name"', {"Quoted Name"}),
    # CTEs are not tables
    ("WITH c AS (SELECT * FROM a) SELECT * FROM c", {"a"}),
    ("WITH y AS (SELECT 1 AS v), x AS (SELECT * FROM y) SELECT * FROM x", set()),
    ("WITH C AS (SELECT 1 AS x) SELECT * FROM c", set()),  # names are case-insensitive
    ("WITH t AS (SELECT 1) SELECT * FROM (SELECT * FROM t) s", set()),
    ("WITH RECURSIVE r AS (SELECT 1 AS v UNION ALL SELECT v + 1 FROM r WHERE v < 3) "
     "SELECT * FROM r", set()),
    # ... but a CTE shadows a table only in its scope
    ("SELECT * FROM (WITH t AS (SELECT 1 AS x) SELECT * FROM t) q JOIN t USING (x)", {"t"}),
    ("SELECT * FROM t WHERE x IN (WITH t AS (SELECT 1 AS x) SELECT x FROM t)", {"t"}),
    # inside a CTE's own body, its name (and later CTEs' names) are still the tables: this
    # is how DuckDB runs it (dbt-style "import" CTEs: WITH orders AS (SELECT * FROM orders))
    ("WITH orders AS (SELECT * FROM orders) SELECT * FROM orders", {"orders"}),
    ("WITH x AS (SELECT * FROM y), y AS (SELECT 1 AS v) SELECT * FROM x", {"y"}),
    # schema main counts, other schemas and catalogs do not
    ("SELECT * FROM main.t", {"t"}),
    ("WITH c AS (SELECT 1) SELECT * FROM main.c", {"c"}),  # qualified: not the CTE
    ("SELECT * FROM other.t", set()),
    ("SELECT * FROM memory.main.t", set()),
    ("SELECT * FROM other.t JOIN main.u USING (id)", {"u"}),
    # table functions are not tables
    ("SELECT * FROM range(10)", set()),
    ("SELECT * FROM generate_series(1, 3) g(i) JOIN a ON a.id = g.i", {"a"}),
]


@pytest.mark.parametrize(("text", "expected"), TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_tables_read(text: str, expected: set[str]) -> None:
    assert tables(text) == expected


def test_a_table_named_twice_or_in_two_cases_counts_once() -> None:
    found = info("SELECT * FROM a JOIN a AS a2 USING (id) JOIN A AS a3 USING (id)").tables
    assert len(found) == 1
    assert found[0].name.lower() == "a"


def test_table_offsets_point_at_the_reference() -> None:
    text = "SELECT *\nFROM orders o\nJOIN customers c USING (customer_id)"
    refs = {t.name: t.offset for t in info(text).tables}
    assert refs == {"orders": text.index("orders"), "customers": text.index("customers")}
    assert info("SELECT * FROM main.t").tables == (TableRef("t", 14),)


# -- the parse-tree digest ----------------------------------------------------------------
BASE = "SELECT a, b FROM t WHERE x > 1 ORDER BY a"
SAME = [
    "select a, b from t where x > 1 order by a",
    "SELECT a,b FROM t WHERE x>1 ORDER BY a",
    "SELECT\n    a,\n    b\nFROM t\nWHERE x > 1\nORDER BY a\n",
    "SELECT a, b -- the columns\nFROM t /* the table */ WHERE x > 1 ORDER BY a",
    "  SELECT a, b FROM t WHERE x > 1 ORDER BY a  ",
    "SELECT a, b FROM t WHERE x > 1 ORDER BY a;",
    "\tSeLeCt a, b FrOm t WhErE x > 1 oRdEr By a",
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
]


@pytest.mark.parametrize("text", SAME)
def test_digest_ignores_whitespace_comments_keyword_case(text: str) -> None:
    assert info(text).tree == info(BASE).tree


@pytest.mark.parametrize("text", DIFFERENT)
def test_digest_changes_with_the_logic(text: str) -> None:
    assert info(text).tree != info(BASE).tree


def test_digests_of_different_texts_are_all_distinct() -> None:
    digests = {info(t).tree for t in DIFFERENT + [BASE]}
    assert len(digests) == len(DIFFERENT) + 1


def test_string_literal_content_counts() -> None:
    assert info("SELECT 'a  b' AS s").tree != info("SELECT 'a b' AS s").tree
    assert info("SELECT 'x' AS s").tree != info("SELECT 'X' AS s").tree


# -- problems -------------------------------------------------------------------------------
def test_two_statements() -> None:
    p = problem("SELECT 1; SELECT 2")
    assert p.message == "holds 2 statements; a node is one SELECT"


@pytest.mark.parametrize("text", [
    "CREATE TABLE x AS SELECT 1",
    "DROP TABLE x",
    "INSERT INTO t VALUES (1)",
    "DELETE FROM t",
    "UPDATE t SET a = 1",
    "PRAGMA version",
])
def test_ddl_and_dml_are_refused(text: str) -> None:
    assert problem(text).message == (
        "must be a single SELECT statement (DDL and DML are not allowed)")


@pytest.mark.parametrize(("text", "offset", "near"), [
    ("SELEC 1", 0, "SELEC"),
    ("SELECT * FROM a WHERE", 16, "WHERE"),
    ("SELECT * FROM", 9, "FROM"),
    ("SELECT * FROM a\nWHERE x = = 1", 26, "="),
    ("SELECT a,, b FROM t", 9, ","),
])
def test_syntax_error_has_an_offset(text: str, offset: int, near: str) -> None:
    p = problem(text)
    assert p.message == f'syntax error at or near "{near}"'
    assert p.offset == offset
    assert text[offset:].startswith(near)


@pytest.mark.parametrize("text", ["", "   ", "-- only a comment", ";"])
def test_no_statement(text: str) -> None:
    assert problem(text).message == "holds no statement"


@pytest.mark.parametrize("text", ["SELECT 1;", "SELECT 1 ;  ", "SELECT 1;\n-- done\n"])
def test_a_trailing_semicolon_is_fine(text: str) -> None:
    assert info(text).tree == info("SELECT 1").tree


def test_problem_messages_are_one_line() -> None:
    for text in ["SELECT * FROM a WHERE", "SELECT (1", "SELECT 1 +"]:
        assert "\n" not in problem(text).message


# -- batching and the cache -----------------------------------------------------------------
def test_analyze_many_texts_at_once() -> None:
    texts = ["SELECT * FROM a", "SELEC 1", "SELECT * FROM a", "SELECT * FROM b"]
    results = analyze(texts)
    assert set(results) == {"SELECT * FROM a", "SELEC 1", "SELECT * FROM b"}
    assert isinstance(results["SELEC 1"], SqlProblem)
    assert {t.name for t in results["SELECT * FROM b"].tables} == {"b"}  # type: ignore[union-attr]


def test_texts_with_quotes_backslashes_and_unicode_parse_together() -> None:
    """The texts reach DuckDB's parser as SQL literals, in one query for all of them: every
    character a SELECT may hold survives (each text's tree differs from its twin's without
    that character), and each text keeps its own result."""
    twins = {"SELECT 'it''s' AS q FROM a": "SELECT 'its' AS q FROM a",
             "SELECT '\\n' || 'é' AS \"naïve\" FROM b": "SELECT '\\n' || 'e' AS \"naive\" FROM b",
             "SELECT '''' FROM d -- it's": "SELECT '' FROM d"}
    results = analyze([*twins, *twins.values()])
    assert [{t.name for t in results[text].tables} for text in twins] == \
        [{"a"}, {"b"}, {"d"}]  # type: ignore[union-attr]
    for text, twin in twins.items():
        assert results[text].tree != results[twin].tree, text  # type: ignore[union-attr]


def test_a_nul_in_one_text_does_not_break_the_others() -> None:
    """DuckDB 2 parses a NUL inside a quoted name; DuckDB 1.x cannot read one at all: that
    text is then a located problem of its own, and the texts parsed with it are fine."""
    nul, plain = 'SELECT 1 AS "a\x00b" FROM c', "SELECT * FROM a"
    results = analyze([nul, plain])
    assert {t.name for t in results[plain].tables} == {"a"}  # type: ignore[union-attr]
    got = results[nul]
    if isinstance(got, SqlInfo):
        assert {t.name for t in got.tables} == {"c"}
    else:
        assert got.offset is not None and "\n" not in got.message


def test_a_reformatted_statement_reuses_the_parse_without_duckdb() -> None:
    cache = DictCache()
    analyze(["SELECT a FROM t WHERE x > 1"], cache)
    norm = digest_text("normalized:" + normalized("SELECT a FROM t WHERE x > 1"))
    planted = SqlInfo(Digest("planted"), (TableRef("t", 0),))
    cache.items[norm] = planted
    text = "select a\n  -- the filter\n  from t\n  where x>1"
    got = analyze([text], cache)[text]
    assert isinstance(got, SqlInfo) and got.tree == "planted"  # not parsed again
    assert got.tables == (TableRef("t", text.index("t\n  where")),)  # found again in this text
    # a real change is not taken for a reformatting
    other = "SELECT a FROM t WHERE x > 2"
    assert analyze([other], cache)[other].tree != "planted"  # type: ignore[union-attr]


def test_normalized_keeps_what_matters() -> None:
    assert normalized("select a -- x\n from t") == normalized("SELECT a FROM t")
    assert normalized("SELECT Amount FROM t") != normalized("SELECT amount FROM t")
    assert normalized("SELECT 'a  b'") != normalized("SELECT 'a b'")
    assert normalized("SELECT x >= 1") != normalized("SELECT x > = 1")
    assert normalized('SELECT "Select" FROM t') != normalized('SELECT "SELECT" FROM t')


@pytest.mark.parametrize("text,reader", [
    ("SELECT * FROM read_csv('x.csv')", "read_csv"),
    ("SELECT * FROM read_parquet('x/*.parquet') r JOIN a USING (id)", "read_parquet"),
    ("SELECT * FROM a WHERE id IN (SELECT id FROM read_json_auto('j.json'))", "read_json_auto"),
])
def test_table_functions_that_read_files_are_refused(text: str, reader: str) -> None:
    got = analyze([text])[text]
    assert isinstance(got, SqlProblem)
    assert f"reads files directly with {reader}()" in got.message
    assert got.offset == text.index(reader)


def test_other_table_functions_are_fine() -> None:
    text = "SELECT * FROM range(3) r JOIN a USING (range)"
    got = analyze([text])[text]
    assert isinstance(got, SqlInfo) and [t.name for t in got.tables] == ["a"]


class DictCache:
    def __init__(self) -> None:
        self.items: dict[Digest, SqlInfo] = {}
        self.asked: list[list[Digest]] = []

    def get_sql(self, keys: list[Digest]) -> dict[Digest, SqlInfo]:
        self.asked.append(keys)
        return {k: self.items[k] for k in keys if k in self.items}

    def put_sql(self, items: dict[Digest, SqlInfo]) -> None:
        self.items.update(items)


def test_successes_are_cached_and_reused_problems_are_not() -> None:
    cache = DictCache()
    first = analyze(["SELECT * FROM a", "SELEC 1"], cache)
    # only the success, under its text's digest and its normalized form's digest
    key = digest_text("SELECT * FROM a")
    assert set(cache.items) == {key, digest_text("normalized:" + normalized("SELECT * FROM a"))}
    assert set(cache.items.values()) == {first["SELECT * FROM a"]}
    # a cached entry is used as is: nothing is parsed again
    planted = SqlInfo(Digest("planted"), (TableRef("zzz", 0),))
    cache.items[key] = planted
    again = analyze(["SELECT * FROM a"], cache)
    assert again["SELECT * FROM a"] is planted


# -- placeholder_text ---------------------------------------------------------------------
@pytest.mark.parametrize(("template", "expected"), [
    ("SELECT * FROM t WHERE a > ${vars.min}", "SELECT * FROM t WHERE a > __odibi_var_min__"),
    ("SELECT '${vars.cur}' AS c", "SELECT '__odibi_var_cur__' AS c"),
    ("SELECT ${ vars.n } + ${env:HOME}", "SELECT __odibi_var_n__ + __odibi_env_HOME__"),
    ("SELECT '$${vars.x}' AS literal", "SELECT '${vars.x}' AS literal"),
    ("SELECT '${other}' AS kept", "SELECT '${other}' AS kept"),
    ("SELECT 1", "SELECT 1"),
])
def test_placeholder_text(template: str, expected: str) -> None:
    assert placeholder_text(template) == expected


def test_placeholders_keep_the_tree_when_a_value_changes() -> None:
    template = "SELECT * FROM t WHERE amount > ${vars.min_amount}"
    logic = info(placeholder_text(template))
    assert tables(placeholder_text(template)) == {"t"}
    assert logic.tree == info(placeholder_text(template.replace("  ", " "))).tree
    assert logic.tree != info(placeholder_text(template.replace("min_amount", "max"))).tree


def test_error_offsets_count_characters_not_utf8_bytes() -> None:
    from odibi.sql import SqlProblem, analyze

    text = "SELECT 'é€' AS s FROM t WHERE"  # é and € take 2 and 3 bytes in UTF-8
    result = analyze([text])[text]
    assert isinstance(result, SqlProblem), result
    assert result.offset is not None and text[result.offset:] == "WHERE"
    info = analyze(["SELECT 'é€' AS s FROM src"])["SELECT 'é€' AS s FROM src"]
    assert [(t.name, t.offset) for t in info.tables] == [("src", 22)]
