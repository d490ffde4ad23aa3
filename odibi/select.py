"""Selectors: text -> frozen AST (`parse_selector`) and AST x graph -> node set (`select`).

The grammar is `grammar/selector.lark`. Semantics follow dbt's: a space is a union, a
comma an intersection; `+x` adds ancestors, `x+` descendants (`2+x`, `x+1` bound the
depth); `@x` is x, its descendants and all their ancestors; patterns are shell globs.
A plain name that is not a node is an error with a did-you-mean; a glob or method that
matches nothing is reported as a warning by the caller (`Selection.empty_terms`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from odibi.errors import SelectorError, Span, UnknownNodeError, did_you_mean
from odibi.graph import Graph, ancestors, descendants
from odibi.ids import NodeId

METHODS = ("tag", "pipeline", "path", "state", "kind")
STATES = ("modified", "new")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    col: int


@dataclass(frozen=True, slots=True)
class Method:
    method: str
    value: str
    col: int


Base = Pattern | Method


@dataclass(frozen=True, slots=True)
class Atom:
    base: Base
    up: bool = False
    up_depth: int | None = None  # None = unlimited
    down: bool = False
    down_depth: int | None = None
    at: bool = False


@dataclass(frozen=True, slots=True)
class Selector:
    """A union of intersections of atoms, and the text it came from."""

    text: str
    terms: tuple[tuple[Atom, ...], ...]


@dataclass(frozen=True, slots=True)
class SelectIndex:
    """What selectors can see of a project besides its graph."""

    graph: Graph
    tags: Mapping[NodeId, frozenset[str]]
    pipeline: Mapping[NodeId, str]
    path: Mapping[NodeId, str]  # project-relative YAML file
    kind: Mapping[NodeId, str]
    state: Callable[[str], frozenset[NodeId]] | None = None  # 'modified'/'new' -> nodes
    sql_path: Mapping[NodeId, str] = field(default_factory=dict)  # a node's .sql file


def parse_selector(text: str) -> Selector:
    """Parse; raises SelectorError with a caret at the offending column."""
    from lark.exceptions import UnexpectedInput

    from odibi.grammars import lalr_parser

    source = " ".join(text.split("\n"))
    if not source.strip():
        raise SelectorError("empty selector", span=Span("<selector>", 1, 1, text=source),
                            hint="leave the selector out to select every node")
    try:
        tree = lalr_parser("selector.lark").parse(source)
    except UnexpectedInput as e:
        col = getattr(e, "column", 1) or 1
        if col < 1:
            col = len(source) + 1
        label = _friendly(e, source)
        raise SelectorError(f"invalid selector '{source}': {label}",
                            span=Span("<selector>", 1, col, text=source),
                            hint="e.g. 'name', '+name', 'name+2', 'tag:daily', 'a,b' (both), "
                                 "'a b' (either)") from None
    terms = tuple(tuple(_atom(a) for a in term.children) for term in tree.children)
    return Selector(source, terms)


_EXAMPLES = {
    "a comma needs a selector on both sides": [",a", "a,", "a,,b"],
    "'+' must touch a node or method, without spaces": ["+ a", "a +", "+"],
    "a method needs a value after ':'": ["tag:", "tag: x"],
    "'@' needs a node right after it": ["@", "@ a", "@+a"],
}


def _friendly(e: Exception, source: str) -> str:
    from lark.exceptions import UnexpectedCharacters

    from odibi.grammars import lalr_parser

    token = getattr(e, "token", None)
    stray = token is not None and getattr(token, "type", "") == "VALUE"
    if isinstance(e, UnexpectedCharacters) or stray:
        pos = e.pos_in_stream if isinstance(e, UnexpectedCharacters) else token.start_pos  # type: ignore[union-attr]
        char = source[pos] if pos is not None and pos < len(source) else ""
        if char.isdigit():
            return "a depth must be followed by '+' (2+name); names cannot start with a digit"
        return f"unexpected character '{char}'"
    try:
        label = e.match_examples(lalr_parser("selector.lark").parse, _EXAMPLES,  # type: ignore[attr-defined]
                                 use_accepts=True)
    except Exception:  # noqa: BLE001 - labels are a nicety; fall back to lark's own words
        label = None
    if label:
        return str(label)
    if token is not None and str(token):
        return f"unexpected '{token}'"
    return "unexpected end of selector"


def _atom(tree: object) -> Atom:
    data = tree.data  # type: ignore[attr-defined]
    kids = tree.children  # type: ignore[attr-defined]
    if data == "at":
        return Atom(_base(kids[1]), at=True)
    up = down = False
    up_depth = down_depth = None
    base = None
    for k in kids:
        kind = getattr(k, "type", None)
        if kind == "UP":
            up, up_depth = True, (int(k[:-1]) if len(k) > 1 else None)
        elif kind == "DOWN":
            down, down_depth = True, (int(k[1:]) if len(k) > 1 else None)
        else:
            base = _base(k)
    assert base is not None
    return Atom(base, up, up_depth, down, down_depth)


def _base(tree: object) -> Base:
    kids = tree.children  # type: ignore[attr-defined]
    if tree.data == "method":  # type: ignore[attr-defined]
        return Method(str(kids[0])[:-1], str(kids[1]), kids[0].column)
    return Pattern(str(kids[0]), kids[0].column)


@dataclass(frozen=True, slots=True)
class Selection:
    nodes: frozenset[NodeId]
    empty_terms: tuple[str, ...]  # globs/methods that matched nothing (for a warning)


def select(selector: Selector, index: SelectIndex) -> Selection:
    graph = index.graph
    chosen: set[int] = set()
    empty: list[str] = []
    for term in selector.terms:
        acc: set[int] | None = None
        for atom in term:
            found = _eval_atom(atom, index, selector.text, empty)
            acc = found if acc is None else acc & found
        chosen |= acc or set()
    return Selection(frozenset(graph.names[i] for i in chosen), tuple(empty))


def _eval_atom(atom: Atom, index: SelectIndex, text: str, empty: list[str]) -> set[int]:
    graph = index.graph
    base = _eval_base(atom.base, index, text, empty)
    if atom.at:
        down = base | descendants(graph, base)
        return down | ancestors(graph, down)
    result = set(base)
    if atom.up:
        result |= ancestors(graph, base, atom.up_depth)
    if atom.down:
        result |= descendants(graph, base, atom.down_depth)
    return result


def _path_glob(pattern: str) -> re.Pattern[str]:
    """A path glob: '*' and '?' stay within one directory, '**' crosses them."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _under(rx: re.Pattern[str], want: str, path: str | None) -> bool:
    """Whether `path` matches a `path:` selector's glob or lies in its directory."""
    return path is not None and (rx.match(path) is not None or path.startswith(want + "/"))


