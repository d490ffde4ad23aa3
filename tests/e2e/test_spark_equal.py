"""The same project on DuckDB and on Spark gives equal outputs (issue 17, "Tests"):
examples/shop (its SQL written for DuckDB, transpiled for Spark; its rules rendered for
Spark), and a property test over random DAGs of portable SQL. Every node's output, and
every exported file, is compared as a multiset of rows, values normalised (integers and
floats and decimals as numbers, dates and timestamps as ISO text: `spark_support.normalised`).

Each Spark build starts a Spark session, so a hypothesis example builds a small forest of
DAGs in one project (one build per target), and the run keeps to a few examples.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES, run_cli, write_files
from tests.e2e.spark_support import (SPARK, duckdb_rows, file_rows, multiset, spark_master,
                                     spark_rows, targets_yaml)

__all__ = ["spark_master"]  # (the fixture, imported for pytest)

SHOP_NODES = ("raw_customers", "raw_orders", "raw_payments", "stg_customers", "stg_orders",
              "stg_payments", "order_payments", "customer_orders", "daily_revenue",
              "customer_segments", "export_segments")
SHOP_EXPORTS = ("daily_revenue.csv", "customer_segments.parquet", "customer_segments.csv")


def build_both(root: Path) -> None:
    """Build `root` on its DuckDB target (the default) and on its Spark target."""
    for argv in ((), ("--target", SPARK)):
        r = run_cli("-C", str(root), "build", *argv)
        assert r.code == 0, f"odibi build {' '.join(argv)}\n{r.text}"


def differences(root: Path, nodes: tuple[str, ...]) -> dict[str, Any]:
    """Each node whose outputs differ between the targets: (DuckDB only, Spark only)."""
    found = {}
    for node in nodes:
        duck, spark = multiset(duckdb_rows(root, node)), multiset(spark_rows(root, node))
        if duck != spark:
            found[node] = (dict(duck - spark), dict(spark - duck))
    return found


def test_the_shop_gives_equal_outputs_on_duckdb_and_spark(tmp_path: Path,
                                                          spark_master: str) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(EXAMPLES / "shop", shop,
                    ignore=shutil.ignore_patterns(".odibi", "output", "__pycache__"))
    yaml = shop / "odibi.yaml"
    yaml.write_text(yaml.read_text() + "\n" + targets_yaml(spark_master))
    build_both(shop)
    assert differences(shop, SHOP_NODES) == {}
    for name in SHOP_EXPORTS:
        duck, spark = shop / "output" / name, shop / "out_spark" / name
        assert spark.is_file(), f"{name}: a path with an extension is one file"
        assert multiset(file_rows(duck)) == multiset(file_rows(spark)), name


# -- random DAGs of portable SQL --------------------------------------------------------------
# Every node has the columns (k, v), integers; each template runs unchanged on both engines.
ONE_INPUT = (
    "SELECT k, v FROM {p} WHERE v > {c}",
    "SELECT k, v * {c} + k AS v FROM {p}",
    "SELECT k, sum(v) AS v FROM {p} GROUP BY k",
    "SELECT k, count(*) AS v FROM {p} GROUP BY k",
    "SELECT DISTINCT k, v FROM {p}",
    "SELECT k, CASE WHEN v % 2 = 0 THEN v ELSE {c} - v END AS v FROM {p}",
    "SELECT k, v FROM (SELECT k, v, row_number() OVER (PARTITION BY k ORDER BY v DESC, k) "
    "AS rn FROM {p}) AS t WHERE rn <= {c}",
)
TWO_INPUTS = (
    "SELECT k, v FROM {p} UNION ALL SELECT k, v FROM {q}",
    "SELECT x.k, x.v + y.v AS v FROM {p} AS x JOIN (SELECT k, max(v) AS v FROM {q} "
    "GROUP BY k) AS y ON x.k = y.k",
    "SELECT x.k, coalesce(y.v, {c}) AS v FROM {p} AS x LEFT JOIN (SELECT k, min(v) AS v "
    "FROM {q} GROUP BY k) AS y ON x.k = y.k",
    "SELECT k, v FROM {p} WHERE k IN (SELECT k FROM {q} WHERE v > {c})",
)


@st.composite
def dag(draw: Any, prefix: str) -> tuple[dict[str, str], dict[str, str]]:
    """({source csv name: its text}, {node: its SQL}): one or two sources, then 1-5 nodes
    each reading one or two earlier ones."""
    csvs, names = {}, []
    for i in range(draw(st.integers(1, 2))):
        rows = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)),
                             min_size=1, max_size=6))
        name = f"{prefix}src{i}"
        csvs[name] = "k,v\n" + "".join(f"{k},{v}\n" for k, v in rows)
        names.append(name)
    nodes = {}
    for i in range(draw(st.integers(1, 5))):
        two = len(names) > 1 and draw(st.booleans())
        template = draw(st.sampled_from(TWO_INPUTS if two else ONE_INPUT))
        p, q = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        nodes[f"{prefix}n{i}"] = template.format(p=p, q=q, c=draw(st.integers(1, 3)))
        names.append(f"{prefix}n{i}")
    return csvs, nodes


def forest_project(root: Path, master: str, forest: list[tuple[dict, dict]]) -> Path:
    lines = ["project: forest", "connections:", "  raw: {type: local, base_path: data}",
             targets_yaml(master).rstrip("\n"), "nodes:"]
    files = {}
    for csvs, nodes in forest:
        for name, text in csvs.items():
            files[f"data/{name}.csv"] = text
            lines += [f"  - name: {name}", f"    read: {{connection: raw, path: {name}.csv}}"]
        for name, sql in nodes.items():
            lines += [f"  - name: {name}", f"    sql: \"{sql}\""]
    return write_files(root, {"odibi.yaml": "\n".join(lines) + "\n", **files})


@settings(max_examples=3, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(forest=st.lists(st.integers(), min_size=1, max_size=3).flatmap(
    lambda gs: st.tuples(*(dag(f"g{i}_") for i in range(len(gs)))).map(list)))
def test_random_dags_give_equal_outputs_on_duckdb_and_spark(
        tmp_path_factory: pytest.TempPathFactory, spark_master: str,
        forest: list[tuple[dict, dict]]) -> None:
    root = forest_project(tmp_path_factory.mktemp("forest"), spark_master, forest)
    build_both(root)
    nodes = tuple(n for csvs, sqls in forest for n in (*csvs, *sqls))
    assert differences(root, nodes) == {}, root / "odibi.yaml"
