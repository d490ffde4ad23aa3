"""Loading projects (odibi/config/load.py) and working out their dependencies
(odibi/resolve.py), on small temporary projects."""

from __future__ import annotations

from pathlib import Path

import pytest

from odibi.config.load import find_project_root, load_project, parse_var_overrides
from odibi.config.model import Project, ReadSpec, Retry, SqlSpec
from odibi.errors import ConfigError, SqlError, UsageError
from odibi.ids import Format, NodeId, NodeKind
from odibi.resolve import resolve
from tests.conftest import write_files

HEADER = """\
    project: demo
    connections:
      raw: {type: local, base_path: data}
      out: {type: local, base_path: output}
    vars:
      min_amount: 0
      region: eu
      label: hello
    pipelines: [pipelines/*.yaml]
    """


def make(tmp_path: Path, pipeline: str, header: str = HEADER, name: str = "proj",
         extra: dict[str, str] | None = None) -> Path:
    files = {"odibi.yaml": header, "pipelines/p.yaml": pipeline}
    files.update(extra or {})
    return write_files(tmp_path / name, files)


def load(root: Path, overrides: list[str] | None = None, env=None) -> Project:
    """Load with `--var` texts, as the command line passes them."""
    return load_project(root, parse_var_overrides(overrides or []), env=env or {})


def var_values(items: list[str]) -> dict[str, object]:
    return {o.name: o.value for o in parse_var_overrides(items)}


def sql_of(project: Project, name: str) -> SqlSpec:
    spec = project.nodes[NodeId(name)].producer
    assert isinstance(spec, SqlSpec)
    return spec


def read_of(project: Project, name: str) -> ReadSpec:
    spec = project.nodes[NodeId(name)].producer
    assert isinstance(spec, ReadSpec)
    return spec


def deps(project: Project) -> dict[str, set[str]]:
    resolved = resolve(project)
    return {n: set(resolved.deps(n)) for n in resolved.graph.names}


# -- variables --------------------------------------------------------------------------
VARS_PIPELINE = """\
    pipeline: p
    nodes:
      - name: raw_orders
        read: {connection: raw, path: orders.csv}
      - name: clean
        sql: |
          SELECT * FROM raw_orders
          WHERE amount > ${vars.min_amount} AND region = '${vars.region}'
      - name: plain
        sql: SELECT * FROM clean;
    """


def test_vars_are_substituted_and_the_template_is_kept(tmp_path: Path) -> None:
    p = load(make(tmp_path, VARS_PIPELINE))
    clean = sql_of(p, "clean")
    assert clean.rendered == ("SELECT * FROM raw_orders\n"
                              "WHERE amount > 0 AND region = 'eu'")
    assert clean.template == ("SELECT * FROM raw_orders\n"
                              "WHERE amount > ${vars.min_amount} AND region = '${vars.region}'")
    assert sql_of(p, "plain").template == "SELECT * FROM clean"  # trailing ';' dropped
    assert p.vars == {"min_amount": 0, "region": "eu", "label": "hello"}


def test_vars_used_per_node(tmp_path: Path) -> None:
    p = load(make(tmp_path, VARS_PIPELINE))
    assert p.nodes[NodeId("clean")].vars_used == {"min_amount", "region"}
    assert p.nodes[NodeId("plain")].vars_used == frozenset()
    assert p.nodes[NodeId("raw_orders")].vars_used == frozenset()


def test_var_overrides_replace_values(tmp_path: Path) -> None:
    root = make(tmp_path, VARS_PIPELINE)
    p = load(root, ["min_amount=5", "region=us"])
    assert p.vars["min_amount"] == 5
    assert sql_of(p, "clean").rendered.endswith("amount > 5 AND region = 'us'")
    # the template, and with it the logic digest, does not change with a value
    base = resolve(load(root)).sql[NodeId("clean")]
    over = resolve(p).sql[NodeId("clean")]
    assert over.text == base.text
    assert over.tree == base.tree


def test_override_of_an_unknown_var_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load(make(tmp_path, VARS_PIPELINE), ["min_amout=1"])
    assert "--var min_amout: no such variable in odibi.yaml" in info.value.message
    assert info.value.hint == "did you mean 'min_amount'?"


