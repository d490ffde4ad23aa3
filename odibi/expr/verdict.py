"""Verdicts: each compiled rule evaluated on what was measured, and its failure message.
Pure: the values come from `odibi.rules`, which measured them.

A message names the rule, the datasets it read and each measured value
(`row_count > 0 failed on raw_orders: row_count = 0`); where a predicate broke, what broke
it, from the follow-up examples (`odibi.expr.measures`):

    unique(payment_id) failed on payments: duplicate rows = 3, e.g. 7 (x3), 12 (x2)
    not_null(a, c) failed on t: rows with nulls = 3 (a: 2 nulls, c: 1 null), e.g. {id: 4, a: null}
    all(amount > 0) failed on orders: rows where it is false = 2, e.g. {amount: -3}, {amount: 0}
    references(o.cid, c.cid) failed on o, c: rows with orphan keys = 4, e.g. [101, 102]

A message is one line: control characters in values are escaped, long values are cut, and
so is a long list of examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from odibi.expr.plan import (Apply, ColumnType, Example, HasColumns, Lit, Measured, RulePlan,
                             Value, Zero)
from odibi.expr.measures import Shape

VALUE_WIDTH = 40  # characters of one shown value, at most
EXAMPLES_WIDTH = 160  # characters of a rule's examples, at most


@dataclass(frozen=True, slots=True)
class Offending:
    """A count of offending rows and what its examples showed (`detail`: the text that
    follows the count, e.g. `, e.g. 7 (x3), 12 (x2)`)."""

    count: int
    detail: str


@dataclass(frozen=True, slots=True)
class RuleResult:
    text: str
    ok: bool
    measured: tuple[tuple[str, Any], ...]  # (label, value) of every measure it read
    datasets: tuple[str, ...]
    error: str | None = None  # the rule could not be evaluated (e.g. a missing column)

    def describe(self) -> str:
        where = f" on {', '.join(self.datasets)}" if self.datasets else ""
        if self.error:
            return f"{self.text} could not be checked{where}: {self.error}"
        values = ", ".join(f"{label} = {show(v)}" for label, v in self.measured)
        return f"{self.text} failed{where}" + (f": {values}" if values else "")


def evaluate(plan: RulePlan, values: Mapping[str, Any],
             schemas: Mapping[str, Mapping[str, str]]) -> list[RuleResult]:
    """Each rule's verdict, given the measured values (by Measure.key; a follow-up that was
    not measured is absent) and the columns of the datasets in `plan.schema_of`."""
    out = []
    for rule in plan.rules:
        seen: dict[str, Any] = {}
        ok = bool(_eval(rule.value, values, schemas, seen))
        out.append(RuleResult(rule.text, ok, tuple(seen.items()), rule.datasets))
    return out


def broken(plan: RulePlan, values: Mapping[str, Any],
           schemas: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The measured values of the rules that failed (what `RulePlan.passes` takes to fetch
    examples): a count that is not zero in a rule that holds (`row_count > 9 or
    unique(id)`) costs no follow-up."""
    out: dict[str, Any] = {}
    for rule, result in zip(plan.rules, evaluate(plan, values, schemas)):
        if not result.ok:
            out.update((k, values.get(k)) for k in measure_keys(rule.value))
    return out


def measure_keys(v: Value) -> list[str]:
    """The keys of the counts and measures a value tree reads (not its examples)."""
    if isinstance(v, (Measured, Zero)):
        return [v.key]
    if isinstance(v, Apply):
        return [k for a in v.args for k in measure_keys(a)]
    return []


def _eval(v: Value, values: Mapping[str, Any], schemas: Mapping[str, Mapping[str, str]],
          seen: dict[str, Any]) -> Any:
    """`seen` collects (label -> value) of what the rule measured, for its message."""
    match v:
        case Lit(value=x):
            return x
        case Measured(key=k, label=label):
            seen[label] = values.get(k)
            return _num(values.get(k))
        case Zero(key=k, label=label, examples=examples):
            count = values.get(k)
            seen[label] = count
            if count:
                detail = _details(examples, values, seen)
                if detail:
                    seen[label] = Offending(count, detail)
            return (count or 0) == 0
        case HasColumns(dataset=ds, columns=cols):
            have = {c.lower() for c in schemas.get(ds, {})}
            missing = [c for c in cols if c.lower() not in have]
            if missing:
                seen["missing"] = ", ".join(missing)
            return not missing
        case ColumnType(dataset=ds, column=col):
            types = {c.lower(): t for c, t in schemas.get(ds, {}).items()}
            t = types.get(col.lower())
            seen[f"column_type({col})"] = t if t is not None else "(no such column)"
            return t
        case Apply(fn=fn, args=args):
            if fn in ("and", "or"):
                results = [_eval(a, values, schemas, seen) for a in args]
                return all(results) if fn == "and" else any(results)
            return _apply(fn, [_eval(a, values, schemas, seen) for a in args])
    raise AssertionError(v)  # pragma: no cover


