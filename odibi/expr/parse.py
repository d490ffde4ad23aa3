"""Rule text -> `odibi.expr.ast` tree, with the grammar of `grammar/expr.lark`.

Syntax errors are `ExprSyntaxError`s at the column of the offending token, with a
friendly label for the common slips (lark's `match_examples`); the caller turns the
column into a place in the YAML file.
"""

from __future__ import annotations

from typing import Any

from odibi.errors import ExprSyntaxError
from odibi.expr import ast
from odibi.grammars import lalr_parser

_EXAMPLES = {
    "a comparison needs a value on its right": ["row_count >", "a ==", "a <= ", "x between 1",
                                                "a > 0 and b >", "a > 0 or b >",
                                                "not a >"],
    "unbalanced parentheses": ["(row_count > 0", "abs(x", "row_count > 0)", "(a, b",
                               "f((a, b), (c, d)", "f((a, b)"],
    "a key of several columns needs a column after each comma: (orders.a, orders.b)":
        ["f((a,), b)", "f((a, b,), c)", "(a,)"],
    "'in' takes a list in square brackets: x in [1, 2]": ["x in (1, 2)", "x not in (1, 2)"],
    "two values with no operator between them": ["row_count 0", "a b", "1 2"],
    "an operator needs a value on each side": ["> 0", "and x", "a and", "x or", "a + ", "* 2"],
    "a list needs commas between its values and a closing ']'": ["x in [1 2]", "x in [1,"],
    "write strings in single quotes": ['status == "paid" + ', "x = 'a"],
    "use 'and' / 'or', not '&&' / '||'": ["a && b", "a || b"],
}


def parse_rule(text: str) -> ast.Expr:
    """Parse one rule. Raises ExprSyntaxError(col=1-based column in `text`)."""
    from lark.exceptions import UnexpectedInput

    if not text.strip():
        raise ExprSyntaxError("empty rule", col=1)
    parser = lalr_parser("expr.lark")
    try:
        tree = parser.parse(text)
    except UnexpectedInput as e:
        # the column counts from the rule's start (lark's `column` restarts on each line)
        at = getattr(e, "pos_in_stream", None)
        if at is None and getattr(e, "token", None) is not None:
            at = e.token.start_pos  # type: ignore[attr-defined]
        col = at + 1 if isinstance(at, int) and 0 <= at < len(text) else len(text) + 1
        raise ExprSyntaxError(_label(e, text), col=col) from None
    return _Build(text).build(tree)


def _label(e: Exception, text: str) -> str:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF

    if isinstance(e, UnexpectedCharacters):
        char = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        if char in "&|":
            return "use 'and' / 'or', not '&&' / '||'"
        if char == '"':
            return "write strings in single quotes ('paid'); double quotes are for names"
        return f"unexpected character '{char}'"
    try:
        label = e.match_examples(lalr_parser("expr.lark").parse, _EXAMPLES,  # type: ignore[attr-defined]
                                 use_accepts=True)
    except Exception:  # noqa: BLE001 - a label is a nicety
        label = None
    if label:
        return str(label)
    if isinstance(e, UnexpectedEOF):
        return "the rule ends too soon"
    token = getattr(e, "token", None)
    return f"unexpected '{token}'" if token else "invalid rule"


class _Build:
    """lark tree -> ast, keeping each node's character span."""

    def __init__(self, text: str) -> None:
        self.text = text

    def pos(self, node: Any) -> ast.Pos:
        meta = getattr(node, "meta", None)
        if meta is not None and not getattr(meta, "empty", True):
            return ast.Pos(meta.start_pos, meta.end_pos)
        start = getattr(node, "start_pos", 0) or 0
        end = getattr(node, "end_pos", start) or start
        return ast.Pos(start, end)

    def build(self, node: Any) -> ast.Expr:  # noqa: C901 - one case per grammar rule
        from lark import Token

        if isinstance(node, Token):
            return self.token(node)
        kids = node.children
        pos = self.pos(node)
        match node.data:
            case "or_" | "and_" if len(kids) == 1:
                return self.build(kids[0])
            case "or_":
                return ast.Or(tuple(self.build(k) for k in kids), pos)
            case "and_":
                return ast.And(tuple(self.build(k) for k in kids), pos)
            case "not_":
                return ast.Not(self.build(kids[0]), pos)
            case "compare":
                return ast.Compare(ast.Op.parse(str(kids[1])), self.build(kids[0]),
                                   self.build(kids[2]), pos)
            case "arith":
                return ast.Arith(ast.Op.parse(str(kids[1])), self.build(kids[0]),
                                 self.build(kids[2]), pos)
            case "between":
                return ast.Between(self.build(kids[0]), self.build(kids[1]),
                                   self.build(kids[2]), pos)
            case "is_null" | "is_not_null":
                return ast.IsNull(self.build(kids[0]), node.data == "is_not_null", pos)
            case "in_" | "not_in":
                items = self.build(kids[1])
                assert isinstance(items, ast.ListLit)
                return ast.In(self.build(kids[0]), items, node.data == "not_in", pos)
            case "neg":
                return ast.Neg(self.build(kids[0]), pos)
            case "number" | "string":
                return self.token(kids[0])
            case "true" | "false":
                return ast.Bool(node.data == "true", pos)
            case "null":
                return ast.Null(pos)
            case "call":
                name = str(kids[0])
                args = kids[1].children if len(kids) > 1 and kids[1] is not None else []
                return ast.Call(name.lower(), tuple(self.build(a) for a in args), pos)
            case "name":
                return ast.Name(tuple(_unquote(str(k)) for k in kids), pos)
            case "list":
                return ast.ListLit(tuple(self.build(k) for k in kids if k is not None), pos)
            case "tuple":
                return ast.Tuple(tuple(self.build(k) for k in kids), pos)
        raise AssertionError(node.data)  # pragma: no cover - every rule is handled above

    def token(self, tok: Any) -> ast.Expr:
        pos = ast.Pos(tok.start_pos or 0, tok.end_pos or 0)
        if tok.type == "NUMBER":
            text = str(tok)
            value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
            return ast.Number(value, pos)
        if tok.type == "STRING":
            return ast.String(str(tok)[1:-1].replace("''", "'"), pos)
        if tok.type == "NAME":
            return ast.Name((_unquote(str(tok)),), pos)
        raise AssertionError(tok.type)  # pragma: no cover


def _unquote(name: str) -> str:
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name
