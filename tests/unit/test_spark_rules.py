"""Rules on Spark (`odibi.engines.spark_rules`): the same data in a real DuckDB and a real
local Spark, measured with each engine's renderer, gives the same plain Python values
(types included: ints, floats, Decimals, dates, dicts, tuples, NULL order, example order
and limit), and so the same verdicts and failure messages.

The corpus: every measurement and row construct of the DuckDB renderer's table test
(`test_rules_render`), the rule sets of the rule language's tests (`test_expr`,
`test_memory_engine`) through the real `run_rules`, a table of awkward values (more than
EXAMPLES offenders, ties, NULLs, decimals, dates, text holding numbers, NaN, a divisor of
zero, a BIGINT sum past 2**63), and random tables with random rule sets (hypothesis).
One local Spark session serves the whole module.
"""

from __future__ import annotations

import math
import subprocess
import sys
from ast import literal_eval
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from odibi.engines.duckdb_engine import DuckDBSession
from odibi.engines.spark_rules import order, q, statement, values
from odibi.expr import measurements as ms
from odibi.expr.check import Scope, compile_rules
from odibi.expr.measurements import form_of
from odibi.expr.measures import EXAMPLES, Form, Measure, Query
from odibi.expr.parse import parse_rule
from odibi.expr.rows import Binary, Col, Const, In, Op
from odibi.ids import NodeId
from odibi.rules import run_rules
from tests.unit import test_expr, test_memory_engine, test_rules_render

pytest.importorskip("pyspark")  # (installed with the spark extra; the suite installs it)


@pytest.fixture(scope="session")
def spark() -> Any:
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("odibi-test-spark-rules")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               # tiny tables: compiling whole stages and re-planning cost more than they
               # save (the results are Spark's either way)
               .config("spark.sql.codegen.wholeStage", "false")
               .config("spark.sql.adaptive.enabled", "false")
               .config("spark.driver.memory", "512m").getOrCreate())
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()


# -- the same tables on both engines ----------------------------------------------------------
_SPARK_TYPES = {"INTEGER": "int", "BIGINT": "bigint", "SMALLINT": "smallint", "VARCHAR": "string",
                "DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean", "DATE": "date"}


def spark_type(duck: str) -> str:
    return duck.lower() if duck.startswith("DECIMAL") else _SPARK_TYPES[duck]


class Engines:
    """One DuckDB connection and the module's Spark session holding the same tables (made
    in DuckDB, copied to Spark temp views); each measures with its own renderer."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.con = duckdb.connect()
        self.duck = Recording(DuckDBSession(self.con.cursor()))
        self.sparks = Recording(SparkRules(spark))

    def load(self, sql: str) -> None:
        """Run DuckDB SQL that creates tables, then copy every table to Spark."""
        self.con.execute(sql)
        for (name,) in self.con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
            self.copy(name)

    def copy(self, name: str) -> None:
        cols = self.con.execute(f"DESCRIBE {q_duck(name)}").fetchall()
        schema = ", ".join(f"{q(c[0])} {spark_type(c[1])}" for c in cols)
        rows = self.con.execute(f"SELECT * FROM {q_duck(name)}").fetchall()
        self.spark.createDataFrame(rows, schema).createOrReplaceTempView(name)

    def close(self) -> None:
        self.con.close()
        for name in self.spark.catalog.listTables():
            self.spark.catalog.dropTempView(name.name)


def q_duck(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SparkRules:
    """What the Spark engine's session does for rules: `statement`, run, `values`."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def columns(self, relation: str) -> dict[str, str]:
        return dict(self.spark.table(q(relation)).dtypes)

    def is_text(self, column_type: str) -> bool:
        return column_type == "string"

    def measure(self, query: Query, relations: Mapping[str, str]) -> dict[str, Any]:
        rows = self.spark.sql(statement(query, lambda ds: q(relations[ds]))).collect()
        return values(query, rows[0] if rows else None)


