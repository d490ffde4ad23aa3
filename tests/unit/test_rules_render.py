"""The neutral form of rules (`odibi.expr.rows`, `odibi.expr.measurements`) rendered for
DuckDB (`odibi.engines.duckdb_rules`), table-driven: each predicate and each measurement ->
its exact SQL, and the plain Python value it gives, measured through the real DuckDB
session on a real in-memory DuckDB. The values are the contract another engine (the fake
one, Spark) implements; the SQL is what DuckDB ran before the neutral form existed (a rule
set's cost must not move).

Then: a query is one statement (aggregates over one scan; scalar queries over `t` and `p`,
whatever the tables are called), the pure layer holds no SQL, and a build that compiles no
rule does not load the compiler or the neutral form.
"""

from __future__ import annotations

import ast as pyast
import subprocess
import sys
from ast import literal_eval
from pathlib import Path
from typing import Any

import duckdb
import pytest

from odibi.engines.duckdb_engine import DuckDBSession
from odibi.ids import NodeId
from odibi.engines.duckdb_rules import aggregate, predicate, scalar_query, statement
from odibi.expr import measurements as ms
from odibi.expr.measurements import form_of
from odibi.expr.measures import Form, Measure, Query
from odibi.expr.rows import (Abs, And, Between, Binary, Col, Const, In, IsNull, Neg, Not, Op, Or,
                             Row)

EXPR = Path(__file__).resolve().parents[2] / "odibi" / "expr"

# t: (2, 'a') twice; a NULL in k and in v; -3 the only v <= 0
# p: the parent of references: (1, 'a'), a NULL in each column
DATA = """
    CREATE TABLE t (id INTEGER, k VARCHAR, v INTEGER);
    INSERT INTO t VALUES (1, 'a', 10), (2, 'a', -3), (2, 'a', 7), (2, 'b', NULL), (3, NULL, 7),
        (4, 'c', 10);
    CREATE TABLE p (pid INTEGER, k VARCHAR);
    INSERT INTO p VALUES (1, 'a'), (3, NULL), (NULL, 'c');
"""


@pytest.fixture(scope="module")
def session() -> Any:
    con = duckdb.connect()
    con.execute(DATA)
    yield DuckDBSession(con.cursor())
    con.close()


def measure(session: DuckDBSession, what: ms.Measurement, relations: dict[str, str] | None = None
            ) -> Any:
    """`what`, taken alone through the session, over t (and p)."""
    parent = "p" if isinstance(what, (ms.Orphans, ms.OrphanKeys)) else None
    m = Measure("m0", "t", what, "label", form=form_of(what), parent=parent)
    query = Query("t", parent, m.form, (m,))
    return session.measure(query, relations or {"t": "t", "p": "p"})["m0"]


def gt(col: str, value: Any) -> Row:
    return Binary(Op.GT, Col(col), Const(value))


