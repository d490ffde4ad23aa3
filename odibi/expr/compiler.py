"""The rule compiler behind `odibi.expr.check.compile_rules`: one method per construct of
the language, each giving a value of the rule's tree (`odibi.expr.plan`) and its type, and
registering the measures it needs (`odibi.expr.measurements`, shared within a rule set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from odibi.errors import did_you_mean
from odibi.expr import ast
from odibi.expr import measurements as ms
from odibi.expr import rows
from odibi.expr.check import FUNCTIONS, REFERENCES_FORMS, Column, RuleError, UnknownDataset
from odibi.expr.measures import Measure, Shape
from odibi.expr.plan import (Apply, ColumnType, Example, HasColumns, Lit, Measured, Scope, Value,
                             Zero)


class T(Enum):
    NUMBER = "a number"
    STRING = "a string"
    BOOL = "a condition"
    ANY = "a value"


# -- compiling ---------------------------------------------------------------------------
@dataclass
class Compiler:
    """Compiles the rules of one set, one at a time (`compile`). Owned by one call of
    `compile_rules`: `measures` are shared by all its rules (a measurement written alike is
    measured once), `schema` collects the datasets whose columns they need, `mentioned`
    the datasets the current rule reads."""

    scope: Scope
    measures: dict[tuple[str, str | None, str], Measure] = field(default_factory=dict)
    schema: dict[str, None] = field(default_factory=dict)
    mentioned: dict[str, None] = field(default_factory=dict)
    text: str = ""  # the rule being compiled

    def measure(self, dataset: str, what: ms.Measurement, label: str, columns: Sequence[str] = (),
                only_if: str | None = None, parent: str | None = None,
                parent_columns: Sequence[str] = ()) -> str:
        """The key of the measure of `what`: one per dataset (pair) and measurement, written
        alike (by repr: the literals 1, 1.0 and true stay three, as they are in SQL)."""
        key = (dataset, parent, repr(what))
        if key not in self.measures:
            self.measures[key] = Measure(
                f"m{len(self.measures)}", dataset, what, label, tuple(columns),
                distinct=isinstance(what, ms.DISTINCT), only_if=only_if, form=ms.form_of(what),
                parent=parent, parent_columns=tuple(parent_columns))
        self.mentioned[dataset] = None
        if parent is not None:
            self.mentioned[parent] = None
        return self.measures[key].key

    def example(self, of: str, dataset: str, what: ms.Measurement, shape: Shape,
                columns: Sequence[str], label: str = "", parent: str | None = None,
                parent_columns: Sequence[str] = ()) -> Example:
        """A follow-up query showing what broke the rule whose count is `of`."""
        counted = next(m.label for m in self.measures.values() if m.key == of)
        key = self.measure(dataset, what, label or f"{counted}, e.g.", columns, only_if=of,
                           parent=parent, parent_columns=parent_columns)
        return Example(key, shape, label, tuple(columns))

    def dataset(self, name: str, pos: ast.Pos) -> str:
        found = self.scope.datasets.get(name.lower())
        if found is None:
            raise UnknownDataset(f"'{name}' is not {self.scope.unknown}", pos,
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
            case ast.Tuple():
                raise RuleError("a tuple of columns is only an argument of references()", e.pos,
                                hint=REFERENCES_FORMS)
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
                values = tuple(literal(i) for i in items.items)
                return Apply("not_in" if neg else "in", (self.compile(v)[0], Lit(values))), T.BOOL
        raise AssertionError(e)  # pragma: no cover

    def expect(self, e: ast.Expr, want: T, where: str) -> Value:
        value, got = self.compile(e)
        if got not in (want, T.ANY):
            raise RuleError(f"{where} needs {want.value}, got {got.value}", e.pos)
        return value

    def name(self, e: ast.Name) -> tuple[Value, T]:
        if len(e.parts) == 1 and e.parts[0].lower() == "row_count":
            ds = self.default(e.pos, "row_count")
            return Measured(self.measure(ds, ms.RowCount(), "row_count"), self.source(e)), \
                T.NUMBER
        if len(e.parts) == 2 and e.parts[1].lower() == "row_count":
            ds = self.dataset(e.parts[0], e.pos)
            key = self.measure(ds, ms.RowCount(), f"row_count({ds})")
            return Measured(key, self.source(e)), T.NUMBER
        if len(e.parts) == 1 and e.parts[0].lower() in self.scope.datasets:
            raise RuleError(f"'{e.parts[0]}' is a dataset; measure it: row_count({e.parts[0]})",
                            e.pos)
        name = ".".join(e.parts)
        close = did_you_mean(e.parts[-1], ["row_count"])
        shown = ast.show(e)
        raise RuleError(f"'{name}': a column is only meaningful inside a measure or all(...)",
                        e.pos, hint=close or f"e.g. all({shown} > 0) or max({shown}) < 100")

    def call(self, e: ast.Call) -> tuple[Value, T]:
        fn, args = e.fn, e.args
        if fn not in FUNCTIONS:
            raise RuleError(f"unknown function '{fn}'", e.pos, hint=did_you_mean(fn, FUNCTIONS)
                            or f"functions: {', '.join(FUNCTIONS)}")
        if fn == "row_count":
            return self.row_count(e)
        if fn in ("null_count", "distinct_count", "min", "max", "sum", "avg"):
            return self.aggregate(e)
        if fn == "column_type":
            if len(args) != 1:
                raise RuleError("column_type() takes one column", e.pos)
            col = self.column(args[0], fn)
            self.schema[col.dataset] = None
            return ColumnType(col.dataset, col.name), T.STRING
        if fn == "abs":
            if len(args) != 1:
                raise RuleError("abs() takes one value", e.pos)
            return Apply("abs", (self.expect(args[0], T.NUMBER, "abs()"),)), T.NUMBER
        predicates = {"not_null": self.not_null, "unique": self.unique,
                      "has_columns": self.has_columns, "accepted_values": self.accepted_values,
                      "all": self.all_rows, "references": self.references}
        return predicates[fn](e), T.BOOL

    def row_count(self, e: ast.Call) -> tuple[Value, T]:
        args = e.args
        if len(args) > 1:
            raise RuleError("row_count() takes at most a dataset", e.pos)
        if args:
            if not isinstance(args[0], ast.Name) or len(args[0].parts) != 1:
                raise RuleError("row_count() takes a dataset name", args[0].pos)
            ds = self.dataset(args[0].parts[0], args[0].pos)
            label = f"row_count({ds})"
        else:
            ds, label = self.default(e.pos, "row_count()"), "row_count"
        return Measured(self.measure(ds, ms.RowCount(), label), self.source(e)), T.NUMBER

    def aggregate(self, e: ast.Call) -> tuple[Value, T]:
        fn = e.fn
        if len(e.args) != 1:
            raise RuleError(f"{fn}() takes one column", e.pos)
        col = self.column(e.args[0], fn)
        what: ms.Measurement = ms.NullCount((col.name,)) if fn == "null_count" else \
            ms.DistinctCount(col.name) if fn == "distinct_count" else \
            ms.Aggregate(ms.Agg(fn), col.name)
        label = f"{fn}({col.name})" if col.dataset == self.scope.default else \
            f"{fn}({col.dataset}.{col.name})"
        key = self.measure(col.dataset, what, label, [col.name])
        return Measured(key, self.source(e)), T.NUMBER

    def has_columns(self, e: ast.Call) -> Value:
        ds, cols = self.columns(e.args, "has_columns", e.pos)
        self.schema[ds] = None
        return HasColumns(ds, tuple(cols))

    def not_null(self, e: ast.Call) -> Value:
        """Rows with a null; on failure, the nulls of each column (several columns) and the
        first rows that hold one."""
        ds, cols = self.columns(e.args, "not_null", e.pos)
        label = f"not_null({', '.join(cols)}): rows with nulls"
        key = self.measure(ds, ms.NullCount(tuple(cols)), label, cols)
        examples = (self.example(key, ds, ms.NullCounts(tuple(cols)), Shape.NULL_COUNTS,
                                 cols),) if len(cols) > 1 else ()
        examples += (self.example(key, ds, ms.NullRows(tuple(cols)), Shape.NULL_ROWS, cols),)
        return Zero(key, "rows with nulls", examples)

    def unique(self, e: ast.Call) -> Value:
        """Rows beyond the first of each key (NULL keys of one column are not counted); on
        failure, the most repeated keys with their counts."""
        ds, cols = self.columns(e.args, "unique", e.pos)
        key = self.measure(ds, ms.Duplicates(tuple(cols)),
                           f"unique({', '.join(cols)}): duplicate rows", cols)
        example = self.example(key, ds, ms.RepeatedKeys(tuple(cols)), Shape.COUNTED, cols)
        return Zero(key, "duplicate rows", (example,))

    def accepted_values(self, e: ast.Call) -> Value:
        args = e.args
        if len(args) != 2 or not isinstance(args[1], ast.ListLit):
            raise RuleError("accepted_values(column, [values...])", e.pos)
        col = self.column(args[0], "accepted_values")
        values = tuple(literal(i) for i in args[1].items)
        key = self.measure(col.dataset, ms.Outside(col.name, values),
                           f"accepted_values({col.name}): other values", [col.name])
        example = self.example(key, col.dataset, ms.OutsideValues(col.name, values),
                               Shape.VALUES, [col.name], label="other values, e.g.")
        return Zero(key, "rows with other values", (example,))

    def all_rows(self, e: ast.Call) -> Value:
        """Rows where the condition is false (NULL is not false); on failure, the first
        distinct values of the columns it reads in such rows."""
        if len(e.args) != 1:
            raise RuleError("all() takes one row condition, e.g. all(amount > 0)", e.pos)
        ds, condition, cols = row_condition(e.args[0], lambda x: self.column(x, "all"))
        label = f"all({self.source(e.args[0])}): rows where it is false"
        false = rows.Not(condition)
        key = self.measure(ds, ms.CountWhere(false), label, cols)
        example = self.example(key, ds, ms.RowsWhere(tuple(cols), false), Shape.ROWS, cols)
        return Zero(key, "rows where it is false", (example,))

    def references(self, e: ast.Call) -> Value:
        """references(child key, parent key): the child's rows whose key (no column of it
        NULL) is no parent row's key, counted in an anti-join of the two datasets; on
        failure, the first distinct orphan keys."""
        if len(e.args) != 2:
            raise RuleError(f"references() takes two keys, got {len(e.args)}", e.pos,
                            hint=REFERENCES_FORMS)
        child, child_cols = self.key(e.args[0], e)
        parent, parent_cols = self.key(e.args[1], e)
        if len(child_cols) != len(parent_cols):
            raise RuleError(f"references(): a key of {len(child_cols)} column(s) cannot refer "
                            f"to a key of {len(parent_cols)}", e.pos, hint=REFERENCES_FORMS)
        keys = (tuple(child_cols), tuple(parent_cols))
        key = self.measure(child, ms.Orphans(*keys), "references: rows with orphan keys",
                           child_cols, parent=parent, parent_columns=parent_cols)
        example = self.example(key, child, ms.OrphanKeys(*keys), Shape.KEYS, child_cols,
                               parent=parent, parent_columns=parent_cols)
        return Zero(key, "rows with orphan keys", (example,))

    def key(self, e: ast.Expr, call: ast.Call) -> tuple[str, list[str]]:
        """One side of references(): a column, or a tuple of columns of one dataset."""
        if isinstance(e, ast.ListLit):
            raise RuleError("write a key of several columns in parentheses", e.pos,
                            hint=REFERENCES_FORMS)
        if isinstance(e, ast.Name) and len(e.parts) == 1 \
                and e.parts[0].lower() in self.scope.datasets:
            raise RuleError(f"'{e.parts[0]}' is a dataset; references() takes its key "
                            f"columns: {e.parts[0]}.column", e.pos, hint=REFERENCES_FORMS)
        items = e.items if isinstance(e, ast.Tuple) else (e,)
        try:
            return self.columns(items, "references", e.pos)
        except UnknownDataset as err:
            if self.scope.unknown_hint is None or err.hint != self.scope.unknown_hint:
                raise
            # a validation reads only its own output: the rule belongs in a check
            raise UnknownDataset(err.message, err.pos, hint=f"{self.scope.unknown_hint}; "
                                 f"there it may name both: {self.qualified(call)}") from None

    def qualified(self, e: ast.Call) -> str:
        """references(...) with the default dataset's bare columns qualified."""
        def side(x: ast.Expr) -> str:
            if isinstance(x, ast.Tuple):
                return "(" + ", ".join(side(i) for i in x.items) + ")"
            if isinstance(x, ast.Name) and len(x.parts) == 1 and self.scope.default:
                return ast.show(ast.Name((self.scope.default, *x.parts), x.pos))
            return ast.show(x)
        return f"references({', '.join(side(a) for a in e.args)})"


