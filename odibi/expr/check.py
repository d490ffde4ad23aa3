"""Rules -> a plan of measurements. Pure: no data is touched here.

`compile_rules` checks a node's rules (or a check's) against the datasets they may see
and turns them into:
- `Measure`s (`odibi.expr.measures`; what each measures is a `Measurement`, in a neutral
  form each engine renders): aggregates over one dataset each (a row count, the rows where
  a condition holds, `sum(col)`, ...),
  grouped so that a rule set costs one query per dataset (and one more for its DISTINCT
  aggregates), not one scan per rule; a `references` rule reads two datasets, and its
  anti-join count is a query of its own; examples of what broke a rule are follow-up
  queries, run only when it broke;
- schema needs (`has_columns`, `column_type`), answered from the dataset's columns;
- a small value tree per rule, evaluated in Python once the measures are known
  (`odibi.expr.verdict`).

Names: a bare name is a column of the default dataset (the node's output for a
validation, its only input for a contract), or a dataset when it names one where a
dataset is expected (`row_count(raw_orders)`); `ds.col` qualifies a column and
`ds.row_count` a measure. Columns are checked against the data when the rules run.

This module is what the rest of odibi imports; the compiler itself is
`odibi.expr.compiler`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from odibi.expr import ast
from odibi.expr.plan import CompiledRule, RulePlan, Scope

__all__ = ["FUNCTIONS", "REFERENCES_FORMS", "RuleError", "RulePlan", "Scope", "UnknownDataset",
           "compile_rules"]

MEASURES = ("row_count", "null_count", "distinct_count", "min", "max", "sum", "avg")
PREDICATES = ("not_null", "unique", "accepted_values", "has_columns", "all", "references")
FUNCTIONS = (*MEASURES, *PREDICATES, "column_type", "abs")
REFERENCES_FORMS = ("references(orders.customer_id, customers.customer_id), or for a key of "
                    "several columns references((lines.order_id, lines.sku), "
                    "(skus.order_id, skus.sku))")


class RuleError(Exception):
    """A rule that parses but cannot mean anything: an unknown function or dataset, a
    wrong number of arguments, comparing a condition with a number. `pos` locates it."""

    def __init__(self, message: str, pos: ast.Pos, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint


class UnknownDataset(RuleError):
    """A name where a dataset is expected that the rule's scope cannot read."""


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a dataset, as a rule named it."""

    dataset: str
    name: str


def compile_rules(rules: Sequence[tuple[str, ast.Expr]], scope: Scope) -> RulePlan:
    """Check and compile (rule text, parsed rule) pairs. Raises RuleError (with the
    index of the failing rule in `RuleError.index`).

    The compiler, and the neutral forms it emits, are imported here, on first use: a
    build whose project comes from the cache compiles no rule and defines none of them."""
    from odibi.expr.compiler import Compiler, T

    c = Compiler(scope)
    compiled = []
    for i, (text, expr) in enumerate(rules):
        c.mentioned = {}
        c.text = text
        try:
            value, kind = c.compile(expr)
            if kind is not T.BOOL:
                raise RuleError(f"a rule must be a condition, got {kind.value}", expr.pos,
                                hint="compare it: e.g. row_count > 0")
        except RuleError as e:
            e.index = i  # type: ignore[attr-defined]
            raise
        compiled.append(CompiledRule(text, value, tuple(c.mentioned)))
    return RulePlan(tuple(compiled), tuple(c.measures.values()), tuple(c.schema))


