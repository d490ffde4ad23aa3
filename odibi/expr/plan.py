"""A compiled rule set: what `odibi.expr.check` hands to `odibi.expr.verdict` and
`odibi.rules`. Frozen values, pure.

- the value tree of each rule, evaluated in Python once its measures are known: literals,
  measured numbers, counts of offending rows (`Zero`, true when 0, with the follow-ups
  that show what broke it), schema questions, and operators over them;
- `RulePlan`: the rules and the measures they need, and the queries that take them;
- `Scope`: what a rule set may read, and what bare names mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from odibi.expr.measures import Form, Measure, Query, Shape


# -- the value tree ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class Measured:
    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Example:
    """A follow-up measure (`key`) showing what broke a rule, and how to show it."""

    key: str
    shape: Shape
    label: str = ""  # Shape.VALUES: the name it is shown under
    columns: tuple[str, ...] = ()  # the rule's columns (NULL_COUNTS, NULL_ROWS)


@dataclass(frozen=True, slots=True)
class Zero:
    """A predicate measured as a count of offending rows: true when it is 0."""

    key: str
    label: str
    examples: tuple[Example, ...] = ()  # measured only when the count is not 0


@dataclass(frozen=True, slots=True)
class HasColumns:
    dataset: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ColumnType:
    dataset: str
    column: str


@dataclass(frozen=True, slots=True)
class Apply:
    fn: str  # and, or, not, neg, abs, between, is_null, is_not_null, in, not_in, or an Op
    args: tuple[Value, ...]


Value = Union[Lit, Measured, Zero, HasColumns, ColumnType, Apply]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    text: str
    value: Value
    datasets: tuple[str, ...]  # the datasets it reads, in order of mention


@dataclass(frozen=True, slots=True)
class RulePlan:
    rules: tuple[CompiledRule, ...]
    measures: tuple[Measure, ...]
    schema_of: tuple[str, ...]  # datasets whose columns the rules need

    def queries(self) -> dict[str, list[Measure]]:
        """The measures taken whatever the data (no follow-ups), grouped by the dataset
        they read (a cross-dataset one: by its child dataset)."""
        out: dict[str, list[Measure]] = {}
        for m in self.measures:
            if m.only_if is None:
                out.setdefault(m.dataset, []).append(m)
        return out

    def passes(self, values: Mapping[str, Any] | None = None) -> list[Query]:
        """The queries that measure the rule set: per dataset, one for the plain aggregates
        and one for the DISTINCT ones (DuckDB builds a hash table for each DISTINCT
        aggregate, and mixed into one query with plain aggregates they slow it down more
        than a second scan costs); per pair of datasets a `references` rule reads, one for
        its anti-join counts. With `values` (the counts of the rules that failed:
        `odibi.expr.verdict.broken`): the follow-up queries, for examples of what broke a
        rule, one per dataset (pair), only where something broke."""
        groups: dict[tuple[str, str | None, Form, bool], list[Measure]] = {}
        for m in self.measures:
            if values is None and m.only_if is None:
                groups.setdefault((m.dataset, m.parent, m.form, m.distinct), []).append(m)
            elif values is not None and m.only_if is not None and values.get(m.only_if):
                groups.setdefault((m.dataset, m.parent, m.form, False), []).append(m)
        return [Query(ds, parent, form, tuple(ms))
                for (ds, parent, form, _), ms in groups.items()]

    @property
    def datasets(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for r in self.rules:
            for d in r.datasets:
                seen[d] = None
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Scope:
    """What a rule set may read. `datasets` maps lower-cased names to dataset names;
    `default` is what bare names mean (None: everything must be qualified)."""

    datasets: Mapping[str, str]
    default: str | None = None
    defaults_hint: str = ""  # why there is no default, for the error message
    unknown: str = "a dataset this rule can read"  # what an unknown name is not
    unknown_hint: str | None = None  # what to do instead, when no name is close