def _eval_base(base: Base, index: SelectIndex, text: str, empty: list[str]) -> set[int]:
    graph = index.graph
    span = Span("<selector>", 1, base.col, text=text)
    if isinstance(base, Pattern):
        if not (_GLOB_CHARS & set(base.text)):
            i = graph.index.get(NodeId(base.text))
            if i is None:
                span = Span("<selector>", 1, base.col, text=text, width=len(base.text))
                raise UnknownNodeError(f"no node named '{base.text}'", span=span,
                                       hint=did_you_mean(base.text, graph.names))
            return {i}
        found = {i for i, n in enumerate(graph.names) if fnmatch.fnmatchcase(n, base.text)}
        if not found:
            empty.append(base.text)
        return found
    match base.method:
        case "tag":
            found = {graph.index[n] for n, tags in index.tags.items()
                     if any(fnmatch.fnmatchcase(t, base.value) for t in tags)}
        case "pipeline":
            found = {graph.index[n] for n, p in index.pipeline.items()
                     if fnmatch.fnmatchcase(p, base.value)}
        case "path":
            want = base.value.rstrip("/")
            rx = _path_glob(want)
            found = {graph.index[n] for n, p in index.path.items()  # its YAML or .sql file
                     if _under(rx, want, p) or _under(rx, want, index.sql_path.get(n))}
        case "kind":
            found = {graph.index[n] for n, k in index.kind.items() if k == base.value}
            if base.value not in set(index.kind.values()) | {"read", "sql", "python", "check"}:
                raise SelectorError(f"unknown kind '{base.value}'", span=span,
                                    hint="kinds: read, sql, python, check")
        case "state":
            if base.value not in STATES:
                raise SelectorError(f"unknown state '{base.value}'", span=span,
                                    hint=did_you_mean(base.value, STATES)
                                    or f"states: {', '.join(STATES)}")
            if index.state is None:
                raise SelectorError(f"state:{base.value} is not available to this command",
                                    span=span)
            found = {graph.index[n] for n in index.state(base.value)}
            return found  # an empty state selection is normal, not worth a warning
        case _:
            raise SelectorError(f"unknown selector method '{base.method}:'", span=span,
                                hint=did_you_mean(base.method, METHODS)
                                or f"methods: {', '.join(METHODS)}")
    if not found:
        empty.append(f"{base.method}:{base.value}")
    return found
