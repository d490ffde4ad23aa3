"""Rules -> a plan of measurements -> results. Pure: no data is touched here.

`compile_rules` checks a node's rules (or a check's) against the datasets they may see
and turns them into:
- `Measure`s, aggregate SQL over one dataset each (`count(*) FILTER (WHERE ...)`,
  `sum(col)`, ...), grouped so that a rule set costs one query per dataset (and one more
  for its DISTINCT aggregates), not one scan per rule;
- schema needs (`has_columns`, `column_type`), answered from the dataset's columns;
- a small value tree per rule, evaluated in Python once the measures are known.

`evaluate` gives each rule its verdict and the measured values a failure message names:
`row_count > 0 failed on raw_orders: row_count = 0`.

Names: a bare name is a column of the default dataset (the node's output for a
validation, its only input for a contract), or a dataset when it names one where a
dataset is expected (`row_count(raw_orders)`); `ds.col` qualifies a column and
`ds.row_count` a measure. Columns are checked against the data when the rules run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from odibi.errors import did_you_mean
from odibi.expr import ast

MEASURES = ("row_count", "null_count", "distinct_count", "min", "max", "sum", "avg")
PREDICATES = ("not_null", "unique", "accepted_values", "has_columns", "all")
FUNCTIONS = (*MEASURES, *PREDICATES, "column_type", "abs")


class RuleError(Exception):
    """A rule that parses but cannot mean anything: an unknown function or dataset, a
    wrong number of arguments, comparing a condition with a number. `pos` locates it."""

    def __init__(self, message: str, pos: ast.Pos, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint


class T(Enum):
    NUMBER = "a number"
    STRING = "a string"
    BOOL = "a condition"
    ANY = "a value"


@dataclass(frozen=True, slots=True)
class Column:
    dataset: str
    name: str


@dataclass(frozen=True, slots=True)
class Measure:
    """One aggregate over one dataset: `sql` reads the dataset as `t`."""

    key: str
    dataset: str
    sql: str
    label: str  # how a failure message names it
    columns: tuple[str, ...] = ()
    distinct: bool = False  # a DISTINCT aggregate: measured in a query of its own kind
    only_if: str | None = None  # measured only when this count came out non-zero (examples)


# -- the value tree ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class Measured:
    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Zero:
    """A predicate measured as a count of offending rows: true when it is 0."""

    key: str
    label: str
    examples: str | None = None  # key of a measure listing offending values


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
        """The measures, grouped by dataset."""
        out: dict[str, list[Measure]] = {}
        for m in self.measures:
            out.setdefault(m.dataset, []).append(m)
        return out

    def passes(self, values: Mapping[str, Any] | None = None) -> list[tuple[str, list[Measure]]]:
        """The queries that measure the rule set: per dataset, one for the plain aggregates
        and one for the DISTINCT ones (DuckDB builds a hash table for each DISTINCT
        aggregate, and mixed into one query with plain aggregates they slow it down more
        than a second scan costs). With `values` (what those measured): the follow-up
        queries, for examples of what broke a rule, only where something did."""
        out = []
        for ds, measures in self.queries().items():
            if values is None:
                groups = [[m for m in measures if m.only_if is None and not m.distinct],
                          [m for m in measures if m.only_if is None and m.distinct]]
            else:
                groups = [[m for m in measures if m.only_if is not None and values.get(m.only_if)]]
            out += [(ds, g) for g in groups if g]
        return out

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


# -- compiling ---------------------------------------------------------------------------
@dataclass
class _Compiler:
    scope: Scope
    measures: dict[tuple[str, str], Measure] = field(default_factory=dict)
    schema: dict[str, None] = field(default_factory=dict)
    mentioned: dict[str, None] = field(default_factory=dict)
    text: str = ""  # the rule being compiled

    def measure(self, dataset: str, sql: str, label: str, columns: Sequence[str] = (),
                distinct: bool = False, only_if: str | None = None) -> str:
        key = (dataset, sql)
        if key not in self.measures:
            self.measures[key] = Measure(f"m{len(self.measures)}", dataset, sql, label,
                                         tuple(columns), distinct, only_if)
        self.mentioned[dataset] = None
        return self.measures[key].key

    def dataset(self, name: str, pos: ast.Pos) -> str:
        found = self.scope.datasets.get(name.lower())
        if found is None:
            raise RuleError(f"'{name}' is not {self.scope.unknown}", pos,
                            hint=did_you_mean(name, self.scope.datasets.values())
                            or self.scope.unknown_hint
                            or f"it can read: {', '.join(sorted(self.scope.datasets.values()))}")
        self.mentioned[found] = None
        return found

    def default(self, pos: ast.Pos, what: str) -> str:
        if self.scope.default is None:
            raise RuleError(f"{what} needs a dataset here", pos,
                            hint=self.scope.defaults_hint or "write dataset.column or f(dataset)")
        self.mentioned[self.scope.default] = None
        return self.scope.default

    def column(self, e: ast.Expr, what: str) -> Column:
        if not isinstance(e, ast.Name):
            raise RuleError(f"{what} takes column names", e.pos)
        if len(e.parts) == 2:
            return Column(self.dataset(e.parts[0], e.pos), e.parts[1])
        if e.parts[0].lower() in self.scope.datasets and self.scope.default is not None \
                and e.parts[0].lower() != self.scope.default.lower():
            raise RuleError(f"'{e.parts[0]}' is a dataset; {what}() takes columns: "
                            f"{e.parts[0]}.column", e.pos)
        return Column(self.default(e.pos, f"column '{e.parts[0]}'"), e.parts[0])

    def source(self, e: ast.Expr) -> str:
        return self.text[e.pos.start:e.pos.end] or ast.show(e)

    def columns(self, args: Sequence[ast.Expr], what: str, pos: ast.Pos) -> tuple[str, list[str]]:
        if not args:
            raise RuleError(f"{what}() needs at least one column", pos)
        cols = [self.column(a, what) for a in args]
        datasets = {c.dataset for c in cols}
        if len(datasets) > 1:
            raise RuleError(f"{what}() takes columns of one dataset, got {sorted(datasets)}", pos)
        return cols[0].dataset, [c.name for c in cols]

    # one method per construct; each returns (value, type)
    def compile(self, e: ast.Expr) -> tuple[Value, T]:  # noqa: C901 - one case per construct
        match e:
            case ast.Number(value=v):
                return Lit(v), T.NUMBER
            case ast.String(value=v):
                return Lit(v), T.STRING
            case ast.Bool(value=v):
                return Lit(v), T.BOOL
            case ast.Null():
                return Lit(None), T.ANY
            case ast.Name():
                return self.name(e)
            case ast.Call():
                return self.call(e)
            case ast.ListLit():
                raise RuleError("a list is only an argument of accepted_values or 'in'", e.pos)
            case ast.Not(expr=x):
                return Apply("not", (self.expect(x, T.BOOL, "'not'"),)), T.BOOL
            case ast.Neg(expr=x):
                return Apply("neg", (self.expect(x, T.NUMBER, "'-'"),)), T.NUMBER
            case ast.And(items=items) | ast.Or(items=items):
                word = "and" if isinstance(e, ast.And) else "or"
                return Apply(word, tuple(self.expect(i, T.BOOL, f"'{word}'") for i in items)), T.BOOL
            case ast.Compare(op=op, left=a, right=b):
                (va, ta), (vb, tb) = self.compile(a), self.compile(b)
                if T.ANY not in (ta, tb) and ta is not tb and {ta, tb} != {T.NUMBER}:
                    raise RuleError(f"cannot compare {ta.value} with {tb.value}", e.pos)
                return Apply(op.value, (va, vb)), T.BOOL
            case ast.Arith(op=op, left=a, right=b):
                return Apply(op.value, (self.expect(a, T.NUMBER, f"'{op.value}'"),
                                        self.expect(b, T.NUMBER, f"'{op.value}'"))), T.NUMBER
            case ast.Between(value=v, low=lo, high=hi):
                return Apply("between", (self.expect(v, T.NUMBER, "'between'"),
                                         self.expect(lo, T.NUMBER, "'between'"),
                                         self.expect(hi, T.NUMBER, "'between'"))), T.BOOL
            case ast.IsNull(value=v, negated=neg):
                return Apply("is_not_null" if neg else "is_null", (self.compile(v)[0],)), T.BOOL
            case ast.In(value=v, items=items, negated=neg):
                values = tuple(self.literal(i) for i in items.items)
                return Apply("not_in" if neg else "in", (self.compile(v)[0], Lit(values))), T.BOOL
        raise AssertionError(e)  # pragma: no cover

    def expect(self, e: ast.Expr, want: T, where: str) -> Value:
        value, got = self.compile(e)
        if got not in (want, T.ANY):
            raise RuleError(f"{where} needs {want.value}, got {got.value}", e.pos)
        return value

    def literal(self, e: ast.Expr) -> Any:
        match e:
            case ast.Number(value=v) | ast.String(value=v) | ast.Bool(value=v):
                return v
            case ast.Neg(expr=ast.Number(value=v)):
                return -v
            case ast.Null():
                return None
        raise RuleError("a list holds plain values: numbers, 'strings', true, false, null",
                        e.pos)

    def name(self, e: ast.Name) -> tuple[Value, T]:
        if len(e.parts) == 1 and e.parts[0].lower() == "row_count":
            ds = self.default(e.pos, "row_count")
            return Measured(self.measure(ds, "count(*)", "row_count"), self.source(e)), T.NUMBER
        if len(e.parts) == 2 and e.parts[1].lower() == "row_count":
            ds = self.dataset(e.parts[0], e.pos)
            key = self.measure(ds, "count(*)", f"row_count({ds})")
            return Measured(key, self.source(e)), T.NUMBER
        if len(e.parts) == 1 and e.parts[0].lower() in self.scope.datasets:
            raise RuleError(f"'{e.parts[0]}' is a dataset; measure it: row_count({e.parts[0]})",
                            e.pos)
        name = ".".join(e.parts)
        close = did_you_mean(e.parts[-1], ["row_count"])
        shown = ast.show(e)
        raise RuleError(f"'{name}': a column is only meaningful inside a measure or all(...)",
                        e.pos, hint=close or f"e.g. all({shown} > 0) or max({shown}) < 100")

    def call(self, e: ast.Call) -> tuple[Value, T]:  # noqa: C901 - one case per function
        fn, args = e.fn, e.args
        if fn not in FUNCTIONS:
            raise RuleError(f"unknown function '{fn}'", e.pos, hint=did_you_mean(fn, FUNCTIONS)
                            or f"functions: {', '.join(FUNCTIONS)}")
        if fn == "row_count":
            if len(args) > 1:
                raise RuleError("row_count() takes at most a dataset", e.pos)
            if args:
                if not isinstance(args[0], ast.Name) or len(args[0].parts) != 1:
                    raise RuleError("row_count() takes a dataset name", args[0].pos)
                ds = self.dataset(args[0].parts[0], args[0].pos)
                label = f"row_count({ds})"
            else:
                ds, label = self.default(e.pos, "row_count()"), "row_count"
            return Measured(self.measure(ds, "count(*)", label), self.source(e)), T.NUMBER
        if fn in ("null_count", "distinct_count", "min", "max", "sum", "avg"):
            if len(args) != 1:
                raise RuleError(f"{fn}() takes one column", e.pos)
            col = self.column(args[0], fn)
            q = _q(col.name)
            sql = {"null_count": f"count(*) FILTER (WHERE {q} IS NULL)",
                   "distinct_count": f"count(DISTINCT {q})"}.get(fn, f"{fn}({q})")
            label = f"{fn}({col.name})" if col.dataset == self.scope.default else \
                f"{fn}({col.dataset}.{col.name})"
            return Measured(self.measure(col.dataset, sql, label, [col.name],
                                         distinct=fn == "distinct_count"), self.source(e)), \
                T.NUMBER
        if fn in ("not_null", "unique", "has_columns"):
            ds, cols = self.columns(args, fn, e.pos)
            label = f"{fn}({', '.join(cols)})"
            if fn == "has_columns":
                self.schema[ds] = None
                return HasColumns(ds, tuple(cols)), T.BOOL
            quoted = [_q(c) for c in cols]
            if fn == "not_null":
                sql = f"count(*) FILTER (WHERE {' OR '.join(f'{q} IS NULL' for q in quoted)})"
                return Zero(self.measure(ds, sql, f"{label}: rows with nulls", cols),
                            "rows with nulls"), T.BOOL
            target = quoted[0] if len(quoted) == 1 else f"({', '.join(quoted)})"
            base = f"count({quoted[0]})" if len(quoted) == 1 else "count(*)"
            sql = f"{base} - count(DISTINCT {target})"
            return Zero(self.measure(ds, sql, f"{label}: duplicate rows", cols, distinct=True),
                        "duplicate rows"), T.BOOL
        if fn == "accepted_values":
            if len(args) != 2 or not isinstance(args[1], ast.ListLit):
                raise RuleError("accepted_values(column, [values...])", e.pos)
            col = self.column(args[0], fn)
            values = [self.literal(i) for i in args[1].items]
            q = _q(col.name)
            outside = f"{q} IS NOT NULL AND {q} NOT IN ({', '.join(_lit(v) for v in values)})" \
                if values else f"{q} IS NOT NULL"
            key = self.measure(col.dataset, f"count(*) FILTER (WHERE {outside})",
                               f"accepted_values({col.name}): other values", [col.name])
            examples = self.measure(
                col.dataset, f"list_sort(list(DISTINCT {q}) FILTER (WHERE {outside}))[1:5]",
                "other values, e.g.", [col.name], only_if=key)
            return Zero(key, "rows with other values", examples), T.BOOL
        if fn == "all":
            if len(args) != 1:
                raise RuleError("all() takes one row condition, e.g. all(amount > 0)", e.pos)
            ds, sql, cols = self.row_predicate(args[0])
            label = f"all({self.source(args[0])}): rows where it is false"
            return Zero(self.measure(ds, f"count(*) FILTER (WHERE NOT ({sql}))", label, cols),
                        "rows where it is false"), T.BOOL
        if fn == "column_type":
            if len(args) != 1:
                raise RuleError("column_type() takes one column", e.pos)
            col = self.column(args[0], fn)
            self.schema[col.dataset] = None
            return ColumnType(col.dataset, col.name), T.STRING
        # abs
        if len(args) != 1:
            raise RuleError("abs() takes one value", e.pos)
        return Apply("abs", (self.expect(args[0], T.NUMBER, "abs()"),)), T.NUMBER

    def row_predicate(self, e: ast.Expr) -> tuple[str, str, list[str]]:
        """A row condition as SQL over one dataset: (dataset, sql, columns)."""
        datasets: dict[str, None] = {}
        cols: dict[str, None] = {}

        def sql(x: ast.Expr) -> str:  # noqa: C901 - one case per construct
            match x:
                case ast.Number(value=v):
                    return repr(v)
                case ast.String(value=v):
                    return _lit(v)
                case ast.Bool(value=v):
                    return "true" if v else "false"
                case ast.Null():
                    return "NULL"
                case ast.Name():
                    col = self.column(x, "all")
                    datasets[col.dataset] = None
                    cols[col.name] = None
                    return _q(col.name)
                case ast.Not(expr=y):
                    return f"NOT ({sql(y)})"
                case ast.Neg(expr=y):
                    return f"-({sql(y)})"
                case ast.And(items=items):
                    return " AND ".join(f"({sql(i)})" for i in items)
                case ast.Or(items=items):
                    return " OR ".join(f"({sql(i)})" for i in items)
                case ast.Compare(op=op, left=a, right=b) | ast.Arith(op=op, left=a, right=b):
                    return f"({sql(a)}) {'=' if op is ast.Op.EQ else op.value} ({sql(b)})"
                case ast.Between(value=v, low=lo, high=hi):
                    return f"({sql(v)}) BETWEEN ({sql(lo)}) AND ({sql(hi)})"
                case ast.IsNull(value=v, negated=neg):
                    return f"({sql(v)}) IS {'NOT ' if neg else ''}NULL"
                case ast.In(value=v, items=items, negated=neg):
                    vals = ", ".join(_lit(self.literal(i)) for i in items.items)
                    return f"({sql(v)}) {'NOT ' if neg else ''}IN ({vals})"
                case ast.Call(fn="abs", args=(y,)):
                    return f"abs({sql(y)})"
                case ast.Call(fn=fn):
                    raise RuleError(f"{fn}() is a measure of a whole dataset; inside all(...) "
                                    "only row values, operators and abs() make sense", x.pos)
                case ast.ListLit():
                    raise RuleError("a list is only meaningful after 'in'", x.pos)
            raise AssertionError(x)  # pragma: no cover

        text = sql(e)
        if not datasets:
            raise RuleError("all(...) needs a condition on columns", e.pos)
        if len(datasets) > 1:
            raise RuleError(f"all(...) reads one dataset at a time, got {sorted(datasets)}",
                            e.pos)
        return next(iter(datasets)), text, list(cols)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def compile_rules(rules: Sequence[tuple[str, ast.Expr]], scope: Scope) -> RulePlan:
    """Check and compile (rule text, parsed rule) pairs. Raises RuleError (with the
    index of the failing rule in `RuleError.index`)."""
    c = _Compiler(scope)
    compiled = []
    for i, (text, expr) in enumerate(rules):
        c.mentioned = {}
        c.text = text
        try:
            value, kind = c.compile(expr)
        except RuleError as e:
            e.index = i  # type: ignore[attr-defined]
            raise
        if kind is not T.BOOL:
            err = RuleError(f"a rule must be a condition, got {kind.value}", expr.pos,
                            hint="compare it: e.g. row_count > 0")
            err.index = i  # type: ignore[attr-defined]
            raise err
        compiled.append(CompiledRule(text, value, tuple(c.mentioned)))
    return RulePlan(tuple(compiled), tuple(c.measures.values()), tuple(c.schema))


# -- evaluating ----------------------------------------------------------------------------
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
        values = ", ".join(f"{label} = {_show(v)}" for label, v in self.measured)
        return f"{self.text} failed{where}" + (f": {values}" if values else "")


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, str):
        return f"'{v}'"
    return "null" if v is None else str(v)


def evaluate(plan: RulePlan, values: Mapping[str, Any],
             schemas: Mapping[str, Mapping[str, str]]) -> list[RuleResult]:
    """Each rule's verdict, given the measured values (by Measure.key) and the columns of
    the datasets in `plan.schema_of` (name -> type)."""
    examples = {m.key: m.label for m in plan.measures}
    out = []
    for rule in plan.rules:
        seen: dict[str, Any] = {}
        ok = bool(_eval(rule.value, values, schemas, seen, examples))
        out.append(RuleResult(rule.text, ok, tuple(seen.items()), rule.datasets))
    return out


def _eval(v: Value, values: Mapping[str, Any], schemas: Mapping[str, Mapping[str, str]],
          seen: dict[str, Any], labels: Mapping[str, str]) -> Any:  # noqa: C901
    """`seen` collects (label -> value) of what the rule measured, for its message."""
    match v:
        case Lit(value=x):
            return x
        case Measured(key=k, label=label):
            seen[label] = values.get(k)
            return _num(values.get(k))
        case Zero(key=k, label=label, examples=ex):
            seen[label] = values.get(k)
            if ex is not None and values.get(k):
                seen[labels.get(ex, "e.g.")] = values.get(ex)
            return (values.get(k) or 0) == 0
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
                results = [_eval(a, values, schemas, seen, labels) for a in args]
                return all(results) if fn == "and" else any(results)
            vals = [_eval(a, values, schemas, seen, labels) for a in args]
            return _apply(fn, vals)
    raise AssertionError(v)  # pragma: no cover


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
