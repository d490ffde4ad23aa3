"""Join keys of a SQL node, for `odibi test --generate`: which columns of which inputs its
statement equates, so that a sample of one input can be matched by rows of the others.

Read from DuckDB's parse tree (`odibi.sql.parse_tree`). A key is found in
- the conjuncts (`AND`) of a JOIN's `ON` and of a `WHERE` that equate a column of one input
  with a column of another: `o.customer_id = c.id`, `orders.k = main.customers.k`, or names
  left unqualified that exactly one input of the statement has;
- `USING (k)` and `NATURAL` joins: the first input on each side that has the column.
A table is an input when it is named as one (unqualified or in schema `main`) and no CTE of
the statement has its name. An alias stands for its table; an alias given to two different
tables, to a subquery or to a table function stands for nothing. Equalities under OR or NOT,
or between expressions rather than columns, are not keys; nor is anything inside a subquery
that reads no input directly.

All of it only chooses sample rows: a wrong guess gives a less telling sample, never a
failing test (the expected rows are computed from whatever was sampled). Pure functions;
the plan (`SampleStep`, `JoinKey`: engine-neutral, in odibi/engines/tools.py) is followed
by the engine (`odibi.engines.sample`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from odibi.engines.tools import JoinKey, SampleStep

_EQUALS = ("COMPARE_EQUAL", "COMPARE_NOT_DISTINCT_FROM")
# the kinds of table reference in DuckDB's tree (expressions carry a "class" besides)
_TABLE_REFS = frozenset({"BASE_TABLE", "SUBQUERY", "TABLE_FUNCTION", "JOIN", "EXPRESSION_LIST",
                         "PIVOT", "SHOW_REF", "COLUMN_DATA", "DELIM_GET", "EMPTY_FROM"})
Column = tuple[str, str]  # (input, column as spelled in its schema)


@dataclass(frozen=True, slots=True)
class JoinShape:
    """The inputs in the order the statement first names them (those it never names after,
    in the order given), and the keys between them."""

    order: tuple[str, ...]
    keys: tuple[JoinKey, ...]


def join_shape(tree: Any, columns: Mapping[str, Sequence[str]]) -> JoinShape:
    """The join keys of a statement (`parse_tree`'s value) between the inputs `columns`
    names (input -> its column names; both matched without regard to case, as DuckDB
    does). Keys and columns are given as spelled in `columns`."""
    scope = _Scope(tree, columns)
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (a, ca), (b, cb) in scope.equalities():
        if a == b:
            continue
        if scope.rank(b) < scope.rank(a):
            (a, ca), (b, cb) = (b, cb), (a, ca)
        found = pairs.setdefault((a, b), [])
        if (ca, cb) not in found:
            found.append((ca, cb))
    ordered = sorted(pairs, key=lambda ab: (scope.rank(ab[0]), scope.rank(ab[1])))
    keys = tuple(JoinKey(a, b, tuple(c for c, _ in pairs[a, b]), tuple(c for _, c in pairs[a, b]))
                 for a, b in ordered)
    return JoinShape(tuple(sorted(columns, key=scope.rank)), keys)


def sampling_plan(shape: JoinShape) -> tuple[SampleStep, ...]:
    """Every input once, each after the inputs it is matched to: the first input named is
    sampled first, then breadth first along the keys, so a chain a-b-c matches c to b's
    sample; an input no key reaches starts afresh (first rows), and its neighbours follow."""
    steps: list[SampleStep] = []
    placed: set[str] = set()
    for root in shape.order:
        if root in placed:
            continue
        steps.append(SampleStep(root, ()))
        placed.add(root)
        queue = [root]
        while queue:
            current = queue.pop(0)
            for nxt in shape.order:
                if nxt in placed or not _linked(shape.keys, current, nxt):
                    continue
                match = tuple(k for k in shape.keys
                              if nxt in (k.left, k.right) and k.other(nxt) in placed)
                steps.append(SampleStep(nxt, match))
                placed.add(nxt)
                queue.append(nxt)
    return tuple(steps)


def _linked(keys: Sequence[JoinKey], a: str, b: str) -> bool:
    return any({k.left, k.right} == {a, b} for k in keys)


class _Scope:
    """What the names of one statement stand for: its bindings (alias or table name ->
    input), where each input is first named, and each input's columns by lower-case name."""

    def __init__(self, tree: Any, columns: Mapping[str, Sequence[str]]) -> None:
        self.tree = tree
        self.inputs = {name.lower(): name for name in columns}
        self.columns = {name: {c.lower(): c for c in cols} for name, cols in columns.items()}
        self.given = list(columns)
        ctes = {str(e.get("key", "")).lower() for d in _dicts(tree)
                for e in ((d.get("cte_map") or {}).get("map") or [])}
        bound: dict[str, set[str]] = {}
        self.first: dict[str, int] = {}
        for d in _dicts(tree):
            kind = d.get("type")
            if d.get("class") is not None or kind not in _TABLE_REFS:
                continue
            alias = str(d.get("alias") or "").lower()
            target = self._input(d, ctes) if kind == "BASE_TABLE" else None
            name = alias or (str(d.get("table_name", "")).lower() if kind == "BASE_TABLE" else "")
            if name:
                bound.setdefault(name, set()).add(target or "")
            if target is not None:
                loc = d.get("query_location")
                loc = loc if isinstance(loc, int) and 0 <= loc < 2**62 else 2**62
                self.first[target] = min(self.first.get(target, loc), loc)
        # a binding means an input only when it means that one input everywhere
        self.bindings = {n: next(iter(t)) for n, t in bound.items() if len(t) == 1 and "" not in t}
        self.named = [n for n in self.given if n in self.first]

    def _input(self, ref: Mapping[str, Any], ctes: set[str]) -> str | None:
        name = str(ref.get("table_name", "")).lower()
        schema = str(ref.get("schema_name", "")).lower()
        if ref.get("catalog_name") or schema not in ("", "main"):
            return None
        if not schema and name in ctes:
            return None
        return self.inputs.get(name)

    def rank(self, name: str) -> tuple[int, int]:
        return (self.first.get(name, 2**62), self.given.index(name))

    def equalities(self) -> Iterator[tuple[Column, Column]]:
        for d in _dicts(self.tree):
            if d.get("type") == "JOIN" and d.get("class") is None:
                yield from self._conjuncts(d.get("condition"))
                for col in d.get("using_columns") or []:
                    yield from self._shared(d, [str(col)])
                if d.get("ref_type") == "NATURAL":
                    right = self._side(d.get("right"))
                    yield from self._shared(d, [c for i in right for c in self.columns[i].values()])
            if "where_clause" in d:
                yield from self._conjuncts(d.get("where_clause"))

    def _conjuncts(self, expr: Any) -> Iterator[tuple[Column, Column]]:
        if not isinstance(expr, dict):
            return
        if expr.get("type") == "CONJUNCTION_AND":
            for child in expr.get("children") or []:
                yield from self._conjuncts(child)
        elif expr.get("type") in _EQUALS:
            a, b = self._column(expr.get("left")), self._column(expr.get("right"))
            if a is not None and b is not None:
                yield a, b

    def _column(self, expr: Any) -> Column | None:
        if not isinstance(expr, dict) or expr.get("type") != "COLUMN_REF":
            return None
        parts = [str(p).lower() for p in expr.get("column_names") or []]
        if len(parts) == 1:
            having = [i for i in self.named if parts[0] in self.columns[i]]
            return (having[0], self.columns[having[0]][parts[0]]) if len(having) == 1 else None
        if len(parts) == 3 and parts[0] == "main":
            parts = parts[1:]
        target = self.bindings.get(parts[0]) if len(parts) == 2 else None
        if target is None or parts[1] not in self.columns[target]:
            return None
        return target, self.columns[target][parts[1]]

    def _shared(self, join: Mapping[str, Any], names: Sequence[str]
                ) -> Iterator[tuple[Column, Column]]:
        """For each column name, the first input on each side of `join` that has it."""
        left, right = self._side(join.get("left")), self._side(join.get("right"))
        for name in names:
            a = next((i for i in left if name.lower() in self.columns[i]), None)
            b = next((i for i in right if name.lower() in self.columns[i]), None)
            if a is not None and b is not None:
                yield (a, self.columns[a][name.lower()]), (b, self.columns[b][name.lower()])

    def _side(self, ref: Any) -> list[str]:
        """The inputs a join tree reads directly, left to right (not through subqueries)."""
        if not isinstance(ref, dict):
            return []
        if ref.get("type") == "JOIN":
            return self._side(ref.get("left")) + self._side(ref.get("right"))
        if ref.get("type") == "BASE_TABLE":
            name = str(ref.get("alias") or ref.get("table_name", "")).lower()
            target = self.bindings.get(name)
            return [target] if target is not None else []
        return []


def _dicts(tree: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in the tree, parents before children, in document order."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            yield item
            stack.extend(reversed([v for v in item.values() if isinstance(v, (dict, list))]))
