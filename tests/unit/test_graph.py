"""The dependency graph: deterministic topological order, cycles reported as real paths,
ancestors/descendants with and without depth; plus property tests on random DAGs."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odibi.errors import CycleError
from odibi.graph import Graph, ancestors, build_graph, descendants
from odibi.ids import NodeId

# z is a source; names are chosen so that alphabetical order is NOT a valid order
DIAMOND = {
    "z_src": [],
    "m_left": ["z_src"],
    "b_right": ["z_src"],
    "a_join": ["m_left", "b_right"],
    "c_tail": ["a_join"],
    "k_alone": [],
}


def g(deps: dict[str, list[str]]) -> Graph:
    return build_graph({NodeId(n): [NodeId(d) for d in ds] for n, ds in deps.items()})


def names(graph: Graph, indices: set[int]) -> set[str]:
    return {graph.names[i] for i in indices}


def idx(graph: Graph, *ns: str) -> list[int]:
    return [graph.index[NodeId(n)] for n in ns]


def assert_respects_edges(graph: Graph, deps: dict[str, list[str]]) -> None:
    pos = {n: i for i, n in enumerate(graph.names)}
    assert set(pos) == set(deps)
    for node, ds in deps.items():
        for d in ds:
            assert pos[d] < pos[node], f"{d} must come before {node}"


# -- order ----------------------------------------------------------------------------
def test_order_respects_every_edge_and_breaks_ties_by_name() -> None:
    graph = g(DIAMOND)
    assert_respects_edges(graph, DIAMOND)
    assert graph.names == ("k_alone", "z_src", "b_right", "m_left", "a_join", "c_tail")
    assert len(graph) == 6


def test_ties_are_broken_by_name() -> None:
    assert g({"c": [], "a": [], "b": []}).names == ("a", "b", "c")
    # a chain wins over the alphabet
    assert g({"a": ["b"], "b": ["c"], "c": []}).names == ("c", "b", "a")


def test_order_does_not_depend_on_dict_or_list_order() -> None:
    expected = g(DIAMOND)
    items = list(DIAMOND.items())
    rng = random.Random(7)
    for perm in itertools.permutations(items):
        shuffled = {n: rng.sample(ds, len(ds)) for n, ds in perm}
        graph = g(shuffled)
        assert graph.names == expected.names
        assert graph.parents == expected.parents
        assert graph.children == expected.children


def test_index_parents_children_agree() -> None:
    graph = g(DIAMOND)
    for i, n in enumerate(graph.names):
        assert graph.index[n] == i
        for p in graph.parents[i]:
            assert i in graph.children[p]
        assert list(graph.parents[i]) == sorted(graph.parents[i])
        assert list(graph.children[i]) == sorted(graph.children[i])
    assert graph.upstream(NodeId("a_join")) == ("b_right", "m_left")
    assert graph.downstream(NodeId("z_src")) == ("b_right", "m_left")
    assert graph.upstream(NodeId("z_src")) == ()
    assert graph.downstream(NodeId("c_tail")) == ()


def test_duplicate_dependencies_count_once() -> None:
    graph = g({"a": [], "b": ["a", "a"]})
    assert graph.upstream(NodeId("b")) == ("a",)
    assert graph.downstream(NodeId("a")) == ("b",)


def test_ordered_sorts_any_subset_into_build_order() -> None:
    graph = g(DIAMOND)
    assert graph.ordered([NodeId("c_tail"), NodeId("z_src"), NodeId("m_left")]) == [
        "z_src", "m_left", "c_tail"]
    assert graph.ordered([]) == []


def test_empty_graph() -> None:
    graph = g({})
    assert graph.names == ()
    assert len(graph) == 0


# -- cycles -----------------------------------------------------------------------------
def assert_real_cycle(cycle: tuple[str, ...], deps: dict[str, list[str]]) -> None:
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1, "a cycle path visits each node once"
    for before, after in zip(cycle, cycle[1:]):
        assert before in deps[after], f"{after} does not depend on {before}"


def test_self_loop() -> None:
    deps = {"a": ["a"], "b": []}
    with pytest.raises(CycleError) as info:
        g(deps)
    assert info.value.cycle == ("a", "a")
    assert_real_cycle(info.value.cycle, deps)
    assert "a → a" in info.value.message
    assert info.value.node == "a"


def test_two_cycle() -> None:
    deps = {"a": ["b"], "b": ["a"]}
    with pytest.raises(CycleError) as info:
        g(deps)
    assert sorted(info.value.cycle[:-1]) == ["a", "b"]
    assert_real_cycle(info.value.cycle, deps)
    assert info.value.message == "dependency cycle: " + " → ".join(info.value.cycle)


def test_cycle_buried_in_a_larger_dag() -> None:
    # src -> p -> q -> r -> s -> p is a cycle; t hangs off it; other nodes are fine
    deps = {
        "src": [], "other": ["src"], "p": ["src", "s"], "q": ["p"], "r": ["q", "other"],
        "s": ["r"], "t": ["s"], "u": ["t"], "aaa": [], "zzz": ["aaa"],
    }
    with pytest.raises(CycleError) as info:
        g(deps)
    cycle = info.value.cycle
    assert_real_cycle(cycle, deps)
    assert set(cycle) == {"p", "q", "r", "s"}
    assert len(cycle) == 5


def test_cycle_among_nodes_that_also_feed_a_dag() -> None:
    # the stuck region contains nodes downstream of the cycle that are not on it
    deps = {"a": ["c"], "b": ["a"], "c": ["b"], "d": ["c"], "e": ["d", "a"]}
    with pytest.raises(CycleError) as info:
        g(deps)
    assert_real_cycle(info.value.cycle, deps)
    assert set(info.value.cycle) == {"a", "b", "c"}


def test_cycle_report_is_deterministic() -> None:
    deps = {"x": ["y"], "y": ["z"], "z": ["x"], "w": []}
    seen = set()
    for perm in itertools.permutations(deps.items()):
        with pytest.raises(CycleError) as info:
            g(dict(perm))
        seen.add(info.value.cycle)
    assert len(seen) == 1
    (cycle,) = seen
    assert_real_cycle(cycle, deps)


# -- ancestors / descendants ------------------------------------------------------------
def test_ancestors_and_descendants_unbounded() -> None:
    graph = g(DIAMOND)
    assert names(graph, ancestors(graph, idx(graph, "c_tail"))) == {
        "a_join", "m_left", "b_right", "z_src"}
    assert names(graph, descendants(graph, idx(graph, "z_src"))) == {
        "m_left", "b_right", "a_join", "c_tail"}
    assert names(graph, ancestors(graph, idx(graph, "z_src"))) == set()
    assert names(graph, descendants(graph, idx(graph, "k_alone"))) == set()
    # several starts: the union, starts excluded
    assert names(graph, ancestors(graph, idx(graph, "m_left", "b_right"))) == {"z_src"}


def test_ancestors_and_descendants_with_depth() -> None:
    graph = g(DIAMOND)
    c = idx(graph, "c_tail")
    assert names(graph, ancestors(graph, c, 0)) == set()
    assert names(graph, ancestors(graph, c, 1)) == {"a_join"}
    assert names(graph, ancestors(graph, c, 2)) == {"a_join", "m_left", "b_right"}
    assert names(graph, ancestors(graph, c, 3)) == {"a_join", "m_left", "b_right", "z_src"}
    assert names(graph, ancestors(graph, c, 99)) == {"a_join", "m_left", "b_right", "z_src"}
    z = idx(graph, "z_src")
    assert names(graph, descendants(graph, z, 1)) == {"m_left", "b_right"}
    assert names(graph, descendants(graph, z, 2)) == {"m_left", "b_right", "a_join"}


def test_depth_counts_the_shortest_path() -> None:
    # d reaches a both directly and through b -> c: a is at distance 1
    graph = g({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]})
    assert names(graph, ancestors(graph, idx(graph, "d"), 1)) == {"a", "c"}
    assert names(graph, descendants(graph, idx(graph, "a"), 1)) == {"b", "d"}


# -- properties on random DAGs ------------------------------------------------------------
@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(min_value=1, max_value=14))
    # random names, so that the alphabet and the dependency order disagree
    labels = draw(st.lists(st.text("abcdefghij_", min_size=1, max_size=4)
                           .filter(lambda s: not s[0] == "_"),
                           min_size=n, max_size=n, unique=True))
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(labels):
        earlier = labels[:i]
        deps[name] = draw(st.lists(st.sampled_from(earlier), max_size=4)) if earlier else []
    order = draw(st.permutations(labels))
    return {name: deps[name] for name in order}


def reach(deps: dict[str, list[str]], start: str) -> dict[str, int]:
    """Brute force: every node upstream of start, with its shortest distance."""
    dist: dict[str, int] = {}
    frontier = [start]
    level = 0
    while frontier:
        level += 1
        nxt = []
        for node in frontier:
            for d in deps[node]:
                if d not in dist:
                    dist[d] = level
                    nxt.append(d)
        frontier = nxt
    return dist


def reverse(deps: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            out[d].append(n)
    return out


@settings(max_examples=100, deadline=None, database=None)
@given(dags())
def test_random_dag_order_respects_edges(deps: dict[str, list[str]]) -> None:
    graph = g(deps)
    assert_respects_edges(graph, deps)
    # deterministic: the same graph whatever the dict order
    assert g(dict(sorted(deps.items()))).names == graph.names
    assert g(dict(reversed(list(deps.items())))).names == graph.names


@settings(max_examples=100, deadline=None, database=None)
@given(dags(), st.data())
def test_random_dag_ancestors_equal_brute_force(deps: dict[str, list[str]],
                                                data: st.DataObject) -> None:
    graph = g(deps)
    node = data.draw(st.sampled_from(sorted(deps)))
    up = reach(deps, node)
    down = reach(reverse(deps), node)
    start = idx(graph, node)
    assert names(graph, ancestors(graph, start)) == set(up)
    assert names(graph, descendants(graph, start)) == set(down)
    depth = data.draw(st.integers(min_value=0, max_value=5))
    assert names(graph, ancestors(graph, start, depth)) == {n for n, k in up.items() if k <= depth}
    assert names(graph, descendants(graph, start, depth)) == {
        n for n, k in down.items() if k <= depth}


@settings(max_examples=100, deadline=None, database=None)
@given(dags(), st.data())
def test_random_back_edge_gives_a_real_cycle(deps: dict[str, list[str]],
                                             data: st.DataObject) -> None:
    # add an edge from a node to one of its ancestors (or itself): that closes a cycle
    node = data.draw(st.sampled_from(sorted(deps)))
    candidates = sorted(set(reach(deps, node)) | {node})
    target = data.draw(st.sampled_from(candidates))
    cyclic = {n: list(ds) for n, ds in deps.items()}
    cyclic[target] = cyclic[target] + [node]
    with pytest.raises(CycleError) as info:
        g(cyclic)
    assert_real_cycle(info.value.cycle, cyclic)
