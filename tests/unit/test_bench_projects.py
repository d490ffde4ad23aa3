"""The benchmark's dbt and SQLMesh projects are the odibi project's pipeline, node for node
(bench/incumbents.py); checked on the files alone, without dbt or SQLMesh installed."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bench.generate import generate, write_odibi
from bench.incumbents import write_dbt, write_sqlmesh


def _odibi_nodes(root: Path) -> dict[str, str]:
    nodes = yaml.safe_load((root / "odibi.yaml").read_text())["nodes"]
    for f in sorted((root / "pipelines").glob("*.yaml")):
        nodes += yaml.safe_load(f.read_text())["nodes"]
    return {n["name"]: n.get("sql", "").strip() for n in nodes}


def test_dbt_and_sqlmesh_projects_match_the_odibi_project(tmp_path: Path) -> None:
    nodes = generate(10, width=4)
    odibi = _odibi_nodes(write_odibi(nodes, tmp_path / "odibi"))
    dbt = write_dbt(nodes, tmp_path / "dbt", threads=8)
    sqlmesh = write_sqlmesh(nodes, tmp_path / "sqlmesh", threads=8)
    names = {n.name for n in nodes} | {"src"}
    assert set(odibi) == names

    dbt_models = {p.stem: p.read_text().strip() for p in (dbt / "models").glob("*.sql")}
    assert set(dbt_models) == names
    sqlmesh_models = {}
    for p in (sqlmesh / "models").glob("*.sql"):
        header, query = p.read_text().split(";", 1)
        name = re.search(r"name bench\.(\w+),", header).group(1)
        assert name == p.stem and "kind FULL" in header
        sqlmesh_models[name] = query.strip()
    assert set(sqlmesh_models) == names

    for node in nodes:  # refs are exactly the inputs, and the SQL is otherwise odibi's
        dbt_sql, sqlmesh_sql = dbt_models[node.name], sqlmesh_models[node.name]
        assert set(re.findall(r"\{\{ ref\('(\w+)'\) \}\}", dbt_sql)) == set(node.inputs)
        assert set(re.findall(r"\bbench\.(\w+)", sqlmesh_sql)) == set(node.inputs)
        assert re.sub(r"\{\{ ref\('(\w+)'\) \}\}", r"\1", dbt_sql) == odibi[node.name]
        assert re.sub(r"\bbench\.(\w+)", r"\1", sqlmesh_sql) == odibi[node.name]
    for root in (tmp_path / "odibi", dbt, sqlmesh):  # one source, the same data
        assert (root / "data" / "src.csv").read_text() == (
            tmp_path / "odibi" / "data" / "src.csv").read_text()
    assert dbt_models["src"] == sqlmesh_models["src"] == "SELECT * FROM read_csv('data/src.csv')"

    profile = yaml.safe_load((dbt / "profiles.yml").read_text())["bench"]["outputs"]["dev"]
    assert profile == {"type": "duckdb", "path": "bench.duckdb", "threads": 8}
    project = yaml.safe_load((dbt / "dbt_project.yml").read_text())
    assert project["models"]["bench"]["+materialized"] == "table"
    assert project["flags"]["send_anonymous_usage_stats"] is False
    config = yaml.safe_load((sqlmesh / "config.yaml").read_text())
    assert config["gateways"]["local"]["connection"]["concurrent_tasks"] == 8
