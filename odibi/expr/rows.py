"""The row language of `all(...)`, in a neutral form: pure, no SQL dialect here.

A `Row` is an expression over one row of a dataset, as the checker (`odibi.expr.check`)
compiled it from the rule: its columns are named as the rule wrote them (names ignore
case), its literals are plain Python values. Each engine renders it (DuckDB:
`odibi.engines.duckdb_rules`) or evaluates it row by row, with SQL's meaning:

- NULL is unknown: an operator with a NULL operand gives NULL (`abs`, `-`, arithmetic,
  comparisons), `between` is `low <= value and value <= high`, `not` of NULL is NULL, `and` is false if any item is false and
  NULL if none is but one is NULL, `or` is true if any item is true and NULL if none is but
  one is NULL; `is [not] null` is never NULL; `x in (...)` is true if x equals an item,
  NULL if not but x or an item is NULL, false otherwise (`not in`: its negation);
- `Binary` compares (`==`, `!=`, `<`, `<=`, `>`, `>=`) or computes (`+`, `-`, `*`, `/`,
  `%`); `/` divides as floats; numbers compare with numbers, text with text;
- a row *holds* a predicate when it is true (not false, not NULL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from odibi.expr.ast import Op

__all__ = ["Abs", "And", "Between", "Binary", "Col", "Const", "In", "IsNull", "Neg", "Not", "Op",
           "Or", "Row"]


@dataclass(frozen=True, slots=True)
class Col:
    """The row's value of a column."""

    name: str


@dataclass(frozen=True, slots=True)
class Const:
    """A literal: None (NULL), a bool, an int, a float or a str."""

    value: Any


@dataclass(frozen=True, slots=True)
class Not:
    expr: Row


@dataclass(frozen=True, slots=True)
class Neg:
    expr: Row


@dataclass(frozen=True, slots=True)
class Abs:
    expr: Row


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Row, ...]  # two or more


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Row, ...]  # two or more


@dataclass(frozen=True, slots=True)
class Binary:
    op: Op  # a comparison or an arithmetic operator
    left: Row
    right: Row


@dataclass(frozen=True, slots=True)
class Between:
    """low <= value <= high."""

    value: Row
    low: Row
    high: Row


@dataclass(frozen=True, slots=True)
class IsNull:
    value: Row
    negated: bool  # `is not null`


@dataclass(frozen=True, slots=True)
class In:
    value: Row
    values: tuple[Any, ...]  # literals, as `Const.value`
    negated: bool  # `not in`


Row = Union[Col, Const, Not, Neg, Abs, And, Or, Binary, Between, IsNull, In]
