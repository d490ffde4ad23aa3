"""Fuzzing the parsers (issue #9, "Bad input"): whatever the text, the selector parser, the
SQL layer and the project loader (YAML, config, references, SQL, rules, through `odibi
validate`) give a result or a located `UserError`, never another exception. The rule
expression parser has its own fuzz test (tests/unit/test_expr.py,
`test_any_text_parses_or_is_a_located_syntax_error`, 600 examples).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odibi.errors import SelectorError
from odibi.select import parse_selector, select
from odibi.sql import SqlInfo, SqlProblem, analyze
from tests.conftest import run_cli
from tests.e2e.test_bad_projects import _LOCATED
from tests.unit.test_select import INDEX


def soup(tokens: list[str], size: int = 12) -> st.SearchStrategy[str]:
    """Raw text, and sequences of the grammar's own tokens (which get further in)."""
    return st.one_of(
        st.text(max_size=40),
        st.lists(st.sampled_from(tokens), max_size=size).map(" ".join),
        st.lists(st.sampled_from(tokens), max_size=size).map("".join),
    )


# -- selectors -----------------------------------------------------------------------------
SELECTOR_TOKENS = ["a", "b", "stg_*", "+", "@", "1", "2", ",", " ", "tag:", "daily",
                   "pipeline:", "path:", "state:", "modified", "*", "?", "[", "]", ":", "-",
                   "x/y.yaml", "\n", "é", "tag", "++", "3+", "+2"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(soup(SELECTOR_TOKENS))
def test_any_selector_text_selects_or_is_a_located_error(text: str) -> None:
    try:
        selection = select(parse_selector(text), INDEX)
    except SelectorError as e:
        assert e.span is not None and e.message, text
        assert 1 <= e.span.col <= len(text) + 2, (text, e.span)
        return
    assert selection is not None


# -- SQL -------------------------------------------------------------------------------------
SQL_TOKENS = ["SELECT", "*", "FROM", "a", "b", "WHERE", "x", ">", "1", "(", ")", ",", ";",
              "JOIN", "USING", "'s'", '"q"', "--c\n", "/*", "*/", "WITH", "AS", "GROUP BY",
              "DROP TABLE", "read_csv('f')", "UNION", "$1", "?", "é", "\x00", "\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(soup(SQL_TOKENS, 16), min_size=1, max_size=3))
def test_any_sql_text_is_analyzed_or_is_a_located_problem(texts: list[str]) -> None:
    results = analyze(texts)
    assert set(results) == set(texts)
    for text, result in results.items():
        if isinstance(result, SqlProblem):
            assert result.message and "\n" not in result.message, (text, result)
            assert result.offset is None or 0 <= result.offset <= len(text), (text, result)
        else:
            assert isinstance(result, SqlInfo), (text, result)
            assert all(-1 <= t.offset <= len(text) for t in result.tables), (text, result)


# -- the project loader, through `odibi validate` --------------------------------------------
VALID = """\
project: p
connections:
  raw: {type: local, base_path: data}
vars:
  n: 1
nodes:
  - name: a
    read: {connection: raw, path: a.csv, format: csv}
    contracts: [row_count > 0]
  - name: b
    sql: SELECT id FROM a WHERE id > ${vars.n}
    validate:
      - unique(id)
    write: {connection: raw, path: b.csv}
checks:
  - name: c
    assert: row_count(b) <= row_count(a)
"""
YAML_TOKENS = [": ", "\n", "  ", "- ", "{", "}", "[", "]", ",", "&x ", "*x", "<<: ", "!!str ",
               "'", '"', "#", "name", "sql", "read", "nodes", "a", "b", "${", "}", "vars.n",
               "env:", "|", ">", "\t", "~", "null", "1", "yes", "project", "depends_on"]


@st.composite
def mutated_projects(draw: st.DrawFn) -> str:
    """The valid project with a few random cuts, insertions and token splices."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(("cut", "insert", "token")))
        if how == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif how == "insert":
            text = text[:at] + draw(st.text(max_size=4)) + text[at:]
        else:
            text = text[:at] + draw(st.sampled_from(YAML_TOKENS)) + text[at:]
    return text


_root = Path(tempfile.mkdtemp(prefix="odibi-fuzz-"))
(_root / "data").mkdir()
(_root / "data" / "a.csv").write_text("id\n1\n")


def test_the_unmutated_project_is_valid() -> None:
    (_root / "odibi.yaml").write_text(VALID)
    r = run_cli("-C", str(_root), "validate")
    assert r.code == 0, r.text


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_projects())
def test_any_project_text_validates_or_is_a_located_error(text: str) -> None:
    (_root / "odibi.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    r = run_cli("-C", str(_root), "validate")
    assert r.code in (0, 2), r.text
    assert "Traceback" not in r.text and "please report" not in r.text, r.text
    if r.code == 2:
        assert _LOCATED.search(r.err), f"not located:\n{r.err}\n--- from\n{text}"
    assert sorted(p.name for p in _root.iterdir()) == ["data", "odibi.yaml"]