class Recording:
    """A session that keeps every {key: value} it measured, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.measured: list[dict[str, Any]] = []

    def measure(self, query: Query, relations: Mapping[str, Any]) -> dict[str, Any]:
        got = self.inner.measure(query, relations)
        self.measured.append(got)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def typed(v: Any) -> Any:
    """A value with the type of every part spelled out (1 == 1.0 == True in Python), NaN
    made comparable."""
    if isinstance(v, dict):
        return ("dict", [(k, typed(x)) for k, x in v.items()])
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [typed(x) for x in v])
    if isinstance(v, float) and math.isnan(v):
        return ("float", "nan")
    return (type(v).__name__, v)


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    assert {k: typed(v) for k, v in b.items()} == {k: typed(v) for k, v in a.items()}


@pytest.fixture
def engines(spark: Any) -> Any:
    e = Engines(spark)
    yield e
    e.close()


# -- every measurement and every row construct --------------------------------------------------
def _neutral_corpus() -> list[ms.Measurement]:
    out = [what for what, _, _ in test_rules_render.MEASUREMENTS]
    out += [ms.CountWhere(row) for row, _, holds in test_rules_render.PREDICATES if holds >= 0]
    return out


def measure_all(engines: Engines, whats: list[ms.Measurement], dataset: str = "t",
                parent: str = "p") -> tuple[dict[str, Any], dict[str, Any]]:
    """Every measurement of `whats` over `dataset` (and `parent`) on both engines: the
    aggregates in one statement, the queries in another, as rule sets take them."""
    got: list[dict[str, Any]] = [{}, {}]
    for form in Form:
        measures = tuple(Measure(f"m{i}", dataset, w, "label", form=form,
                                 parent=parent if isinstance(w, (ms.Orphans, ms.OrphanKeys))
                                 else None)
                         for i, w in enumerate(whats) if form_of(w) is form)
        if not measures:
            continue
        reads_parent = any(m.parent for m in measures)
        query = Query(dataset, parent if reads_parent else None, form, measures)
        relations = {dataset: NodeId(dataset), parent: NodeId(parent)}
        got[0].update(engines.duck.measure(query, relations))
        got[1].update(engines.sparks.measure(query, {dataset: dataset, parent: parent}))
    return got[0], got[1]


def test_every_measurement_and_row_construct_gives_duckdbs_value(engines: Engines) -> None:
    engines.load(test_rules_render.DATA)
    duck, spark = measure_all(engines, _neutral_corpus())
    assert len(duck) == len(_neutral_corpus())
    same(duck, spark)
    # (and DuckDB's are the values its table test promises)
    assert [duck[f"m{i}"] for i in range(len(test_rules_render.MEASUREMENTS))] == \
        [value for _, _, value in test_rules_render.MEASUREMENTS]


def test_an_empty_table_gives_duckdbs_values(engines: Engines) -> None:
    engines.load(test_rules_render.DATA + "DELETE FROM t; DELETE FROM p;")
    duck, spark = measure_all(engines, _neutral_corpus())
    same(duck, spark)
    assert duck["m0"] == 0 and duck["m2"] is None  # row_count, min(v)


# -- awkward values ---------------------------------------------------------------------------
# w: 8 negative values (more than EXAMPLES offenders), ties, NULLs in every column; amount
# DECIMAL(10,2); d dates; s text that holds numbers; x doubles with a NaN and a -0.0; big
# BIGINTs whose sum is past 2**63 (DuckDB sums into a HUGEINT); a name with a backtick
# and a quote
AWKWARD = """
    CREATE TABLE w (id INTEGER, k VARCHAR, v INTEGER, amount DECIMAL(10, 2), d DATE, s VARCHAR,
                    x DOUBLE, big BIGINT, ok BOOLEAN, "we`i'rd" INTEGER);
    INSERT INTO w VALUES
        (1, 'b', -1, 1.10, '2024-01-03', '1', 0.5, 9000000000000000000, true, 1),
        (2, 'a', -2, 2.25, '2024-01-01', '2', -0.0, 9000000000000000000, false, 2),
        (2, 'a', -2, 2.25, '2024-01-01', '2', 'NaN', 1, NULL, 2),
        (3, NULL, -3, NULL, NULL, '10', 1e300, NULL, true, NULL),
        (4, 'it''s', -4, -0.50, '2023-12-31', NULL, NULL, 5, true, 4),
        (5, 'a\\b', -5, 100.00, '2024-02-29', '3', 2.5, 7, false, 5),
        (NULL, 'é', -6, 0.01, '2024-01-02', '4', 3.5, 8, true, 6),
        (7, 'Z', -7, 0.01, '2024-01-02', '5', -1.5, 9, true, 7),
        (7, '', NULL, 3.00, '2024-01-05', '6', 0.0, 10, NULL, 8),
        (8, 'a', 0, 3.00, '2024-01-05', '7', 1.0, 11, false, 9);
    CREATE TABLE pw (pid INTEGER, k VARCHAR, d DATE);
    INSERT INTO pw VALUES (1, 'b', '2024-01-03'), (2, 'a', NULL), (NULL, 'Z', '2024-01-02');