@pytest.mark.parametrize(("item", "key", "value"), [
    ("n=5", "n", 5),
    ("n=-3", "n", -3),
    ("x=1.5", "x", 1.5),
    ("flag=true", "flag", True),
    ("flag=false", "flag", False),
    ("s=a b", "s", "a b"),
    ("s=hello", "s", "hello"),
    ("s='5'", "s", "5"),
    ("s=", "s", ""),
    ("s=a=b", "s", "a=b"),
    ("s=[1, 2]", "s", "[1, 2]"),  # not a scalar: kept as text
    ("s={a: 1}", "s", "{a: 1}"),
    ("s=null", "s", "null"),
    ("s=x: y", "s", "x: y"),
    (" n =7", "n", 7),
])
def test_parse_var_overrides_types(item: str, key: str, value: object) -> None:
    result = var_values([item])
    assert result == {key: value}
    assert type(result[key]) is type(value)


@pytest.mark.parametrize("item", ["novalue", "=5", "1x=3", "a-b=1"])
def test_parse_var_overrides_refuses_malformed(item: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_var_overrides([item])
    assert f"--var expects NAME=VALUE, got '{item}'" == info.value.message


def test_the_last_override_wins(tmp_path: Path) -> None:
    p = load(make(tmp_path, VARS_PIPELINE), ["min_amount=1", "min_amount=2"])
    assert p.vars["min_amount"] == 2


def test_undefined_var_is_located(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT ${vars.regoin} AS r
        """)
    with pytest.raises(ConfigError) as info:
        load(root)
    err = info.value
    assert "undefined variable 'regoin'" in err.message
    assert err.hint == "did you mean 'region'?"
    assert err.span is not None
    assert err.span.file == str(root / "pipelines" / "p.yaml")
    assert err.span.line == 4


def test_env_substitution_is_rendered_but_never_in_the_template(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT '${env:SECRET_REGION}' AS r
        """)
    p = load(root, env={"SECRET_REGION": "mars"})
    spec = sql_of(p, "a")
    assert spec.rendered == "SELECT 'mars' AS r"
    assert "mars" not in spec.template
    assert spec.template == "SELECT '${env:SECRET_REGION}' AS r"
    assert p.nodes[NodeId("a")].vars_used == frozenset()
    with pytest.raises(ConfigError) as info:
        load(root, env={"OTHER": "x"})
    assert "environment variable SECRET_REGION is not set" in info.value.message


def test_dollar_dollar_is_a_literal(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT '$${vars.label}' AS literal, '${vars.label}' AS value
        """)
    p = load(root)
    assert sql_of(p, "a").rendered == "SELECT '${vars.label}' AS literal, 'hello' AS value"
    assert p.nodes[NodeId("a")].vars_used == {"label"}


def test_unknown_substitution_is_refused(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT '${label}' AS x
        """)
    with pytest.raises(ConfigError) as info:
        load(root)
    assert "unknown substitution ${label}" in info.value.message


def test_vars_in_a_connection_base_path_count_for_its_nodes(tmp_path: Path) -> None:
    header = HEADER.replace("base_path: data}", "base_path: 'data/${vars.region}'}")
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: orders
            read: {connection: raw, path: '${vars.label}.csv'}
          - name: other
            read: {connection: out, path: x.csv}
          - name: export
            sql: SELECT * FROM orders
            write: {connection: raw, path: copy.parquet}
        """, header=header)
    p = load(root)
    assert p.connections["raw"].root == (root / "data" / "eu").resolve()
    assert p.connections["raw"].base_path == "data/${vars.region}"
    assert read_of(p, "orders").rendered_path == "hello.csv"
    assert p.nodes[NodeId("orders")].vars_used == {"region", "label"}
    assert p.nodes[NodeId("other")].vars_used == frozenset()
    # a write's variables decide where it exports, not what it computes: they count
    # towards its write key (a change re-exports), not the node's fingerprint
    assert p.nodes[NodeId("export")].vars_used == frozenset()
    p2 = load(root, ["region=us"])
    assert p2.connections["raw"].root == (root / "data" / "us").resolve()


# -- pipelines, tags, writes, formats ------------------------------------------------------
def test_pipeline_tags_are_merged_into_nodes(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: staging
        tags: [staging, core]
        nodes:
          - name: a
            sql: SELECT 1 AS x
            tags: [daily]
          - name: b
            sql: SELECT * FROM a
          - name: c
            sql: SELECT * FROM a
            tags: [staging]
        checks:
          - name: a_not_empty
            assert: row_count(a) > 0
            tags: [qa]
        """)
    p = load(root)
    assert p.nodes[NodeId("a")].tags == {"staging", "core", "daily"}
    assert p.nodes[NodeId("b")].tags == {"staging", "core"}
    assert p.nodes[NodeId("c")].tags == {"staging", "core"}
    assert p.checks[NodeId("a_not_empty")].tags == {"staging", "core", "qa"}
    assert p.nodes[NodeId("a")].pipeline == "staging"
    assert p.nodes[NodeId("a")].file == "pipelines/p.yaml"