# -- predicates --------------------------------------------------------------------------
# (row expression, its SQL, the rows of t that hold it)
PREDICATES: list[tuple[Row, str, int]] = [
    (Binary(Op.EQ, Col("k"), Const("a")), '("k") = (\'a\')', 3),
    (Binary(Op.NE, Col("k"), Const("a")), '("k") != (\'a\')', 2),  # NULL is not != 'a'
    (Binary(Op.LE, Col("v"), Const(7)), '("v") <= (7)', 3),
    (Binary(Op.GE, Col("v"), Const(7.5)), '("v") >= (7.5)', 2),
    (Binary(Op.LT, Col("k"), Const("it's")), '("k") < (\'it\'\'s\')', 5),
    (Binary(Op.EQ, Binary(Op.MOD, Col("v"), Const(2)), Const(0)), '(("v") % NULLIF((2), 0)) = (0)', 2),
    (Binary(Op.GT, Binary(Op.ADD, Col("v"), Col("id")), Const(10)), '(("v") + ("id")) > (10)', 2),
    (Binary(Op.EQ, Binary(Op.SUB, Col("v"), Binary(Op.MUL, Col("id"), Const(5))), Const(5)),
     '(("v") - (("id") * (5))) = (5)', 1),
    (Binary(Op.EQ, Binary(Op.DIV, Col("v"), Const(2)), Const(3.5)), '(("v") / NULLIF((2), 0)) = (3.5)', 2),
    # a zero divisor gives NULL (DuckDB 2 alone would say inf, and fail on an integer % 0)
    (Binary(Op.GT, Binary(Op.DIV, Col("v"), Binary(Op.SUB, Col("id"), Const(2))), Const(0)),
     '(("v") / NULLIF((("id") - (2)), 0)) > (0)', 2),
    (Binary(Op.EQ, Binary(Op.MOD, Col("v"), Binary(Op.SUB, Col("id"), Const(2))), Const(0)),
     '(("v") % NULLIF((("id") - (2)), 0)) = (0)', 3),
    (Not(gt("v", 0)), 'NOT (("v") > (0))', 1),  # NULL is not false
    (Binary(Op.LT, Neg(Col("v")), Const(0)), '(-("v")) < (0)', 4),
    (Binary(Op.GT, Abs(Col("v")), Const(5)), '(abs("v")) > (5)', 4),
    (And((gt("v", 0), Binary(Op.EQ, Col("k"), Const("a")))),
     '(("v") > (0)) AND (("k") = (\'a\'))', 2),
    (Or((IsNull(Col("k"), False), IsNull(Col("v"), False), gt("id", 3))),
     '(("k") IS NULL) OR (("v") IS NULL) OR (("id") > (3))', 3),
    (Between(Col("v"), Const(0), Const(9)), '("v") BETWEEN (0) AND (9)', 2),
    (IsNull(Col("k"), True), '("k") IS NOT NULL', 5),
    (In(Col("k"), ("a", "c"), False), '("k") IN (\'a\', \'c\')', 4),
    (In(Col("k"), ("a", "c"), True), '("k") NOT IN (\'a\', \'c\')', 1),
    (In(Col("k"), ("a", None), True), '("k") NOT IN (\'a\', NULL)', 0),  # SQL's NOT IN
    (In(Col("v"), (10, -3, 1.5), False), '("v") IN (10, -3, 1.5)', 3),
    (Binary(Op.EQ, IsNull(Col("k"), False), Const(True)), '(("k") IS NULL) = (true)', 1),
    (IsNull(Const(None), False), '(NULL) IS NULL', 6),
    (Binary(Op.EQ, Col('we"ird'), Const(1)), '("we""ird") = (1)', -1),  # (rendered only)
]


@pytest.mark.parametrize(("row", "sql", "holds"), PREDICATES,
                         ids=[p[1] for p in PREDICATES])
def test_predicate(session: DuckDBSession, row: Row, sql: str, holds: int) -> None:
    assert predicate(row) == sql
    if holds >= 0:
        assert measure(session, ms.CountWhere(row)) == holds