"""
AWKWARD_RULES = [
    "row_count > 100", "not_null(id, k, v)", "not_null(amount, d, s, x, ok)",
    "unique(id)", "unique(k)", "unique(amount)", "unique(d)", "unique(id, k)", "unique(k, ok)",
    "accepted_values(k, ['a', 'b'])", "accepted_values(v, [0])", "accepted_values(d, ['2024-01-01'])",
    "accepted_values(amount, [1.1, 2.25])", "accepted_values(s, [1, 2])",
    "all(v >= 0)", "all(v > -3 or k is null)", "all(amount > 0 and v >= 0)", "all(amount > 0)", "all(amount * 2 < 5)",
    "all(d >= '2024-01-01')", "all(d between '2024-01-01' and '2024-01-31')",
    "all(s = 1 or s = 2)", "all(s in [1, 2, 3])", "all(k < 'b')", "all(k != 'it''s')",
    "all(k not in ['a\\b', 'é'])", "all(x > 0)", "all(-x < 1)", "all(abs(x) <= 2.5)",
    "all(x / 2 < 1)", "all(v / (id - 2) > -1)", "all(v % (id - 2) = 0)", "all(id % 3 != 0)",
    "all(ok)", "all(not ok or id > 2)", "all(\"we`i'rd\" < 5)", "all(big > 100)",
    "references(id, pw.pid)", "references(k, pw.k)", "references((id, k), (pw.pid, pw.k))",
    "references(d, pw.d)",
    "sum(v) > 0", "sum(amount) > 1000", "sum(big) < 0", "sum(x) > 0", "sum(\"we`i'rd\") > 100",
    "avg(v) > 0", "avg(amount) > 100", "avg(big) < 0", "avg(x) < 0",
    "min(amount) > 0", "max(amount) < 10", "max(d) is null",
    "min(x) > 0", "max(ok) is null",
    "null_count(k) == 0", "distinct_count(k) > 10", "distinct_count(d) > 10",
    "row_count(pw) < 2", "has_columns(id, nope)",
    # and some that hold
    "row_count == 10", "all(id > 0 or id is null)", "accepted_values(ok, [true, false])",
    "references(k, k)", "sum(v) < 0", "max(amount) == 100", "unique(id, v, d, s)",
]
AWKWARD_SCOPE = Scope({"w": "w", "pw": "pw"}, "w")


def verdicts(session: Any, scope: Scope, rules: list[str], tables: Mapping[str, Any]
             ) -> list[tuple[bool, str]]:
    """The rules evaluated as a pipeline's rule set is: `run_rules`, first pass (one query
    per dataset and kind), then the examples of what broke."""
    plan = compile_rules([(rule, parse_rule(rule)) for rule in rules], scope)
    return [(r.ok, r.describe()) for r in run_rules(session, plan, tables)]


def both(engines: Engines, scope: Scope, rules: list[str], names: list[str]
         ) -> list[tuple[bool, str]]:
    """The verdicts on DuckDB, checked equal to Spark's, and every value measured too."""
    duck = verdicts(engines.duck, scope, rules, {n: NodeId(n) for n in names})
    spark = verdicts(engines.sparks, scope, rules, {n: n for n in names})
    assert len(engines.duck.measured) == len(engines.sparks.measured)
    for a, b in zip(engines.duck.measured, engines.sparks.measured):
        same(a, b)
    assert spark == duck
    return duck