def test_write_as_one_mapping_or_a_list(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: one
            sql: SELECT 1 AS x
            write: {connection: out, path: one.csv}
          - name: many
            sql: SELECT 1 AS x
            write:
              - {connection: out, path: many.parquet}
              - {connection: out, path: sub/many.json, options: {array: true}}
          - name: none
            sql: SELECT 1 AS x
        """)
    p = load(root)
    one = p.nodes[NodeId("one")].writes
    assert [(w.connection, w.path, w.format) for w in one] == [("out", "one.csv", Format.CSV)]
    many = p.nodes[NodeId("many")].writes
    assert [(w.path, w.format) for w in many] == [("many.parquet", Format.PARQUET),
                                                  ("sub/many.json", Format.JSON)]
    assert dict(many[1].options) == {"array": True}
    assert many[0].span.line == 9 and many[1].span.line == 10
    assert p.nodes[NodeId("none")].writes == ()


@pytest.mark.parametrize(("path", "fmt"), [
    ("x.csv", Format.CSV),
    ("x.tsv", Format.CSV),
    ("x.CSV", Format.CSV),
    ("x.parquet", Format.PARQUET),
    ("x.pq", Format.PARQUET),
    ("x.json", Format.JSON),
    ("x.jsonl", Format.JSON),
    ("x.ndjson", Format.JSON),
    ("events/*.parquet", Format.PARQUET),
    ("events/2024-*.csv", Format.CSV),
])
def test_format_is_inferred_from_the_extension(tmp_path: Path, path: str, fmt: Format) -> None:
    root = make(tmp_path, f"""\
        pipeline: p
        nodes:
          - name: r
            read: {{connection: raw, path: '{path}'}}
        """)
    assert read_of(load(root), "r").format is fmt


def test_explicit_format_wins_and_unknown_extension_needs_one(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: r
            read: {connection: raw, path: data.txt, format: CSV}
        """)
    assert read_of(load(root), "r").format is Format.CSV
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: r
            read: {connection: raw, path: data.txt}
        """, name="proj2")
    with pytest.raises(ConfigError) as info:
        load(root)
    assert "cannot tell the format of 'data.txt'" in info.value.message
    assert info.value.hint == "add format: csv, parquet or json"


# -- timeout and retry ---------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "seconds"), [
    ("'30s'", 30.0),
    ("'5m'", 300.0),
    ("'2h'", 7200.0),
    ("'250ms'", 0.25),
    ("'1.5m'", 90.0),
    ("'45'", 45.0),
    ("1.5", 1.5),
    ("10", 10.0),
])
def test_timeout_durations(tmp_path: Path, raw: str, seconds: float) -> None:
    root = make(tmp_path, f"""\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT 1 AS x
            timeout: {raw}
        """)
    assert load(root).nodes[NodeId("a")].timeout == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["0", "'5 parsecs'", "-1", "'-3s'", "true", "[1]"])
def test_bad_timeout_is_refused(tmp_path: Path, raw: str) -> None:
    root = make(tmp_path, f"""\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT 1 AS x
            timeout: {raw}
        """)
    with pytest.raises(ConfigError) as info:
        load(root)
    assert "'timeout' must be a positive number of seconds" in info.value.message
    assert info.value.span is not None and info.value.span.line == 5


def test_no_timeout_by_default(tmp_path: Path) -> None:
    root = make(tmp_path, VARS_PIPELINE)
    assert load(root).nodes[NodeId("clean")].timeout is None


@pytest.mark.parametrize(("raw", "retry"), [
    (None, Retry(1, 0.0)),
    ("3", Retry(3, 0.0)),
    ("{attempts: 4, backoff: '2s'}", Retry(4, 2.0)),
    ("{attempts: 2}", Retry(2, 0.0)),
    ("{backoff: 1.5}", Retry(2, 1.5)),
])
def test_retry(tmp_path: Path, raw: str | None, retry: Retry) -> None:
    text = "pipeline: p\nnodes:\n  - name: a\n    sql: SELECT 1 AS x\n"
    if raw is not None:
        text += f"    retry: {raw}\n"
    root = make(tmp_path, text)
    assert load(root).nodes[NodeId("a")].retry == retry


@pytest.mark.parametrize("raw", ["0", "-1", "true", "{attempts: 0}", "{tries: 3}", "'3'"])
def test_bad_retry_is_refused(tmp_path: Path, raw: str) -> None:
    root = make(tmp_path, f"""\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT 1 AS x
            retry: {raw}
        """)
    with pytest.raises(ConfigError) as info:
        load(root)
    assert "retry" in info.value.message


# -- inline nodes --------------------------------------------------------------------------
def test_inline_nodes_make_a_pipeline_named_after_the_project(tmp_path: Path) -> None:
    root = write_files(tmp_path / "inline", {
        "odibi.yaml": """\
            project: tiny
            nodes:
              - name: a
                sql: SELECT 1 AS x
              - name: b
                sql: SELECT x + 1 AS y FROM a
            checks:
              - name: b_has_rows
                assert: row_count(b) > 0
            """,
    })
    p = load(root)
    assert p.name == "tiny"
    assert p.pipelines == ("tiny",)
    assert p.files == ("odibi.yaml",)
    assert list(p.nodes) == ["a", "b"]
    assert {n.pipeline for n in p.nodes.values()} == {"tiny"}
    assert {n.file for n in p.nodes.values()} == {"odibi.yaml"}
    assert p.checks[NodeId("b_has_rows")].pipeline == "tiny"
    assert deps(p) == {"a": set(), "b": {"a"}, "b_has_rows": {"b"}}


def test_inline_and_file_pipelines_together(tmp_path: Path) -> None:
    header = HEADER.rstrip(" ") + "    nodes:\n      - name: seed\n        sql: SELECT 1 AS x\n"
    root = make(tmp_path, """\
        pipeline: more
        nodes:
          - name: grown
            sql: SELECT * FROM seed
        """, header=header)
    p = load(root)
    assert p.pipelines == ("demo", "more")
    assert p.files == ("odibi.yaml", "pipelines/p.yaml")
    assert p.nodes[NodeId("seed")].pipeline == "demo"
    assert p.nodes[NodeId("grown")].pipeline == "more"
    assert deps(p)["grown"] == {"seed"}


def test_find_project_root(tmp_path: Path) -> None:
    root = make(tmp_path, VARS_PIPELINE)
    assert find_project_root(root) == root
    with pytest.raises(ConfigError) as info:
        find_project_root(root / "pipelines")
    assert "no odibi.yaml in" in info.value.message


# -- dependency inference (resolve) --------------------------------------------------------
def test_sql_dependencies_are_inferred(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: raw_a
            read: {connection: raw, path: a.csv}
          - name: raw_b
            read: {connection: raw, path: b.csv}
          - name: joined
            sql: |
              WITH b AS (SELECT * FROM raw_b)
              SELECT * FROM raw_a JOIN b USING (id)
              WHERE id IN (SELECT id FROM main.RAW_B)
          - name: counted
            sql: SELECT count(*) AS n FROM joined, (SELECT 1) AS one
            depends_on: [joined]
        """)
    p = load(root)
    assert deps(p) == {"raw_a": set(), "raw_b": set(), "joined": {"raw_a", "raw_b"},
                       "counted": {"joined"}}
    assert resolve(p).graph.names == ("raw_a", "raw_b", "joined", "counted")