# -- measurements ------------------------------------------------------------------------
NOT_POSITIVE = Not(gt("v", 0))
# (measurement, its SQL (an aggregate over t, or a scalar query over t and p), its value)
MEASUREMENTS: list[tuple[ms.Measurement, str, Any]] = [
    (ms.RowCount(), "count(*)", 6),
    (ms.CountWhere(NOT_POSITIVE), 'count(*) FILTER (WHERE NOT (("v") > (0)))', 1),
    (ms.Aggregate(ms.Agg.MIN, "v"), 'min("v")', -3),
    (ms.Aggregate(ms.Agg.MAX, "k"), 'max("k")', "c"),
    (ms.Aggregate(ms.Agg.SUM, "v"), 'sum("v")', 31),
    (ms.Aggregate(ms.Agg.AVG, "v"), 'avg("v")', 6.2),
    (ms.NullCount(("k",)), 'count(*) FILTER (WHERE "k" IS NULL)', 1),
    (ms.NullCount(("k", "v")), 'count(*) FILTER (WHERE "k" IS NULL OR "v" IS NULL)', 2),
    (ms.DistinctCount("v"), 'count(DISTINCT "v")', 3),
    # one column: the NULL key is none (k: a a a b NULL c -> 2 duplicate rows)
    (ms.Duplicates(("k",)), 'count("k") - count(DISTINCT "k")', 2),
    (ms.Duplicates(("id", "k")), 'count(*) - count(DISTINCT ("id", "k"))', 1),
    (ms.Outside("k", ("a", "b")), 'count(*) FILTER (WHERE "k" IS NOT NULL AND "k" NOT IN '
                                  "('a', 'b'))", 1),
    (ms.Outside("k", ()), 'count(*) FILTER (WHERE "k" IS NOT NULL)', 5),
    (ms.Outside("k", ("a", None)), 'count(*) FILTER (WHERE "k" IS NOT NULL AND "k" NOT IN '
                                   "('a', NULL))", 0),
    # references: t's ids 2, 2, 2, 4 are no pid (3 is, a NULL pid matches nothing)
    (ms.Orphans(("id",), ("pid",)),
     'SELECT count(*) FROM t AS _odibi_child WHERE _odibi_child."id" IS NOT NULL AND NOT '
     'EXISTS (SELECT 1 FROM p AS _odibi_parent WHERE _odibi_parent."pid" = _odibi_child."id")',
     4),
    # a key with a NULL is not checked: (3, NULL) is no orphan, (1, 'a') has a parent
    (ms.Orphans(("id", "k"), ("pid", "k")),
     'SELECT count(*) FROM t AS _odibi_child WHERE _odibi_child."id" IS NOT NULL AND '
     '_odibi_child."k" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM p AS _odibi_parent WHERE '
     '_odibi_parent."pid" = _odibi_child."id" AND _odibi_parent."k" = _odibi_child."k")', 4),
    (ms.OutsideValues("k", ("a",)),
     'SELECT list(v ORDER BY v) FROM (SELECT DISTINCT "k" AS v FROM t WHERE "k" IS NOT NULL '
     "AND \"k\" NOT IN ('a') ORDER BY 1 LIMIT 5)", ["b", "c"]),
    (ms.RepeatedKeys(("k",)),
     'SELECT list(r ORDER BY r.n DESC, r.k) FROM (SELECT "k" AS k, count(*) AS n FROM t WHERE '
     '"k" IS NOT NULL GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC, k LIMIT 5) AS r',
     [{"k": "a", "n": 3}]),
    (ms.RepeatedKeys(("id", "v")),
     'SELECT list(r ORDER BY r.n DESC, r.k) FROM (SELECT row("id", "v") AS k, count(*) AS n '
     "FROM t GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC, k LIMIT 5) AS r", None),
    (ms.RepeatedKeys(("id",)),
     'SELECT list(r ORDER BY r.n DESC, r.k) FROM (SELECT "id" AS k, count(*) AS n FROM t '
     'WHERE "id" IS NOT NULL GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC, k LIMIT 5) AS r',
     [{"k": 2, "n": 3}]),
    (ms.NullCounts(("k", "v", "id")),
     'SELECT [count(*) FILTER (WHERE "k" IS NULL), count(*) FILTER (WHERE "v" IS NULL), '
     'count(*) FILTER (WHERE "id" IS NULL)] FROM t', [1, 1, 0]),
    (ms.NullRows(("k", "v")),
     "SELECT list(_odibi_row ORDER BY _odibi_row) FROM (SELECT * FROM t WHERE \"k\" IS NULL OR "
     '"v" IS NULL ORDER BY ALL LIMIT 5) AS _odibi_row',
     [{"id": 2, "k": "b", "v": None}, {"id": 3, "k": None, "v": 7}]),
    (ms.RowsWhere(("v", "k"), Not(gt("v", 9))),
     "SELECT list(r ORDER BY r) FROM (SELECT DISTINCT {'v': \"v\", 'k': \"k\"} AS r FROM t "
     'WHERE NOT (("v") > (9)) ORDER BY 1 LIMIT 5)',
     [{"v": -3, "k": "a"}, {"v": 7, "k": "a"}, {"v": 7, "k": None}]),
    (ms.OrphanKeys(("id",), ("pid",)),
     'SELECT list(k ORDER BY k) FROM (SELECT DISTINCT _odibi_child."id" AS k FROM t AS '
     '_odibi_child WHERE _odibi_child."id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM p AS '
     '_odibi_parent WHERE _odibi_parent."pid" = _odibi_child."id") ORDER BY 1 LIMIT 5)',
     [2, 4]),
    (ms.OrphanKeys(("id", "k"), ("pid", "k")),
     'SELECT list(k ORDER BY k) FROM (SELECT DISTINCT row(_odibi_child."id", _odibi_child."k") '
     'AS k FROM t AS _odibi_child WHERE _odibi_child."id" IS NOT NULL AND _odibi_child."k" IS '
     'NOT NULL AND NOT EXISTS (SELECT 1 FROM p AS _odibi_parent WHERE _odibi_parent."pid" = '
     '_odibi_child."id" AND _odibi_parent."k" = _odibi_child."k") ORDER BY 1 LIMIT 5)',
     [(2, "a"), (2, "b"), (4, "c")]),
]


@pytest.mark.parametrize(("what", "sql", "value"), MEASUREMENTS,
                         ids=[f"{type(m[0]).__name__}: {m[1][:60]}" for m in MEASUREMENTS])
def test_measurement(session: DuckDBSession, what: ms.Measurement, sql: str, value: Any) -> None:
    rendered = aggregate(what) if form_of(what) is Form.AGGREGATE else scalar_query(what)
    assert rendered == sql
    got = measure(session, what)
    assert (type(got), got) == (type(value), value)