def test_awkward_values_give_duckdbs_values_verdicts_and_messages(engines: Engines) -> None:
    engines.load(AWKWARD)
    got = both(engines, AWKWARD_SCOPE, AWKWARD_RULES, ["w", "pw"])
    failed = [text for ok, text in got if not ok]
    assert len(failed) >= 40 and sum(ok for ok, _ in got) >= 5
    # what the messages show, as DuckDB shows it: examples cut at EXAMPLES, sorted, NULL
    # last; ties in repeated keys by key; a sum past 2**63 exact
    assert "all(v >= 0) failed on w: rows where it is false = 8, e.g. {v: -7}, {v: -6}, " \
        "{v: -5}, {v: -4}, {v: -3}" in failed
    assert "all(amount > 0 and v >= 0) failed on w: rows where it is false = 8, e.g. " \
        "{amount: -0.50, v: -4}, {amount: 0.01, v: -7}, {amount: 0.01, v: -6}, " \
        "{amount: 1.10, v: -1}, {amount: 2.25, v: -2}" in failed  # (not the NULL amount)
    assert "unique(amount) failed on w: duplicate rows = 3, e.g. 0.01 (x2), 2.25 (x2), " \
        "3.00 (x2)" in failed
    assert "sum(big) < 0 failed on w: sum(big) = 18000000000000000051" in failed
    assert any(t.startswith("not_null(id, k, v) failed on w: rows with nulls = 3 (id: 1 null, "
                            "k: 1 null, v: 1 null), e.g. {id: 3, k: null}") for t in failed)


def test_a_divisor_of_zero_gives_null_and_nothing_raises(engines: Engines) -> None:
    """ANSI Spark raises on x / 0 and x % 0; the rule language says NULL (a row where it
    is NULL holds neither `all(...)` nor its negation)."""
    engines.load(AWKWARD)
    by_id_less_2 = [Binary(op, Col("v"), Binary(Op.SUB, Col("id"), Const(2)))
                    for op in (Op.DIV, Op.MOD)]
    by_zero = [Binary(op, Col("v"), Const(0)) for op in (Op.DIV, Op.MOD)]
    whats = [ms.CountWhere(Binary(Op.GT, e, Const(-10))) for e in by_id_less_2]
    whats += [ms.CountWhere(In(e, (0,), True)) for e in by_zero]
    duck, spark = measure_all(engines, whats, "w", "pw")
    same(duck, spark)
    # the rows of id 2 (twice), of a NULL id and of a NULL v are NULL: not counted
    assert duck == {"m0": 6, "m1": 6, "m2": 0, "m3": 0}


# -- the rule sets of the other tests --------------------------------------------------------
def test_the_rule_languages_evaluated_rules_give_the_same_messages(engines: Engines) -> None:
    engines.load(test_expr.ORDERS)
    texts = [r[1] for r in test_expr.EVALUATED if "column_type" not in r[1]]
    scopes = {"orders": test_expr.EVAL_SCOPE, "raw_orders": test_expr.EMPTY_SCOPE}
    names = ["orders", "raw_orders", "customers"]
    got = []
    for default, scope in scopes.items():
        mine = [r[1] for r in test_expr.EVALUATED if r[0] == default and r[1] in texts]
        got += both(engines, scope, mine, names)
    expected = {r[4] for r in test_expr.EVALUATED if r[4] and "column_type" not in r[1]}
    assert expected <= {text for _, text in got}


def test_the_fake_engines_rule_set_gives_the_same_messages(engines: Engines) -> None:
    engines.load(f"CREATE TABLE t AS {test_memory_engine.T_SQL}; "
                 f"CREATE TABLE p AS {test_memory_engine.P_SQL};")
    got = both(engines, Scope({"t": "t", "p": "p"}), test_memory_engine.SAME_RULES, ["t", "p"])
    assert sum(not ok for ok, _ in got) >= 15


# -- random tables, random rule sets --------------------------------------------------------
TEMPLATES = [
    "row_count > 3", "not_null(id, k)", "not_null(amount, d)", "unique(id)", "unique(k, v)",
    "unique(id, k, d)", "accepted_values(k, ['a', 'b'])", "accepted_values(v, [0, 1, 2])",
    "all(v > 0)", "all(v / (id - 2) > 0)", "all(v % (id - 3) = 0)", "all(amount between 0 and 5)",
    "all(abs(v) <= 3 or k is null)", "all(d >= '2024-01-02')", "all(x * 2 < 3)", "all(-x < 1)",
    "all(k not in ['a', null])", "all(s = 1 or s is null)", "all(k < 'b' and v != 1)",
    "references(id, p.pid)", "references((id, k), (p.pid, p.k))", "references(k, p.k)",
    "sum(v) > 0", "sum(amount) < 10", "avg(amount) > 1", "avg(v) < 0", "min(amount) >= 0",
    "max(d) is null", "null_count(v) == 0", "distinct_count(k) >= 5",
    "sum(x) > 0", "avg(x) < 1",
]
_T = ("id INTEGER", "k VARCHAR", "v INTEGER", "amount DECIMAL(6, 2)", "d DATE", "s VARCHAR",
      "x DOUBLE")
