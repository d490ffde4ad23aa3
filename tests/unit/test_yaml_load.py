"""YAML loading (odibi/config/yaml_load.py): positions of keys, values and items; what is
refused (duplicate keys, alias bombs, deep nesting, non-UTF-8, syntax errors) and where;
what is accepted (modest anchors, aliases and merge keys)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from odibi.config.yaml_load import MAX_DEPTH, YMap, YSeq, parse_yaml, read_yaml_file
from odibi.errors import ConfigError

DOC = textwrap.dedent("""\
    # a comment line
    project: shop
    connections:
      raw: {type: local, base_path: data}
    vars:
      n: 5
    list:
      - alpha
      - {k: v}
      -   - nested
    sql: |
      SELECT 1
    q: "quoted"
    s: 'single'
    """)


def parse(text: str) -> object:
    return parse_yaml(textwrap.dedent(text), "f.yaml")


def refused(text: str, file: str = "f.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, file)
    return info.value


# -- positions ----------------------------------------------------------------------------
def test_value_is_plain_python() -> None:
    doc = parse_yaml(DOC, "f.yaml")
    assert doc == {
        "project": "shop",
        "connections": {"raw": {"type": "local", "base_path": "data"}},
        "vars": {"n": 5},
        "list": ["alpha", {"k": "v"}, ["nested"]],
        "sql": "SELECT 1\n",
        "q": "quoted",
        "s": "single",
    }
    assert isinstance(doc, YMap) and isinstance(doc, dict)
    assert isinstance(doc["list"], YSeq) and isinstance(doc["list"], list)
    assert type(doc["vars"]["n"]) is int


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml(DOC, "f.yaml")
    assert isinstance(doc, YMap)
    assert doc.mark == (2, 1)  # the comment line does not count
    assert doc.key_marks == {"project": (2, 1), "connections": (3, 1), "vars": (5, 1),
                             "list": (7, 1), "sql": (11, 1), "q": (13, 1), "s": (14, 1)}
    assert doc.value_marks["project"] == (2, 10)
    assert doc.value_marks["connections"] == (4, 3)
    assert doc.value_marks["sql"] == (11, 6)
    assert doc.value_marks["q"] == (13, 4)


def test_positions_inside_flow_mappings() -> None:
    doc = parse_yaml(DOC, "f.yaml")
    raw = doc["connections"]["raw"]
    assert raw.mark == (4, 8)
    assert raw.key_marks == {"type": (4, 9), "base_path": (4, 22)}
    assert raw.value_marks == {"type": (4, 15), "base_path": (4, 33)}
    assert doc["connections"].key_marks == {"raw": (4, 3)}
    assert doc["vars"].key_marks == {"n": (6, 3)}
    assert doc["vars"].value_marks == {"n": (6, 6)}


def test_positions_of_sequence_items() -> None:
    doc = parse_yaml(DOC, "f.yaml")
    items = doc["list"]
    assert items.mark == (8, 3)
    assert items.item_marks == [(8, 5), (9, 5), (10, 7)]
    assert items[1].mark == (9, 5)
    assert items[2].mark == (10, 7)
    assert items[2].item_marks == [(10, 9)]


def test_scalar_styles_are_kept() -> None:
    doc = parse_yaml(DOC, "f.yaml")
    assert doc.value_styles["sql"] == "|"
    assert doc.value_styles["q"] == '"'
    assert doc.value_styles["s"] == "'"
    assert doc.value_styles["project"] == ""
    folded = parse("sql: >\n  SELECT 1\n  FROM t\n")
    assert folded == {"sql": "SELECT 1 FROM t\n"}
    assert folded.value_styles["sql"] == ">"


def test_crlf_and_bom_do_not_shift_positions(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_bytes(b"\xef\xbb\xbfproject: x\r\nvars:\r\n  n: 1\r\n")
    doc, data = read_yaml_file(path)
    assert doc == {"project": "x", "vars": {"n": 1}}
    assert doc.key_marks == {"project": (1, 1), "vars": (2, 1)}
    assert doc["vars"].key_marks == {"n": (3, 3)}
    assert data == path.read_bytes()


def test_empty_document_is_none() -> None:
    assert parse_yaml("", "f.yaml") is None
    assert parse_yaml("# nothing here\n", "f.yaml") is None


# -- refused -----------------------------------------------------------------------------
def test_duplicate_key_is_refused_with_both_lines() -> None:
    err = refused("a: 1\nb: 2\na: 3\n")
    assert err.message == "duplicate key 'a' (first given on line 1)"
    assert err.span is not None
    assert (err.span.file, err.span.line, err.span.col) == ("f.yaml", 3, 1)


def test_duplicate_key_in_a_nested_flow_mapping() -> None:
    err = refused("nodes:\n  - {name: a, sql: x, name: b}\n")
    assert "duplicate key 'name' (first given on line 2)" in err.message
    assert err.span is not None and (err.span.line, err.span.col) == (2, 23)


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly() -> None:
    text = billion_laughs(9)  # 10**9 "lol"s once expanded
    assert len(text) < 1000
    started = time.perf_counter()
    err = refused(text, "bomb.yaml")
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"took {elapsed:.2f}s: the bomb was expanded"
    assert "alias bomb" in err.message
    assert "refused without expanding" in err.message
    assert err.span is not None and err.span.file == "bomb.yaml"


def test_deeper_alias_bomb_is_refused_as_quickly() -> None:
    started = time.perf_counter()
    err = refused(billion_laughs(30))
    assert time.perf_counter() - started < 1.0
    assert "alias bomb" in err.message


def test_modest_anchors_and_aliases_are_accepted() -> None:
    doc = parse("""\
        defaults: &csv {connection: raw, format: csv}
        tags: &t [daily, core]
        nodes:
          - {name: a, read: *csv, tags: *t}
          - {name: b, read: *csv, tags: *t}
        """)
    assert doc["nodes"][0]["read"] == {"connection": "raw", "format": "csv"}
    assert doc["nodes"][1]["tags"] == ["daily", "core"]
    # a shallow alias bomb (10**3 values) is fine: it is small
    small = parse_yaml(billion_laughs(3), "f.yaml")
    assert len(small["a2"]) == 10 and small["a2"][9][9][9] == "lol"


def test_merge_key_adds_keys() -> None:
    doc = parse("""\
        base: &base {connection: raw, format: csv}
        read:
          <<: *base
          path: orders.csv
        """)
    assert doc["read"] == {"connection": "raw", "format": "csv", "path": "orders.csv"}
    assert "<<" not in doc["read"]
    assert doc["read"].key_marks["path"] == (4, 3)


def test_merge_key_explicit_keys_override_merged_ones() -> None:
    # YAML merge keys: keys given in the mapping itself win over merged keys
    doc = parse("""\
        base: &base
          connection: raw
          format: csv
        read:
          <<: *base
          format: parquet
        """)
    assert doc["read"] == {"connection": "raw", "format": "parquet"}
    assert doc["read"].key_marks["format"] == (6, 3)


def test_merge_key_list_first_mapping_wins() -> None:
    # `<<: [*a, *b]`: on a key both give, the first mapping in the list wins
    doc = parse("""\
        a: &a {connection: raw}
        b: &b {connection: out, format: csv}
        read:
          <<: [*a, *b]
        """)
    assert doc["read"] == {"connection": "raw", "format": "csv"}


def test_nesting_up_to_the_limit_is_accepted() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = parse_yaml(text, "f.yaml")
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 20_000])
def test_deep_flow_nesting_is_refused(depth: int) -> None:
    started = time.perf_counter()
    err = refused("[" * depth + "]" * depth)
    assert time.perf_counter() - started < 1.0
    assert "nest" in err.message
    assert err.span is not None and err.span.line == 1


def test_deep_block_nesting_is_refused() -> None:
    depth = MAX_DEPTH + 5
    text = "".join("  " * i + f"k{i}:\n" for i in range(depth))
    err = refused(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in err.message
    assert err.span is not None and err.span.line == MAX_DEPTH + 1


def test_non_utf8_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"project: shop\nvars:\n  city: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        read_yaml_file(path)
    err = info.value
    assert "not valid UTF-8" in err.message
    assert err.span is not None
    assert (err.span.file, err.span.line) == (str(path), 3)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_yaml_file(tmp_path / "nope.yaml")
    assert "file not found" in info.value.message
    assert str(tmp_path / "nope.yaml") in info.value.message


@pytest.mark.parametrize(("text", "line", "col", "phrase"), [
    ("a: [1, 2\nb: 3\n", 1, 4, "'[' is never closed"),
    ("a: {x: 1\nb: 3\n", 1, 4, "'{' is never closed"),
    ("a: b: c\n", 1, 5, "mapping values are not allowed"),
    ("key: 'unterminated\n", 2, 1, "unexpected end of stream"),
    ("nodes:\n  - name: a\n   sql: x\n", 3, 4, "did not find expected '-' indicator"),
    ("a: 1\n\tb: 2\n", 2, 1, "tab character"),
])
def test_syntax_error_is_located(text: str, line: int, col: int, phrase: str) -> None:
    err = refused(text, "p.yaml")
    assert err.message.startswith("YAML syntax error: ")
    assert phrase in err.message
    assert err.span is not None
    assert (err.span.file, err.span.line, err.span.col) == ("p.yaml", line, col)


def test_two_documents_are_refused() -> None:
    err = refused("a: 1\n---\nb: 2\n")
    assert "YAML syntax error" in err.message
    assert err.span is not None and err.span.line == 2


def test_python_tags_never_run_code(tmp_path: Path) -> None:
    err = refused("x: !!python/name:os.system\n")
    assert "could not determine a constructor" in err.message
    assert err.span is not None and (err.span.line, err.span.col) == (1, 4)
    marker = tmp_path / "pwned"
    text = f"x: !!python/object/apply:os.system ['touch {marker}']\n"
    try:
        value = parse_yaml(text, "f.yaml")
    except ConfigError:
        value = None
    assert not marker.exists()
    assert value in (None, {"x": [f"touch {marker}"]})


def test_a_collection_as_key_is_refused() -> None:
    err = refused("? [a, b]\n: 1\n")
    assert "a mapping key must be a plain value" in err.message
    assert err.span is not None and err.span.line == 1
