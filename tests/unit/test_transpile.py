"""DuckDB SQL translated to Spark SQL (odibi/dialects.py): statements of the kind real
projects write must translate AND give on Spark the rows they give on DuckDB (compared as
multisets, column names included); statements Spark would not run, or would run
differently, are refused with a located message. One local[1] SparkSession for the module.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odibi.dialects import TranspileError, spark_functions, transpile, transpile_all, \
    transpile_key
from odibi.ids import Digest

TABLES = {
    "orders": """
        SELECT * FROM (VALUES
          (1, 10, 120.50::DECIMAL(10,2), 'shipped', DATE '2024-01-03', TIMESTAMP '2024-01-03 10:15:00', 'a,b', 2.5::DOUBLE),
          (2, 10, 80.00::DECIMAL(10,2), 'open', DATE '2024-01-17', TIMESTAMP '2024-01-17 23:59:59', 'c', 3.5::DOUBLE),
          (3, 11, NULL, 'open', DATE '2024-02-01', TIMESTAMP '2024-02-01 00:00:00', NULL, -2.5::DOUBLE),
          (4, 12, 15.25::DECIMAL(10,2), 'cancelled', DATE '2024-02-29', TIMESTAMP '2024-02-29 12:00:00', 'x,y,z', 0.7::DOUBLE),
          (5, 11, 300.00::DECIMAL(10,2), 'shipped', DATE '2024-03-10', TIMESTAMP '2024-03-10 08:30:00', '', NULL),
          (6, 13, 42.00::DECIMAL(10,2), 'Shipped', DATE '2023-12-31', TIMESTAMP '2023-12-31 23:00:00', 'a', -1.5::DOUBLE),
          (7, NULL, 9.99::DECIMAL(10,2), 'open', NULL, NULL, 'b,a', 10.5::DOUBLE)
        ) t(order_id, customer_id, amount, status, order_date, ts, tags, score)""",
    "customers": """
        SELECT * FROM (VALUES
          (10, '  Ada Lovelace ', 'UK', DATE '2023-06-01'),
          (11, 'grace hopper', 'US', DATE '2023-11-15'),
          (12, 'Édith', 'FR', NULL),
          (14, 'Nobody', NULL, DATE '2024-01-01')
        ) t(id, name, country, signup)""",
}

# DuckDB statements of the kind projects write; each must run on Spark with equal results
PORTABLE = {
    "join": "SELECT o.order_id, c.name FROM orders o JOIN customers c ON o.customer_id = c.id",
    "left_join_using": """SELECT o.order_id, c.country FROM orders o
        LEFT JOIN customers c ON c.id = o.customer_id""",
    "anti_join": """SELECT c.id FROM customers c
        WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)""",
    "semi_join_in": "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders)",
    "group_by_having": """SELECT customer_id, count(*) AS n, sum(amount) AS total,
        avg(amount) AS mean, min(order_date) AS first_day, max(amount) AS biggest
        FROM orders GROUP BY customer_id HAVING count(*) >= 1""",
    "count_distinct_filter": """SELECT count(DISTINCT customer_id) AS customers,
        count(*) FILTER (WHERE status = 'open') AS open_orders FROM orders""",
    "group_by_all": "SELECT status, count(*) AS n FROM orders GROUP BY ALL",
    "window_rank": """SELECT order_id, row_number() OVER (PARTITION BY customer_id
        ORDER BY order_date, order_id) AS rn, rank() OVER (ORDER BY amount DESC) AS rk,
        dense_rank() OVER (ORDER BY status) AS drk FROM orders""",
    "window_nulls_order": """SELECT order_id, row_number() OVER (ORDER BY amount) AS rn
        FROM orders""",
    "window_lag_running": """SELECT order_id, lag(amount) OVER (ORDER BY order_id) AS prev,
        lead(order_id, 2) OVER (ORDER BY order_id) AS next2,
        sum(amount) OVER (ORDER BY order_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
          AS running,
        first_value(order_id) OVER (PARTITION BY status ORDER BY order_id) AS first_in_status
        FROM orders""",
    "qualify": """SELECT customer_id, order_id FROM orders
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY amount DESC) = 1""",
    "order_limit_nulls_last": "SELECT order_id, amount FROM orders ORDER BY amount LIMIT 3",
    "date_functions": """SELECT order_id, date_trunc('month', order_date) AS month,
        extract(year FROM order_date) AS y, month(order_date) AS m, day(order_date) AS d,
        order_date + 7 AS week_later, last_day(order_date) AS month_end,
        CAST(ts AS DATE) AS ts_day, make_date(2024, 1, 1) AS jan1
        FROM orders""",
    "date_diff_and_format": """SELECT order_id,
        date_diff('day', DATE '2024-01-01', order_date) AS days_in,
        strftime(order_date, '%Y-%m') AS ym, hour(ts) AS h FROM orders""",
    "string_functions": """SELECT id, lower(name) AS lo, upper(name) AS up, trim(name) AS tr,
        length(name) AS len, substr(name, 2, 3) AS sub, name || '!' AS bang,
        concat('id-', id) AS label, replace(name, ' ', '_') AS underscored,
        left(trim(name), 2) AS initials, lpad(CAST(id AS VARCHAR), 5, '0') AS padded,
        regexp_replace(name, '[aeiou]', '*', 'g') AS masked, strpos(name, 'a') AS first_a,
        reverse(country) AS rev
        FROM customers""",
    "split_and_match": """SELECT order_id, split_part(tags, ',', 1) AS first_tag,
        tags LIKE 'a%' AS starts_a, status ILIKE 'shipped' AS shipped,
        starts_with(status, 'o') AS o, contains(tags, 'b') AS has_b FROM orders""",
    "case_coalesce": """SELECT order_id, CASE WHEN amount IS NULL THEN 'unknown'
        WHEN amount > 100 THEN 'big' ELSE 'small' END AS size,
        coalesce(customer_id, -1) AS cust, nullif(status, 'open') AS not_open,
        ifnull(tags, '') AS tags2, greatest(order_id, 3) AS g, least(order_id, 3) AS l,
        if(status = 'open', 1, 0) AS is_open
        FROM orders""",
    "casts": """SELECT order_id, CAST(amount AS VARCHAR) AS s, amount::INTEGER AS i,
        CAST(amount / 7 AS BIGINT) AS rounded, TRY_CAST(' 12.5' AS INT) AS from_text,
        TRY_CAST(CAST(amount AS VARCHAR) AS SMALLINT) AS from_text2,
        CAST(order_id > 3 AS INT) AS flag, CAST(score AS INTEGER) AS score_int,
        TRY_CAST(score AS BIGINT) AS score_big, CAST(CAST(score AS VARCHAR) AS INT) AS via_text,
        CAST(amount * 1.5 AS INT) AS amount_int,
        CAST(order_id AS DOUBLE) / 4 AS quarter, CAST(amount AS DECIMAL(12, 3)) AS d,
        TRY_CAST(tags AS INTEGER) AS bad, CAST('2024-05-06' AS DATE) AS day
        FROM orders""",
    "arithmetic": """SELECT order_id, order_id // 2 AS half, order_id % 3 AS rem,
        order_id / 2 AS ratio, round(amount / 3, 2) AS third, abs(-order_id) AS a,
        floor(amount / 7) AS fl, ceil(amount / 7) AS ce, power(order_id, 2) AS sq
        FROM orders""",
    "cte_chain": """WITH big AS (SELECT * FROM orders WHERE amount > 20),
        per_customer AS (SELECT customer_id, sum(amount) AS total FROM big GROUP BY customer_id)
        SELECT c.name, p.total FROM per_customer p JOIN customers c ON c.id = p.customer_id""",
    "set_operations": """SELECT customer_id AS id FROM orders UNION SELECT id FROM customers
        EXCEPT SELECT 13 AS id""",
    "union_all_intersect": """(SELECT id FROM customers INTERSECT SELECT customer_id FROM orders)
        UNION ALL SELECT 99 AS id""",
    "derived_table_distinct": """SELECT DISTINCT status FROM (SELECT lower(status) AS status
        FROM orders) s""",
    "scalar_subquery": """SELECT order_id, amount - (SELECT avg(amount) FROM orders) AS diff
        FROM orders""",
    "exclude": "SELECT * EXCLUDE (ts, tags) FROM orders",
    "list_literal_index": "SELECT order_id, [10, 20, 30][2] AS second FROM orders",
    "struct_literal": "SELECT order_id, {'k': order_id, 'v': status}.v AS v FROM orders",
    "aggregates_more": """SELECT bool_and(amount > 0) AS all_pos, bool_or(status = 'open')
        AS any_open, median(order_id) AS med, arg_max(order_id, amount) AS top_order
        FROM orders""",
    "string_agg_ordered": """SELECT customer_id, string_agg(status, ',' ORDER BY order_id)
        AS statuses FROM orders GROUP BY customer_id""",
    "comments_and_layout": """-- the big ones
        SELECT order_id /* the key */ FROM orders
        WHERE amount > 100 GROUP /* by the key */ BY order_id""",
    "values_named": "SELECT v.a + 1 AS b FROM (VALUES (1), (2)) v(a)",
}

# DuckDB statements Spark would not run, or would run differently: (sql, message, at)
REFUSED = [
    ("SELECT my_macro(amount) AS x FROM orders", "Spark has no function my_macro()",
     "my_macro"),
    ("SELECT list_aggregate([1, 2], 'sum') AS s", "Spark has no function list_aggregate()",
     "list_aggregate"),
    ("SELECT * REPLACE (amount * 2 AS amount) FROM orders",
     "* REPLACE (...) has no faithful translation to Spark SQL", "*"),
    ("SELECT COLUMNS('a.*') FROM orders", "COLUMNS(...) has no faithful translation to Spark SQL",
     "COLUMNS"),
    ("SELECT status SIMILAR TO 'o.*' AS o FROM orders",
     "SIMILAR TO has no faithful translation to Spark SQL", "SIMILAR"),
    ("SELECT * FROM orders POSITIONAL JOIN customers",
     "POSITIONAL JOIN has no faithful translation to Spark SQL", "POSITIONAL"),
    ("SELECT o.order_id FROM orders o ASOF JOIN customers c ON o.order_date >= c.signup",
     "ASOF JOIN has no faithful translation to Spark SQL", "ASOF"),
    ("SELECT dayofweek(order_date) AS dow FROM orders",
     "dayofweek() has no faithful translation to Spark SQL: the days of the week are numbered "
     "differently", "dayofweek"),
    ("SELECT isodow(order_date) AS dow FROM orders", "isodow() has no faithful", "isodow"),
    ("SELECT order_id, extract(dow FROM order_date) AS dow FROM orders",
     "extract(dow FROM ...) has no faithful translation to Spark SQL", "extract"),
    ("SELECT CAST(order_id AS HUGEINT) AS big FROM orders",
     "the type HUGEINT has no faithful translation to Spark SQL", "HUGEINT"),
    ("SELECT order_id::UBIGINT AS big FROM orders", "the type UBIGINT", "UBIGINT"),
    ("SELECT count(*) FROM orders", "the column COUNT(*) has no name", "count"),
    ("WITH c AS (SELECT upper(status) FROM orders) SELECT * FROM c",
     "the column UPPER(status) has no name", "upper"),
    ("SELECT * FROM (VALUES (1, 2)) v", "VALUES without column names", "VALUES"),
    ("SELECT regexp_replace(status, 'o', '0') AS s FROM orders",
     "regexp_replace() without 'g' has no faithful translation to Spark SQL: DuckDB replaces the "
     "first match only", "regexp_replace"),
    ("SELECT regexp_replace(status, 'O', '0', 'i') AS s FROM orders",
     "regexp_replace() with options 'i'", "regexp_replace"),
    ("SELECT order_id FROM orders WHERE", "sqlglot cannot read this duckdb SQL at or near "
     '"WHERE"', "WHERE"),
]


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("odibi-test-transpile")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    session.sparkContext.setLogLevel("OFF")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def engines(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The same tables in DuckDB and in Spark (through the same Parquet files)."""
    root: Path = tmp_path_factory.mktemp("tables")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, body in TABLES.items():
        con.execute(f"CREATE TABLE {name} AS {body}")
        con.execute(f"COPY {name} TO '{root / name}.parquet' (FORMAT parquet)")
        spark.read.parquet(str(root / f"{name}.parquet")).createOrReplaceTempView(name)
    return con, spark


