"""The rule language's syntax tree: frozen values with their place in the rule's text.

What a name means (a column, a dataset, a measure) is not decided here but by the
checker (`odibi.expr.check`), which knows the datasets a rule may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Union


@dataclass(frozen=True, slots=True)
class Pos:
    """Character offsets [start, end) in the rule's text."""

    start: int
    end: int


class Op(Enum):
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"

    @staticmethod
    def parse(text: str) -> Op:
        return Op({"=": "==", "<>": "!="}.get(text, text))


@dataclass(frozen=True, slots=True)
class Number:
    value: int | float
    pos: Pos


@dataclass(frozen=True, slots=True)
class String:
    value: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class Null:
    pos: Pos


@dataclass(frozen=True, slots=True)
class Name:
    """`amount`, or `raw_orders.amount` / `raw_orders.row_count` (qualified)."""

    parts: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Call:
    fn: str  # lower-cased
    args: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Tuple:
    """`(orders.a, orders.b)`: several columns as one key (an argument of references)."""

    items: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Not:
    expr: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Neg:
    expr: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class Compare:
    op: Op
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Arith:
    op: Op
    left: Expr
    right: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Between:
    value: Expr
    low: Expr
    high: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class IsNull:
    value: Expr
    negated: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class In:
    value: Expr
    items: ListLit
    negated: bool
    pos: Pos


Expr = Union[Number, String, Bool, Null, Name, Call, ListLit, Tuple, Not, Neg, And, Or, Compare,
             Arith, Between, IsNull, In]


def show(e: Expr) -> str:
    """The expression as canonical text (print -> parse gives the same tree)."""
    match e:
        case Number(value=v):
            return "1e999" if v == float("inf") else repr(v)  # `inf` would read as a name
        case String(value=v):
            return "'" + v.replace("'", "''") + "'"
        case Bool(value=v):
            return "true" if v else "false"
        case Null():
            return "null"
        case Name(parts=parts):
            return ".".join(_ident(p) for p in parts)
        case Call(fn=fn, args=args):
            return f"{fn}({', '.join(show(a) for a in args)})"
        case ListLit(items=items):
            return "[" + ", ".join(show(i) for i in items) + "]"
        case Tuple(items=items):
            return "(" + ", ".join(show(i) for i in items) + ")"
        case Not(expr=x):
            return f"not ({show(x)})"
        case Neg(expr=x):
            return f"-({show(x)})"
        case And(items=items):
            return " and ".join(f"({show(i)})" for i in items)
        case Or(items=items):
            return " or ".join(f"({show(i)})" for i in items)
        case Compare(op=op, left=a, right=b) | Arith(op=op, left=a, right=b):
            return f"({show(a)}) {op.value} ({show(b)})"
        case Between(value=v, low=lo, high=hi):
            return f"({show(v)}) between ({show(lo)}) and ({show(hi)})"
        case IsNull(value=v, negated=neg):
            return f"({show(v)}) is {'not ' if neg else ''}null"
        case In(value=v, items=items, negated=neg):
            return f"({show(v)}) {'not ' if neg else ''}in {show(items)}"
    raise AssertionError(e)  # pragma: no cover


KEYWORDS = frozenset({"and", "or", "not", "between", "is", "in", "null", "true", "false"})


def _ident(name: str) -> str:
    import re

    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.lower() not in KEYWORDS
    return name if plain else '"' + name.replace('"', '""') + '"'