def test_the_first_unknown_table_is_reported(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: raw_a
            read: {connection: raw, path: a.csv}
          - name: joined
            sql: SELECT * FROM raw_aa JOIN raw_b USING (id)
        """)
    with pytest.raises(SqlError) as info:
        resolve(load(root))
    err = info.value
    assert err.message == "node 'joined': SQL reads 'raw_aa', which is not a node"
    assert err.hint == "did you mean 'raw_a'?"
    assert err.span is not None
    line = (root / "pipelines" / "p.yaml").read_text().splitlines()[err.span.line - 1]
    assert line[err.span.col - 1:].startswith("raw_aa")


def test_python_parameters_with_defaults_and_kwargs(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: left
            read: {connection: raw, path: l.csv}
          - name: right
            read: {connection: raw, path: r.csv}
          - name: extra
            read: {connection: raw, path: e.csv}
          - name: combined
            python: transforms.t:combine
            depends_on: [extra]
          - name: only_left
            python: transforms.t:only
          - name: kw_only
            python: transforms.t:kw
        """, extra={
            "transforms/__init__.py": "",
            "transforms/t.py": """\
                def combine(left, right=None, scale=2, **others):
                    return left

                def only(left, missing=None):
                    return left

                def kw(*, right, factor=1.0):
                    return right
                """,
        })
    d = deps(load(root))
    assert d["combined"] == {"left", "right", "extra"}
    assert d["only_left"] == {"left"}
    assert d["kw_only"] == {"right"}


