"""What a rule set measures: `Measure`s, and the `Query`s that take them together. Pure.

A `Measure` is one value computed from data; what it computes (`Measure.what`) is a
`odibi.expr.measurements.Measurement`, in a neutral form each engine renders. Measures come
in two forms (`Form`), which decide how they share queries
(`odibi.expr.plan.RulePlan.passes`):
- AGGREGATE: an aggregate over the rows of `t`, its dataset: the aggregates of a dataset
  are taken together, in one scan;
- QUERY: a query of its own over `t` (and `p`, the parent dataset of a `references` rule):
  the anti-join of `references`, and the examples of what broke a rule (a top-5 needs an
  order and a limit, which an aggregate cannot say). They are taken together per dataset
  (pair), in one statement.

Examples are `only_if` follow-ups: measured only when the count they explain came out
non-zero, so a rule set that holds costs no extra query. Each gives at most `EXAMPLES`
items, in a deterministic order, and its `Shape` says how `odibi.expr.verdict` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from odibi.expr.measurements import Measurement

EXAMPLES = 5  # offending values a failure message shows, at most


class Form(Enum):
    AGGREGATE = "aggregate"  # an aggregate over `t`: shares its dataset's query
    QUERY = "query"  # a query over `t` (and `p`): a query per dataset (pair) and pass


class Shape(Enum):
    """How a follow-up measure's value (examples of what broke a rule) is shown."""

    VALUES = "values"  # a sorted list of values, as its own `label = [...]` (accepted_values)
    KEYS = "keys"  # distinct keys (tuples for several columns): `e.g. [101, 102]`
    COUNTED = "counted"  # {k: key, n: rows}: `e.g. 7 (x3), 12 (x2)`
    ROWS = "rows"  # {column: value} of the columns a condition reads: `e.g. {amount: -3}`
    NULL_ROWS = "null rows"  # whole rows: shown as their first non-null column and the nulls
    NULL_COUNTS = "null counts"  # a count per column of the rule: `(a: 2 nulls, c: 1 null)`


@dataclass(frozen=True, slots=True)
class Measure:
    """One value measured from `dataset` (read as `t`; `parent`, if any, as `p`).

    `columns` (of `dataset`) and `parent_columns` (of `parent`) are what it reads: they are
    checked against the data's columns before anything runs. `form` and `distinct` follow
    from `what` (`measurements.form_of`, `measurements.DISTINCT`)."""

    key: str
    dataset: str
    what: Measurement
    label: str  # how a failure message names it
    columns: tuple[str, ...] = ()
    distinct: bool = False  # an aggregate of distinct values: measured in a query of its own
    only_if: str | None = None  # measured only when this count came out non-zero (examples)
    form: Form = Form.AGGREGATE
    parent: str | None = None  # a second dataset it reads (references): a query of its own
    parent_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Query:
    """Measures taken together in one query: over `dataset` (as `t`), and `parent` (as `p`)
    for cross-dataset ones; all of one `form`."""

    dataset: str
    parent: str | None
    form: Form
    measures: tuple[Measure, ...]