def _plain(value: Any) -> Any:
    """One value as both engines' Python values compare: numbers as floats to 6 places,
    dates and times as ISO text, lists and structs element by element."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        f = float(value)
        return None if math.isnan(f) else round(f, 6)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if hasattr(value, "asDict"):
        return _plain(value.asDict())
    return value


def duckdb_rows(con: Any, sql: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return names, Counter(tuple(_plain(v) for v in row) for row in cur.fetchall())


def spark_rows(spark: Any, sql: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    df = spark.sql(sql)
    return list(df.columns), Counter(tuple(_plain(v) for v in row) for row in df.collect())


@pytest.mark.parametrize("name", sorted(PORTABLE))
def test_portable_statements_give_equal_results_on_spark(name: str, engines: Any) -> None:
    con, spark = engines
    sql = PORTABLE[name]
    on_spark = transpile(sql, "duckdb", "spark")
    expected = duckdb_rows(con, sql)
    assert expected[1], f"{name}: the corpus statement returns no rows on DuckDB"
    assert spark_rows(spark, on_spark) == expected, on_spark


@pytest.mark.parametrize(("sql", "message", "at"), REFUSED, ids=[r[2] for r in REFUSED])
def test_unfaithful_statements_are_refused_where_written(sql: str, message: str,
                                                         at: str) -> None:
    with pytest.raises(TranspileError) as caught:
        transpile(sql, "duckdb", "spark")
    assert message in caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.offset == sql.lower().index(at.lower()), caught.value.message


def test_refused_statements_do_run_on_duckdb(engines: Any) -> None:
    """The refusals are about Spark: the statements are DuckDB SQL (but the one that is not
    valid SQL at all), so a project could hold every one of them."""
    con, _ = engines
    con.execute("CREATE OR REPLACE MACRO my_macro(x) AS x + 1")
    for sql, _, _ in REFUSED:
        if not sql.endswith("WHERE"):
            con.execute(sql).fetchall()


def test_refused_translations_would_differ_or_fail_on_spark(engines: Any) -> None:
    """What sqlglot alone makes of two refused statements: Spark gives other rows (so odibi
    refuses them rather than run them)."""
    import sqlglot

    con, spark = engines
    for sql in ["SELECT order_id, dayofweek(order_date) AS dow FROM orders",
                "SELECT order_id, isodow(order_date) AS dow FROM orders"]:
        naive = sqlglot.transpile(sql, read="duckdb", write="spark")[0]
        assert spark_rows(spark, naive) != duckdb_rows(con, sql), naive


def test_the_last_problem_in_the_text_is_not_reported_first() -> None:
    sql = "SELECT my_fn(order_id) AS a, dayofweek(order_date) AS b FROM orders"
    with pytest.raises(TranspileError) as caught:
        transpile(sql, "duckdb", "spark")
    assert caught.value.offset == sql.index("dayofweek") or \
        caught.value.offset == sql.index("my_fn")
    sql2 = "SELECT dayofweek(order_date) AS b, * REPLACE (1 AS order_id) FROM orders"
    with pytest.raises(TranspileError) as caught2:
        transpile(sql2, "duckdb", "spark")
    assert caught2.value.offset == sql2.index("dayofweek")


def test_same_dialect_is_the_text_unchanged() -> None:
    text = "SELECT   a -- kept\nFROM t"
    assert transpile(text, "duckdb", "duckdb") == text
    assert transpile(text, "spark", "spark") == text


def test_names_of_subqueries_read_as_values_need_no_alias() -> None:
    out = transpile("SELECT a FROM t WHERE a IN (SELECT max(b) FROM u) AND EXISTS "
                    "(SELECT 1 FROM v) AND a > (SELECT avg(c) FROM w) "
                    "UNION SELECT count(*) FROM x", "duckdb", "spark")
    assert "MAX(b)" in out and "COUNT(*)" in out


def test_spark_function_list_is_spark_s() -> None:
    names = spark_functions()
    assert {"date_format", "row_number", "collect_list", "explode", "percentile"} <= names
    assert not {"list_aggregate", "strftime", "epoch_ms"} & names


# -- the cache -------------------------------------------------------------------------------
class DictCache:
    def __init__(self) -> None:
        self.items: dict[Digest, str] = {}

    def get_transpiled(self, keys: list[Digest]) -> dict[Digest, str]:
        return {k: self.items[k] for k in keys if k in self.items}

    def put_transpiled(self, items: dict[Digest, str]) -> None:
        self.items.update(items)


def test_translations_are_cached_by_dialects_and_text() -> None:
    cache = DictCache()
    good, bad = "SELECT a FROM t ORDER BY a", "SELECT my_fn(a) AS b FROM t"
    first = transpile_all([good, bad, good], "duckdb", "spark", cache)
    assert set(first) == {good, bad}
    assert isinstance(first[bad], TranspileError)
    assert cache.items == {transpile_key(good, "duckdb", "spark"): first[good]}
    assert transpile_key(good, "duckdb", "spark") != transpile_key(good, "spark", "duckdb")
    cache.items[transpile_key(good, "duckdb", "spark")] = "planted"
    assert transpile_all([good], "duckdb", "spark", cache) == {good: "planted"}


# -- generated portable expressions ----------------------------------------------------------
COLUMNS = ("order_id", "customer_id", "amount")


def expressions(depth: int = 3) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(COLUMNS), st.integers(-5, 50).map(str))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(inner, inner).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
            st.tuples(inner, st.sampled_from(["<", ">=", "="]), inner, inner, inner).map(
                lambda t: f"CASE WHEN {t[0]} {t[1]} {t[2]} THEN {t[3]} ELSE {t[4]} END"),
            inner.map(lambda e: f"abs({e})"),
        )
    return st.recursive(leaf, extend, max_leaves=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(expressions(), min_size=1, max_size=3), st.sampled_from(COLUMNS),
       st.booleans())
def test_generated_portable_statements_give_equal_results(engines: Any, exprs: list[str],
                                                          key: str, grouped: bool) -> None:
    con, spark = engines
    cols = ", ".join(f"{e} AS c{i}" for i, e in enumerate(exprs))
    if grouped:
        sql = (f"SELECT {key} AS k, " + ", ".join(f"sum({e}) AS s{i}" for i, e in
                                                   enumerate(exprs))
               + f" FROM orders GROUP BY {key}")
    else:
        sql = f"SELECT {cols} FROM orders ORDER BY {key} LIMIT 4"
    assert spark_rows(spark, transpile(sql, "duckdb", "spark")) == duckdb_rows(con, sql)
