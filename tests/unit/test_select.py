"""Selectors (DESIGN.md §5): a table of selector texts and the exact node sets they pick
on a small hand-made graph, a table of bad selectors with their caret column and message,
`state:`, and `--exclude` through the CLI.

The graph (edges point from a dependency to its dependant)::

    raw_x -> stg_x -> a -> c -> d -> e
               |      |    |
               |      +-> f +-> chk
               v          ^
    raw_y -> stg_y -> b --+          (b reads stg_x and stg_y; c reads a and b)

    solo (no edges)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from odibi.errors import SelectorError, UnknownNodeError
from odibi.graph import build_graph
from odibi.ids import NodeId
from odibi.select import SelectIndex, parse_selector, select
from tests.conftest import run_cli

DEPS: dict[str, list[str]] = {
    "raw_x": [],
    "raw_y": [],
    "stg_x": ["raw_x"],
    "stg_y": ["raw_y"],
    "a": ["stg_x"],
    "b": ["stg_x", "stg_y"],
    "c": ["a", "b"],
    "d": ["c"],
    "e": ["d"],
    "f": ["a"],
    "chk": ["c"],
    "solo": [],
}
TAGS = {
    "raw_x": {"raw"}, "raw_y": {"raw"}, "stg_x": {"daily"}, "stg_y": set(),
    "a": {"daily", "x"}, "b": {"x"}, "c": {"daily"}, "d": {"weekly"}, "e": set(),
    "f": {"x", "weekly"}, "chk": {"daily"}, "solo": {"x"},
}
PIPELINE = {
    "raw_x": "staging", "raw_y": "staging", "stg_x": "staging", "stg_y": "staging",
    "a": "marts", "b": "marts", "c": "marts", "f": "marts", "chk": "marts",
    "d": "exports", "e": "exports", "solo": "misc",
}
FILE_OF = {
    "staging": "pipelines/staging.yaml",
    "marts": "pipelines/marts/core.yaml",
    "exports": "pipelines/marts/exports.yaml",
    "misc": "odibi.yaml",
}
KIND = {
    "raw_x": "read", "raw_y": "read", "solo": "read",
    "stg_x": "sql", "stg_y": "sql", "a": "sql", "c": "sql", "e": "sql",
    "b": "python", "d": "python", "f": "python",
    "chk": "check",
}
ALL = set(DEPS)


def make_index(state=None) -> SelectIndex:
    graph = build_graph({NodeId(n): [NodeId(d) for d in ds] for n, ds in DEPS.items()})
    return SelectIndex(
        graph=graph,
        tags={NodeId(n): frozenset(t) for n, t in TAGS.items()},
        pipeline={NodeId(n): p for n, p in PIPELINE.items()},
        path={NodeId(n): FILE_OF[p] for n, p in PIPELINE.items()},
        kind={NodeId(n): k for n, k in KIND.items()},
        state=state,
    )


INDEX = make_index()


def pick(text: str, index: SelectIndex = INDEX) -> set[str]:
    return set(select(parse_selector(text), index).nodes)


CASES: list[tuple[str, set[str]]] = [
    # plain names
    ("a", {"a"}),
    ("solo", {"solo"}),
    ("chk", {"chk"}),
    # descendants / ancestors, unbounded
    ("a+", {"a", "c", "d", "e", "f", "chk"}),
    ("+a", {"a", "stg_x", "raw_x"}),
    ("+a+", {"raw_x", "stg_x", "a", "c", "d", "e", "f", "chk"}),
    ("+b", {"b", "stg_x", "stg_y", "raw_x", "raw_y"}),
    ("stg_y+", {"stg_y", "b", "c", "d", "e", "chk"}),
    ("+solo+", {"solo"}),
    ("e+", {"e"}),
    ("+raw_x", {"raw_x"}),
    # bounded depth
    ("1+c", {"c", "a", "b"}),
    ("2+c", {"c", "a", "b", "stg_x", "stg_y"}),
    ("3+c", {"c", "a", "b", "stg_x", "stg_y", "raw_x", "raw_y"}),
    ("c+1", {"c", "d", "chk"}),
    ("c+2", {"c", "d", "e", "chk"}),
    ("1+c+1", {"a", "b", "c", "d", "chk"}),
    ("b+0", {"b"}),
    ("0+b", {"b"}),
    ("10+e", ALL - {"f", "chk", "solo"}),
    # @: the node, its descendants, and all their ancestors
    ("@f", {"f", "a", "stg_x", "raw_x"}),
    ("@b", {"b", "c", "d", "e", "chk", "a", "stg_x", "stg_y", "raw_x", "raw_y"}),
    ("@solo", {"solo"}),
    ("@e", {"e", "d", "c", "a", "b", "stg_x", "stg_y", "raw_x", "raw_y"}),
    # methods
    ("tag:x", {"a", "b", "f", "solo"}),
    ("tag:daily", {"stg_x", "a", "c", "chk"}),
    ("tag:raw", {"raw_x", "raw_y"}),
    ("tag:week*", {"d", "f"}),
    ("tag:*", ALL - {"stg_y", "e"}),
    ("tag:nope", set()),
    ("pipeline:marts", {"a", "b", "c", "f", "chk"}),
    ("pipeline:exp*", {"d", "e"}),
    ("pipeline:staging", {"raw_x", "raw_y", "stg_x", "stg_y"}),
    ("path:pipelines/staging.yaml", {"raw_x", "raw_y", "stg_x", "stg_y"}),
    ("path:pipelines/marts/exports.yaml", {"d", "e"}),
    ("path:pipelines/marts", {"a", "b", "c", "f", "chk", "d", "e"}),
    ("path:pipelines/marts/", {"a", "b", "c", "f", "chk", "d", "e"}),
    ("path:pipelines", ALL - {"solo"}),
    ("path:odibi.yaml", {"solo"}),
    ("path:pipe", set()),  # a prefix that is not a whole directory name matches nothing
    ("path:pipelines/marts/*.yaml", {"a", "b", "c", "f", "chk", "d", "e"}),
    ("kind:sql", {"stg_x", "stg_y", "a", "c", "e"}),
    ("kind:python", {"b", "d", "f"}),
    ("kind:read", {"raw_x", "raw_y", "solo"}),
    ("kind:check", {"chk"}),
    # globs
    ("stg_*", {"stg_x", "stg_y"}),
    ("raw_?", {"raw_x", "raw_y"}),
    ("?", {"a", "b", "c", "d", "e", "f"}),
    ("[ab]*", {"a", "b"}),
    ("[!a-e]", {"f"}),
    ("*_y", {"raw_y", "stg_y"}),
    ("*", ALL),
    ("zz*", set()),
    # union (space), intersection (comma)
    ("a b", {"a", "b"}),
    ("a  b", {"a", "b"}),
    ("  a\tb  ", {"a", "b"}),
    ("a\nb", {"a", "b"}),
    ("a a", {"a"}),
    ("a,b", set()),
    ("a,a", {"a"}),
    ("stg_*,tag:daily", {"stg_x"}),
    ("pipeline:marts,kind:sql", {"a", "c"}),
    ("pipeline:marts,kind:sql,tag:x", {"a"}),
    ("tag:x tag:weekly", {"a", "b", "f", "solo", "d"}),
    ("+c,tag:x", {"a", "b"}),
    ("a+,path:pipelines/marts/exports.yaml", {"d", "e"}),
    ("@f,kind:read", {"raw_x"}),
    # graph operators on methods, and combinations
    ("+tag:daily+", ALL - {"solo"}),
    ("tag:weekly+", {"d", "e", "f"}),
    ("1+tag:weekly", {"d", "f", "c", "a"}),
    ("+tag:weekly", {"d", "f", "c", "a", "b", "stg_x", "stg_y", "raw_x", "raw_y"}),
    ("2+a+1,tag:x b", {"a", "b", "f"}),
    ("2+a+1,tag:x", {"a", "f"}),
    ("a+ solo", {"a", "c", "d", "e", "f", "chk", "solo"}),
    ("@f,tag:x stg_*,+b", {"a", "f", "stg_x", "stg_y"}),
    ("pipeline:staging+1,kind:python", {"b"}),
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({text for text, _ in CASES}) == len(CASES), "duplicate selector in CASES"


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_selector_picks_exactly(text: str, expected: set[str]) -> None:
    assert pick(text) == expected


def test_empty_terms_are_reported_for_globs_and_methods_that_match_nothing() -> None:
    s = select(parse_selector("zz* a tag:nope pipeline:gone"), INDEX)
    assert s.nodes == frozenset({"a"})
    assert s.empty_terms == ("zz*", "tag:nope", "pipeline:gone")


def test_an_empty_intersection_is_not_a_warning() -> None:
    s = select(parse_selector("a,b"), INDEX)
    assert s.nodes == frozenset()
    assert s.empty_terms == ()


def test_parse_keeps_the_text_and_columns() -> None:
    sel = parse_selector("2+a+1,tag:x b")
    assert sel.text == "2+a+1,tag:x b"
    assert len(sel.terms) == 2
    first, second = sel.terms
    assert len(first) == 2 and len(second) == 1
    atom = first[0]
    assert (atom.up, atom.up_depth, atom.down, atom.down_depth, atom.at) == (True, 2, True, 1, False)
    assert atom.base.text == "a" and atom.base.col == 3
    method = first[1].base
    assert (method.method, method.value, method.col) == ("tag", "x", 7)
    assert second[0].base.text == "b" and second[0].base.col == 13


# -- bad selectors ------------------------------------------------------------------------
# (text, error class, caret column, a phrase the message must contain, a phrase of the hint
# or None)
BAD: list[tuple[str, type[SelectorError], int, str, str | None]] = [
    ("a,,b", SelectorError, 3, "a comma needs a selector on both sides", None),
    (",a", SelectorError, 1, "a comma needs a selector on both sides", None),
    ("a,", SelectorError, 2, "a comma needs a selector on both sides", None),
    ("+", SelectorError, 1, "'+' must touch a node or method", None),
    ("+ a", SelectorError, 2, "'+' must touch a node or method", None),
    ("a +", SelectorError, 3, "'+' must touch a node or method", None),
    ("tag:", SelectorError, 1, "a method needs a value after ':'", None),
    ("tag: x", SelectorError, 5, "a method needs a value after ':'", None),
    ("1a", SelectorError, 1, "a depth must be followed by '+'", None),
    ("a;b", SelectorError, 2, "unexpected character ';'", None),
    ("a=1", SelectorError, 2, "unexpected character '='", None),
    ("(a)", SelectorError, 1, "unexpected character '('", None),
    ("@", SelectorError, 1, "'@' needs a node right after it", None),
    ("@+a", SelectorError, 2, "'@' needs a node right after it", None),
    ("a++", SelectorError, 3, "unexpected '+'", None),
    ("a+b", SelectorError, 3, "unexpected 'b'", None),
    ("foo:bar", SelectorError, 1, "unknown selector method 'foo:'",
     "methods: tag, pipeline, path, state, kind"),
    ("tagg:x", SelectorError, 1, "unknown selector method 'tagg:'", "did you mean 'tag'?"),
    ("a pipelin:marts", SelectorError, 3, "unknown selector method 'pipelin:'",
     "did you mean 'pipeline'?"),
    ("state:bogus", SelectorError, 1, "unknown state 'bogus'", "states: modified, new"),
    ("state:modifed", SelectorError, 1, "unknown state 'modifed'", "did you mean 'modified'?"),
    ("kind:table", SelectorError, 1, "unknown kind 'table'", "kinds: read, sql, python, check"),
    ("nope", UnknownNodeError, 1, "no node named 'nope'", None),
    ("a stg_xx", UnknownNodeError, 3, "no node named 'stg_xx'", "did you mean 'stg_x'?"),
    ("+stg_xx+", UnknownNodeError, 2, "no node named 'stg_xx'", "did you mean 'stg_x'?"),
    ("a,b c,zz", UnknownNodeError, 7, "no node named 'zz'", None),
    ("soloo", UnknownNodeError, 1, "no node named 'soloo'", "did you mean 'solo'?"),
    ("   ", SelectorError, 1, "empty selector", None),
    # an empty selector is not a comma problem: it says the selector ended too early
    ("", SelectorError, 1, "empty selector", None),
]


def test_the_bad_table_is_large_enough() -> None:
    assert len(BAD) >= 12


@pytest.mark.parametrize(("text", "error", "col", "phrase", "hint"), BAD,
                         ids=[repr(b[0]) for b in BAD])
def test_bad_selector(text: str, error: type[SelectorError], col: int, phrase: str,
                      hint: str | None) -> None:
    with pytest.raises(SelectorError) as info:
        select(parse_selector(text), INDEX)
    err = info.value
    assert type(err) is error
    assert phrase in err.message
    assert err.span is not None
    assert (err.span.file, err.span.line, err.span.col) == ("<selector>", 1, col)
    assert err.span.text == " ".join(text.split("\n"))  # the caret line shows the selector
    if hint is not None:
        assert err.hint is not None and hint in err.hint


def test_unknown_node_error_is_a_selector_error() -> None:
    with pytest.raises(SelectorError):
        pick("nope")
    assert issubclass(UnknownNodeError, SelectorError)


def test_a_method_is_lower_case() -> None:
    # `Tag:x` is read as the name `Tag` followed by a stray ':'
    with pytest.raises(SelectorError) as info:
        parse_selector("Tag:x")
    assert info.value.span is not None and info.value.span.col == 4
    assert "unexpected character ':'" in info.value.message


# -- state: -------------------------------------------------------------------------------
def test_state_modified_uses_the_callback() -> None:
    asked: list[str] = []

    def state(which: str) -> frozenset[NodeId]:
        asked.append(which)
        return frozenset({NodeId("a"), NodeId("c")}) if which == "modified" else frozenset()

    index = make_index(state)
    assert pick("state:modified", index) == {"a", "c"}
    assert pick("state:modified+", index) == {"a", "c", "d", "e", "f", "chk"}
    assert pick("state:modified,tag:x", index) == {"a"}
    assert pick("+state:modified,kind:read", index) == {"raw_x", "raw_y"}
    assert asked == ["modified"] * 4
    s = select(parse_selector("state:new"), index)
    assert s.nodes == frozenset()
    assert s.empty_terms == ()  # an empty state is normal, not a warning
    assert asked[-1] == "new"


def test_state_without_a_callback_is_an_error() -> None:
    with pytest.raises(SelectorError) as info:
        pick("a state:modified")
    err = info.value
    assert "state:modified is not available" in err.message
    assert err.span is not None and err.span.col == 3


# -- --exclude through the CLI ------------------------------------------------------------
def test_exclude_through_the_cli(shop: Path) -> None:
    r = run_cli("-C", str(shop), "ls", "+customer_segments", "--exclude", "raw_*")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "customer_orders", "customer_segments", "order_payments",
        "stg_customers", "stg_orders", "stg_payments",
    ]
    assert r.err == ""


def test_exclude_is_repeatable_and_takes_selectors(shop: Path) -> None:
    r = run_cli("-C", str(shop), "ls", "tag:daily", "--exclude", "customer_segments+",
                "--exclude", "daily_*")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["customer_orders"]


def test_exclude_alone_starts_from_every_node(shop: Path) -> None:
    r = run_cli("-C", str(shop), "ls", "--exclude", "pipeline:marts")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["raw_customers", "raw_orders", "raw_payments",
                                  "stg_customers", "stg_orders", "stg_payments"]


def test_exclude_that_matches_nothing_warns(shop: Path) -> None:
    r = run_cli("-C", str(shop), "ls", "stg_orders", "--exclude", "zz*")
    assert r.code == 0
    assert r.out.splitlines() == ["stg_orders"]
    assert "warning: --exclude 'zz*' matches no node" in r.err


def test_bad_exclude_is_a_usage_error(shop: Path) -> None:
    r = run_cli("-C", str(shop), "ls", "--exclude", "a,,b")
    assert r.code == 2
    assert r.out == ""
    assert "a comma needs a selector on both sides" in r.err
    assert "Traceback" not in r.err