def _details(examples: Sequence[Example], values: Mapping[str, Any], seen: dict[str, Any]
             ) -> str:
    """The text that follows a broken predicate's count; a VALUES example is its own
    `label = [...]` entry instead (accepted_values)."""
    detail = ""
    for ex in examples:
        got = values.get(ex.key)
        if got is None:
            continue
        if ex.shape is Shape.VALUES:
            seen[ex.label] = got
        elif ex.shape is Shape.NULL_COUNTS:
            per = [f"{c}: {n} null{'' if n == 1 else 's'}" for c, n in zip(ex.columns, got) if n]
            detail += f" ({', '.join(per)})"
        elif got:
            detail += ", e.g. " + _examples(ex, got)
    return detail


def _examples(ex: Example, items: Sequence[Any]) -> str:
    match ex.shape:
        case Shape.KEYS:
            return _cut_list([_key(k) for k in items], "[", "]")
        case Shape.COUNTED:
            return _cut_list([f"{_key(d['k'])} (x{d['n']})" for d in items])
        case Shape.ROWS:
            return _cut_list([_row(d.items()) for d in items])
        case Shape.NULL_ROWS:
            return _cut_list([_row(_null_row(d, ex.columns)) for d in items])
    raise AssertionError(ex.shape)  # pragma: no cover


def _null_row(row: Mapping[str, Any], columns: Sequence[str]) -> list[tuple[str, Any]]:
    """What identifies a row with nulls: its first column that is not null (usually its
    id), then the rule's columns that are null in it."""
    rule = {c.lower() for c in columns}
    key = next(((c, v) for c, v in row.items() if v is not None), None)
    return ([key] if key else []) + [(c, v) for c, v in row.items()
                                     if c.lower() in rule and v is None]


def _key(k: Any) -> str:
    if isinstance(k, dict):
        k = tuple(k.values())
    if isinstance(k, (tuple, list)):
        return "(" + ", ".join(show(x) for x in k) + ")"
    return show(k)


def _row(items: Any) -> str:
    return "{" + ", ".join(f"{_cut(str(c))}: {show(v)}" for c, v in items) + "}"


def _cut_list(parts: Sequence[str], open_: str = "", close: str = "") -> str:
    """parts, comma-separated, each once (values that differ only past what is shown look
    alike), stopping with '…' before EXAMPLES_WIDTH characters."""
    shown: list[str] = []
    width = 0
    for p in dict.fromkeys(parts):
        if shown and width + len(p) > EXAMPLES_WIDTH:
            shown.append("…")
            break
        shown.append(p)
        width += len(p) + 2
    return open_ + ", ".join(shown) + close


def _cut(text: str, width: int = VALUE_WIDTH) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= width else text[:width - 1] + "…"


def show(v: Any) -> str:
    """A measured value as a failure message shows it: on one line, cut to a width."""
    if isinstance(v, Offending):
        return f"{v.count}{v.detail}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, str):
        return f"'{_cut(v)}'"
    return "null" if v is None else _cut(str(v))


def _num(x: Any) -> Any:
    from decimal import Decimal

    return float(x) if isinstance(x, Decimal) else x


def _apply(fn: str, vals: list[Any]) -> Any:  # noqa: C901 - one case per operator
    if fn == "not":
        return not vals[0]
    if fn in ("is_null", "is_not_null"):
        return (vals[0] is None) == (fn == "is_null")
    if fn in ("in", "not_in"):
        return (vals[0] in vals[1]) == (fn == "in")
    if any(x is None for x in vals):
        return None if fn in ("neg", "abs", "+", "-", "*", "/", "%") else False
    match fn:
        case "neg":
            return -vals[0]
        case "abs":
            return abs(vals[0])
        case "between":
            return vals[1] <= vals[0] <= vals[2]
        case "+":
            return vals[0] + vals[1]
        case "-":
            return vals[0] - vals[1]
        case "*":
            return vals[0] * vals[1]
        case "/":
            return vals[0] / vals[1] if vals[1] else None
        case "%":
            return vals[0] % vals[1] if vals[1] else None
        case "==":
            return vals[0] == vals[1]
        case "!=":
            return vals[0] != vals[1]
        case "<":
            return vals[0] < vals[1]
        case "<=":
            return vals[0] <= vals[1]
        case ">":
            return vals[0] > vals[1]
        case ">=":
            return vals[0] >= vals[1]
    raise AssertionError(fn)  # pragma: no cover