# -- the condition of all(...), in the row language (odibi.expr.rows) -----------------
def row_condition(e: ast.Expr, column: Callable[[ast.Expr], Column]
                  ) -> tuple[str, rows.Row, list[str]]:
    """(dataset, condition, the columns it reads: each once, as first written, for names
    ignore case). `column` resolves a name of the rule to a column of a dataset."""
    reads = _Reads(column)
    condition = reads.row(e)
    if not reads.datasets:
        raise RuleError("all(...) needs a condition on columns", e.pos)
    if len(reads.datasets) > 1:
        raise RuleError(f"all(...) reads one dataset at a time, got {sorted(reads.datasets)}",
                        e.pos)
    return next(iter(reads.datasets)), condition, list(reads.columns.values())


@dataclass
class _Reads:
    """A condition being compiled, and what it reads so far."""

    column: Callable[[ast.Expr], Column]
    datasets: dict[str, None] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # lower-cased -> as first written

    def row(self, x: ast.Expr) -> rows.Row:  # noqa: C901 - one case per construct
        row = self.row
        match x:
            case ast.Number(value=v) | ast.String(value=v) | ast.Bool(value=v):
                return rows.Const(v)
            case ast.Null():
                return rows.Const(None)
            case ast.Name():
                col = self.column(x)
                self.datasets[col.dataset] = None
                self.columns.setdefault(col.name.lower(), col.name)
                return rows.Col(col.name)
            case ast.Not(expr=y):
                return rows.Not(row(y))
            case ast.Neg(expr=y):
                return rows.Neg(row(y))
            case ast.And(items=items):
                return rows.And(tuple(row(i) for i in items))
            case ast.Or(items=items):
                return rows.Or(tuple(row(i) for i in items))
            case ast.Compare(op=op, left=a, right=b) | ast.Arith(op=op, left=a, right=b):
                return rows.Binary(op, row(a), row(b))
            case ast.Between(value=v, low=lo, high=hi):
                return rows.Between(row(v), row(lo), row(hi))
            case ast.IsNull(value=v, negated=neg):
                return rows.IsNull(row(v), neg)
            case ast.In(value=v, items=items, negated=neg):
                values = tuple(literal(i) for i in items.items)  # (checked before the value)
                return rows.In(row(v), values, neg)
            case ast.Call(fn="abs", args=(y,)):
                return rows.Abs(row(y))
            case ast.Call(fn=fn):
                raise RuleError(f"{fn}() is a measure of a whole dataset; inside all(...) "
                                "only row values, operators and abs() make sense", x.pos)
            case ast.ListLit():
                raise RuleError("a list is only meaningful after 'in'", x.pos)
            case ast.Tuple():
                raise RuleError("a tuple of columns is only an argument of references()", x.pos)
        raise AssertionError(x)  # pragma: no cover


def literal(e: ast.Expr) -> Any:
    """An item of a list (`in [...]`, `accepted_values`): a plain value."""
    match e:
        case ast.Number(value=v) | ast.String(value=v) | ast.Bool(value=v):
            return v
        case ast.Neg(expr=ast.Number(value=v)):
            return -v
        case ast.Null():
            return None
    raise RuleError("a list holds plain values: numbers, 'strings', true, false, null", e.pos)