_VALUES = (
    st.integers(0, 6), st.sampled_from(["a", "b", "c", "B", "é", "it's", ""]),
    st.integers(-3, 3), st.sampled_from([Decimal("0.10"), Decimal("1.50"), Decimal("-2.00"),
                                         Decimal("9.99"), Decimal("1.5")]),
    st.sampled_from([date(2024, 1, d) for d in (1, 2, 3, 9)]),
    st.sampled_from(["1", "2", "30"]), st.sampled_from([0.5, -1.25, 2.0, 1e9, -0.0]),
)
rows_of = st.lists(st.tuples(*(st.one_of(st.none(), v) for v in _VALUES)), max_size=12)
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)  # (each example runs Spark)
parents = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 6)),
                             st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))), max_size=5)


@settings(max_examples=6, deadline=None, derandomize=True, phases=NO_SHRINKING,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(t=rows_of, p=parents, rules=st.lists(st.sampled_from(TEMPLATES), min_size=3,
                                            max_size=8, unique=True))
def test_random_tables_and_rule_sets_give_duckdbs_values(spark: Any, t: list[tuple[Any, ...]],
                                                         p: list[tuple[Any, ...]],
                                                         rules: list[str]) -> None:
    engines = Engines(spark)
    try:
        engines.con.execute(f"CREATE TABLE t ({', '.join(_T)})")
        if t:
            engines.con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(_T))})", t)
        engines.con.execute("CREATE TABLE p (pid INTEGER, k VARCHAR)")
        if p:
            engines.con.executemany("INSERT INTO p VALUES (?, ?)", p)
        engines.copy("t")
        engines.copy("p")
        got = both(engines, Scope({"t": "t", "p": "p"}, "t"), rules, ["t", "p"])
        assert len(got) == len(rules)
    finally:
        engines.close()


# -- the statement itself --------------------------------------------------------------------
def test_a_query_is_one_statement_reading_t_and_p_under_names_of_their_own() -> None:
    orphans = Measure("m0", "child", ms.Orphans(("pid",), ("id",)), "label", form=Form.QUERY,
                      parent="parent")
    keys = Measure("m1", "child", ms.OrphanKeys(("pid", "k"), ("id", "k")), "label",
                   form=Form.QUERY, parent="parent")
    query = Query("child", "parent", Form.QUERY, (orphans, keys))
    sql = statement(query, {"child": "p", "parent": "parquet.`/w/t`"}.__getitem__)
    assert sql == (
        "WITH `odibi__0` AS (SELECT * FROM p), `odibi__1` AS (SELECT * FROM parquet.`/w/t`), "
        "`t` AS (SELECT * FROM `odibi__0`), `p` AS (SELECT * FROM `odibi__1`) SELECT (SELECT "
        "count(*) FROM t AS _odibi_child WHERE _odibi_child.`pid` IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM p AS _odibi_parent WHERE _odibi_parent.`id` = _odibi_child.`pid`)) AS "
        "`m0`, (SELECT collect_list(struct(_odibi_k0, _odibi_k1)) FROM (SELECT DISTINCT "
        "_odibi_child.`pid` AS _odibi_k0, _odibi_child.`k` AS _odibi_k1 FROM t AS _odibi_child "
        "WHERE _odibi_child.`pid` IS NOT NULL AND _odibi_child.`k` IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM p AS _odibi_parent WHERE _odibi_parent.`id` = _odibi_child.`pid` AND "
        "_odibi_parent.`k` = _odibi_child.`k`) ORDER BY _odibi_k0 ASC NULLS LAST, _odibi_k1 ASC "
        f"NULLS LAST LIMIT {EXAMPLES})) AS `m1`")


def test_examples_sort_as_duckdb_sorts_them() -> None:
    items = [None, 3.0, float("nan"), -1.0, {"a": None, "b": 1}, {"a": 1, "b": None}]
    assert sorted(items[:4], key=order)[:3] == [-1.0, 3.0, items[2]]
    assert sorted(items[4:], key=order) == [{"a": 1, "b": None}, {"a": None, "b": 1}]
    assert sorted([(1, None), (None, 1), (1, 2)], key=order) == [(1, 2), (1, None), (None, 1)]


def test_rendering_rules_imports_no_pyspark() -> None:
    code = ("import sys, odibi.engines.spark_rules; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert literal_eval(out) == []