ROW_KINDS = set(Row.__args__)  # type: ignore[attr-defined]


def walk(x: Row) -> list[Row]:
    """`x` and the row expressions inside it."""
    out = [x]
    for name in x.__slots__:
        value = getattr(x, name)
        for item in value if isinstance(value, tuple) else (value,):
            if type(item) in ROW_KINDS:
                out += walk(item)
    return out


def test_every_kind_of_the_neutral_form_has_a_case() -> None:
    assert {type(m[0]) for m in MEASUREMENTS} == \
        set(ms.Measurement.__args__)  # type: ignore[attr-defined]
    rows = [x for row, _, _ in PREDICATES for x in walk(row)]
    assert {type(x) for x in rows} == ROW_KINDS
    assert {x.op for x in rows if isinstance(x, Binary)} == set(Op)


# -- statements ----------------------------------------------------------------------------
def test_aggregates_of_a_dataset_are_one_statement_over_one_scan(session) -> None:
    measures = tuple(Measure(f"m{i}", "orders", what, "label", form=Form.AGGREGATE)
                     for i, what in enumerate([ms.RowCount(), ms.Aggregate(ms.Agg.MAX, "v"),
                                               ms.NullCount(("k",))]))
    query = Query("orders", None, Form.AGGREGATE, measures)
    assert statement(query, {"orders": 'main."t"'}.__getitem__) == (
        'SELECT count(*) AS "m0", max("v") AS "m1", count(*) FILTER (WHERE "k" IS NULL) AS "m2" '
        'FROM main."t" AS t')
    assert session.measure(query, {"orders": NodeId("t")}) == {"m0": 6, "m1": 10, "m2": 1}


def test_queries_read_t_and_p_whatever_the_tables_are_called(session) -> None:
    """The child read from a table called `p` and the parent from one called `t`: each is
    read under a name of its own first, so the aliases do not capture them."""
    orphans = Measure("m0", "child", ms.Orphans(("pid",), ("id",)), "label", form=Form.QUERY,
                      parent="parent")
    keys = Measure("m1", "child", ms.OrphanKeys(("pid",), ("id",)), "label", form=Form.QUERY,
                   parent="parent")
    query = Query("child", "parent", Form.QUERY, (orphans, keys))
    relations = {"child": "p", "parent": "t"}  # p's pids: 1 and 3 are t's ids, NULL unchecked
    assert statement(query, relations.__getitem__).startswith(
        'WITH "odibi__0" AS (SELECT * FROM p), "odibi__1" AS (SELECT * FROM t), '
        '"t" AS (SELECT * FROM "odibi__0"), "p" AS (SELECT * FROM "odibi__1") SELECT (SELECT '
        'count(*) FROM t AS _odibi_child')
    assert session.measure(query, relations) == {"m0": 0, "m1": None}
    session.cur.execute("INSERT INTO p VALUES (9, 'z')")
    try:
        assert session.measure(query, relations) == {"m0": 1, "m1": [9]}
    finally:
        session.cur.execute("DELETE FROM p WHERE pid = 9")


# -- the pure layer ------------------------------------------------------------------------
SQL_TEXT = ("FILTER", "SELECT ", "list(", "count(*)", "ORDER BY", "LIMIT ", "row(", " AS t")


@pytest.mark.parametrize("path", sorted(EXPR.glob("*.py")), ids=lambda p: p.name)
def test_the_rule_language_writes_no_sql(path: Path) -> None:
    """odibi/expr is pure and dialect-free: no text of it is SQL (strings, f-strings and
    docstrings alike); SQL is the engines' business."""
    tree = pyast.parse(path.read_text())
    texts = [n.value for n in pyast.walk(tree)
             if isinstance(n, pyast.Constant) and isinstance(n.value, str)]
    found = [(t, s) for t in texts for s in SQL_TEXT if s in t]
    assert found == []


def test_the_compiler_and_the_neutral_form_load_only_when_rules_are_compiled() -> None:
    """What a no-op build imports of the rules (a cached project compiles none): the
    compiler and the classes of the neutral form (0.3 ms each) stay unloaded."""
    code = ("import sys, odibi.expr.check, odibi.rulesets, odibi.rules, odibi.jobs; "
            "print(sorted(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(literal_eval(out))
    assert "odibi.expr.verdict" in loaded  # (what is imported is imported)
    assert loaded & {"odibi.expr.compiler", "odibi.expr.measurements", "odibi.expr.rows",
                     "odibi.engines.duckdb_rules"} == set()
