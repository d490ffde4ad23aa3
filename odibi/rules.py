"""Running compiled rules against data (contracts, validations, checks).

One query per dataset (a second for DISTINCT aggregates; one per pair of datasets that a
`references` rule reads; and one per dataset for examples of what broke a rule, only when
something did) measures everything a rule set needs. The columns each measure reads are
checked first, on both sides of a `references`, so a misspelt column is a clear failure
naming the column and the dataset (with a did-you-mean), not a database error; so are
keys that compare a string column with a non-string one. What is measured is in the
neutral form of `odibi.expr.measurements`: the engine's session renders it
(`Session.measure`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from odibi.engines.base import Relation, Session
from odibi.errors import did_you_mean
from odibi.expr.check import RulePlan
from odibi.expr.measures import Measure
from odibi.expr.verdict import RuleResult, broken, evaluate, measure_keys

def run_rules(session: Session, plan: RulePlan, relations: Mapping[str, Relation]
              ) -> list[RuleResult]:
    """Evaluate `plan`, reading each dataset from `relations[dataset]`."""
    schemas = {ds: session.columns(relations[ds]) for ds in plan.datasets}
    missing = _missing_columns(plan, schemas, session.is_text)
    values: dict[str, object] = {}
    for follow_up in (False, True):
        for query in plan.passes(broken(plan, values, schemas) if follow_up else None):
            usable = tuple(m for m in query.measures if m.key not in missing)
            if usable:
                values.update(session.measure(replace(query, measures=usable), relations))
    results = evaluate(plan, values, schemas)
    if not missing:
        return results
    out = []
    for rule, result in zip(plan.rules, results):
        problems = [missing[k] for k in measure_keys(rule.value) if k in missing]
        out.append(RuleResult(result.text, False, (), result.datasets, problems[0])
                   if problems else result)
    return out


def _missing_columns(plan: RulePlan, schemas: Mapping[str, Mapping[str, str]],
                     is_text: Callable[[str], bool]) -> dict[str, str]:
    """measure key -> what is wrong, for measures reading columns a dataset lacks (either
    side of a references), or comparing a string key with a non-string one."""
    out = {}
    for m in plan.measures:
        sides = [(m.dataset, m.columns)]
        if m.parent is not None:
            sides.append((m.parent, m.parent_columns))
        problem = next((p for ds, cols in sides for p in _absent(ds, cols, schemas)), None)
        if problem is None and m.parent is not None:
            problem = _mismatch(m, schemas, is_text)
        if problem is not None:
            out[m.key] = problem
    return out


def _absent(dataset: str, columns: tuple[str, ...],
            schemas: Mapping[str, Mapping[str, str]]) -> list[str]:
    have = {c.lower() for c in schemas.get(dataset, {})}
    out = []
    for col in columns:
        if col.lower() not in have:
            hint = did_you_mean(col, schemas.get(dataset, {}))
            out.append(f"no column '{col}' in {dataset}" + (f" ({hint})" if hint else ""))
    return out


def _mismatch(m: Measure, schemas: Mapping[str, Mapping[str, str]],
              is_text: Callable[[str], bool]) -> str | None:
    """A key column that is text on one side only: DuckDB would cast the text to the
    other type (and fail on the first value that does not convert, or match '007' to 7)."""
    assert m.parent is not None
    for child, parent in zip(m.columns, m.parent_columns):
        a, b = _type(schemas, m.dataset, child), _type(schemas, m.parent, parent)
        if is_text(a) != is_text(b):
            return (f"{m.dataset}.{child} is {a} but {m.parent}.{parent} is {b} (cast one "
                    "of them in a node, so that the keys compare as the same type)")
    return None


def _type(schemas: Mapping[str, Mapping[str, str]], dataset: str, column: str) -> str:
    types = {c.lower(): t for c, t in schemas.get(dataset, {}).items()}
    return types.get(column.lower(), "")