def test_python_depends_on_must_agree_without_kwargs(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: left
            read: {connection: raw, path: l.csv}
          - name: extra
            read: {connection: raw, path: e.csv}
          - name: f
            python: transforms.t:only
            depends_on: [left, extra]
        """, extra={"transforms/t.py": "def only(left):\n    return left\n"})
    with pytest.raises(ConfigError) as info:
        resolve(load(root))
    assert "disagrees with the parameters of transforms.t:only [left]" in info.value.message
    assert "depends_on [extra, left]" in info.value.message


def test_a_required_python_parameter_must_be_a_node(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: left
            read: {connection: raw, path: l.csv}
          - name: f
            python: transforms.t:g
        """, extra={"transforms/t.py": "def g(lefft):\n    return lefft\n"})
    with pytest.raises(ConfigError) as info:
        resolve(load(root))
    assert "parameter 'lefft' of transforms.t:g is not a node" in info.value.message
    assert info.value.hint == "did you mean 'left'?"


def test_a_read_depends_on_the_node_that_writes_its_file(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: src
            read: {connection: raw, path: s.csv}
          - name: export_a
            sql: SELECT * FROM src
            write: {connection: out, path: parts/a.parquet}
          - name: export_b
            sql: SELECT * FROM src
            write:
              - {connection: out, path: parts/b.parquet}
              - {connection: out, path: b.csv}
          - name: reread_b
            read: {connection: out, path: b.csv}
          - name: reread_all
            read: {connection: out, path: 'parts/*.parquet'}
          - name: unrelated
            read: {connection: raw, path: parts/a.parquet}
        """)
    p = load(root)
    d = deps(p)
    assert d["reread_b"] == {"export_b"}
    assert d["reread_all"] == {"export_a", "export_b"}
    assert d["unrelated"] == set()  # another connection: another file
    order = resolve(p).graph.names
    assert order.index("export_b") < order.index("reread_b")


def test_a_check_depends_on_every_node_it_names(tmp_path: Path) -> None:
    root = make(tmp_path, """\
        pipeline: p
        nodes:
          - name: a
            sql: SELECT 1 AS x
          - name: b
            sql: SELECT * FROM a
        checks:
          - name: same_size
            assert: row_count(a) == b.row_count and 'a' != 'b'
        """)
    assert deps(load(root))["same_size"] == {"a", "b"}


def test_node_kinds(tmp_path: Path) -> None:
    root = make(tmp_path, VARS_PIPELINE)
    p = load(root)
    assert [(n, node.kind) for n, node in p.nodes.items()] == [
        ("raw_orders", NodeKind.READ), ("clean", NodeKind.SQL), ("plain", NodeKind.SQL)]


# -- SQL in files -------------------------------------------------------------------------------
def test_sql_file_is_read_relative_to_its_yaml_file_and_rendered(tmp_path: Path) -> None:
    root = make(tmp_path, "pipeline: p\nnodes:\n  - name: a\n    sql: {file: sql/a.sql}\n",
                extra={"pipelines/sql/a.sql": "-- a\nSELECT ${vars.label} AS x;\n"})
    spec = sql_of(load(root), "a")
    assert spec.file == "pipelines/sql/a.sql"
    assert spec.template == "-- a\nSELECT ${vars.label} AS x"
    assert spec.rendered == "-- a\nSELECT hello AS x"
    assert spec.origin.file == str(root.resolve() / "pipelines/sql/a.sql")
    # positions are the file's own: line 2, column 8 is the ${ of the substitution
    assert (spec.span_at(12).line, spec.span_at(12).col) == (2, 8)
    assert load(root).nodes[NodeId("a")].vars_used == frozenset({"label"})


def test_inline_sql_has_no_file(tmp_path: Path) -> None:
    root = make(tmp_path, "pipeline: p\nnodes:\n  - name: a\n    sql: SELECT 1 AS x\n")
    assert sql_of(load(root), "a").file is None


@pytest.mark.parametrize("value,label", [
    ("${vars.n}", "1000000"), ("${vars.n}", ""), ("$${vars.n}", "${vars.n}"),
])
def test_positions_after_a_substitution_are_found_in_the_template(
        value: str, label: str) -> None:
    from odibi.config.model import template_offset

    template = f"SELECT {value} AS n, {value} AS m FORM x"
    start = template.index(value)
    second = template.index(value, start + 1)
    pieces = ((start, start + len(value), len(label)),
              (second, second + len(value), len(label)))
    rendered = template.replace(value, label)
    for offset, char in enumerate(rendered):
        inside = any(s + (len(label) - (e - s)) * i <= offset < s + (len(label) - (e - s)) * i
                     + len(label) for i, (s, e, _) in enumerate(pieces))
        found = template_offset(pieces, offset)
        if inside:
            assert found in (start, second)
        else:
            assert template[found] == char, (offset, found)
    assert template_offset(pieces, rendered.index("FORM")) == template.index("FORM")
