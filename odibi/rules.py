"""Running compiled rules against data (contracts, validations, checks).

One query per dataset (a second for DISTINCT aggregates, and one for examples of what broke
a rule, only when something did) measures everything a rule set needs; the columns each
measure reads are checked first, so a misspelt column is a clear failure naming the
column and the dataset (with a did-you-mean), not a database error.
"""

from __future__ import annotations

from collections.abc import Mapping

from odibi.engines.base import Session
from odibi.errors import did_you_mean
from odibi.expr.check import Apply, Measured, RulePlan, RuleResult, Zero, evaluate


def run_rules(session: Session, plan: RulePlan, tables: Mapping[str, str]) -> list[RuleResult]:
    """Evaluate `plan`, reading each dataset from the table or view `tables[dataset]`."""
    schemas = {ds: session.columns(tables[ds]) for ds in plan.datasets}
    missing = _missing_columns(plan, schemas)
    values: dict[str, object] = {}
    for follow_up in (False, True):
        for ds, measures in plan.passes(values if follow_up else None):
            usable = [m for m in measures if m.key not in missing]
            if usable:
                values.update(session.measure(tables[ds], [(m.key, m.sql) for m in usable]))
    results = evaluate(plan, values, schemas)
    if not missing:
        return results
    out = []
    keys_of_rule = _rule_measures(plan)
    for rule, result in zip(plan.rules, results):
        problems = [missing[k] for k in keys_of_rule.get(rule.text, ()) if k in missing]
        out.append(RuleResult(result.text, False, (), result.datasets, problems[0])
                   if problems else result)
    return out


def _missing_columns(plan: RulePlan, schemas: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """measure key -> what is wrong, for measures reading columns a dataset lacks."""
    out = {}
    for m in plan.measures:
        have = {c.lower() for c in schemas.get(m.dataset, {})}
        for col in m.columns:
            if col.lower() not in have:
                hint = did_you_mean(col, schemas.get(m.dataset, {}))
                out[m.key] = f"no column '{col}' in {m.dataset}" + (f" ({hint})" if hint else "")
                break
    return out


def _rule_measures(plan: RulePlan) -> dict[str, list[str]]:
    """rule text -> the keys of the measures it reads."""
    def keys(v: object) -> list[str]:
        if isinstance(v, (Measured, Zero)):
            return [v.key]
        if isinstance(v, Apply):
            return [k for a in v.args for k in keys(a)]
        return []
    return {r.text: keys(r.value) for r in plan.rules}
