"""The metric-check expression grammar: a tokenizer and a recursive-descent parser over
numbers, ``champion`` and ``+ - * /``, never ``eval``. Pure: no MLflow, no I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

EXPRESSION_MAX = 500
MAX_DEPTH = 20


class ExpressionError(ValueError):
    """A metric expression that the grammar refuses."""


# -- the expression grammar --------------------------------------------------------------
#
#   comparison := metric OP sum END          OP: >= > <= < == !=
#   sum        := product (("+" | "-") product)*
#   product    := unary (("*" | "/") unary)*
#   unary      := ("-" | "+") unary | atom
#   atom       := NUMBER | "champion" | "(" sum ")"
#   metric     := NAME | `any text but a backquote`
#
# ``champion`` is the champion's value of the same metric. Names are only ever looked up
# as metric keys; nothing is called, imported or read as an attribute.

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_./:]*)"
    r"|`(?P<quoted>[^`]+)`"
    r"|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<punct>[-+*/()]))"
)
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠", "+": "+", "-": "−", "*": "×", "/": "÷"}


@dataclass(frozen=True)
class Token:
    kind: str  # number / name / op / punct / end
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            start = pos + len(text[pos:]) - len(text[pos:].lstrip())
            if text[start] == "=":
                raise ExpressionError(f"a single '=' at position {start + 1}: use == to compare")
            raise ExpressionError(f"unexpected character {text[start]!r} at position {start + 1}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "quoted":
            kind = "name"
        tokens.append(Token(kind, value, match.start(kind) + 1))
        pos = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Champion:
    pass


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


Node = Num | Champion | Neg | BinOp


@dataclass(frozen=True)
class Comparison:
    metric: str
    op: str
    rhs: Node
    text: str

    @property
    def relative(self) -> bool:
        return _uses_champion(self.rhs)

    def evaluate(self, value: float, champion: float | None) -> tuple[bool, str]:
        """Whether ``value`` passes, and the one-line reason (numbers filled in)."""
        threshold = evaluate_node(self.rhs, champion)
        passed = OPS[self.op](value, threshold)
        shown = render(self.rhs, champion)
        if not isinstance(self.rhs, Num):
            shown += f" = {_num(threshold)}"
        verdict = _SYMBOL[self.op] if passed else f"is not {_SYMBOL[self.op]}"
        return passed, f"{self.metric} {_num(value)} {verdict} {shown}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def comparison(self) -> Comparison:
        first = self.take()
        if first.kind != "name":
            raise ExpressionError(f"an expression starts with the metric's name, got {_show(first)}")
        if first.text == "champion":
            raise ExpressionError("write the metric on the left: val_auc >= champion - 0.005")
        op = self.take()
        if op.kind != "op":
            raise ExpressionError(f"expected a comparison (>=, >, <=, <, ==, !=) after {first.text!r}, got {_show(op)}")
        rhs = self.sum()
        end = self.peek
        if end.kind != "end":
            raise ExpressionError(f"unexpected {_show(end)} at position {end.at} (after a complete expression)")
        return Comparison(first.text, op.text, rhs, self.text)

    def sum(self) -> Node:
        node = self.product()
        while self.peek.text in ("+", "-") and self.peek.kind == "punct":
            op = self.take().text
            node = BinOp(op, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek.text in ("*", "/") and self.peek.kind == "punct":
            op = self.take().text
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} deep")
        try:
            token = self.peek
            if token.kind == "punct" and token.text in ("-", "+"):
                self.take()
                operand = self.unary()
                return Neg(operand) if token.text == "-" else operand
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self) -> Node:
        token = self.take()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise ExpressionError(f"{token.text} is not a finite number")
            return Num(value)
        if token.kind == "name":
            if token.text == "champion":
                return Champion()
            if token.text.startswith("champion.") or "." in token.text:
                raise ExpressionError(f"{token.text!r}: attribute access is not supported")
            raise ExpressionError(f"unknown name {token.text!r}: the right-hand side uses numbers and 'champion' only")
        if token.kind == "punct" and token.text == "(":
            node = self.sum()
            close = self.take()
            if close.text != ")":
                raise ExpressionError(f"expected ')' at position {close.at}, got {_show(close)}")
            return node
        raise ExpressionError(f"expected a number, 'champion' or '(' at position {token.at}, got {_show(token)}")


def _show(token: Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


def parse_expression(text: object) -> Comparison:
    """Parse ``metric OP expression``; raises ExpressionError saying what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > EXPRESSION_MAX:
        raise ExpressionError(f"the expression is {len(text)} characters; at most {EXPRESSION_MAX}")
    return _Parser(text.strip()).comparison()


def evaluate_node(node: Node, champion: float | None) -> float:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Champion):
        if champion is None:
            raise ExpressionError("the expression refers to the champion, and there is none")
        return champion
    if isinstance(node, Neg):
        return -evaluate_node(node.operand, champion)
    left, right = evaluate_node(node.left, champion), evaluate_node(node.right, champion)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if right == 0:
        raise ExpressionError("division by zero")
    return left / right


def render(node: Node, champion: float | None, parent: int = 0) -> str:
    """The right-hand side in words, the champion's value filled in: ``champion 0.905 − 0.005``."""
    if isinstance(node, Num):
        return _num(node.value)
    if isinstance(node, Champion):
        return "champion" if champion is None else f"champion {_num(champion)}"
    if isinstance(node, Neg):
        return f"−{render(node.operand, champion, 3)}"
    level = 1 if node.op in "+-" else 2
    text = f"{render(node.left, champion, level)} {_SYMBOL[node.op]} {render(node.right, champion, level + 1)}"
    return f"({text})" if level < parent else text


def _uses_champion(node: Node) -> bool:
    if isinstance(node, Champion):
        return True
    if isinstance(node, Neg):
        return _uses_champion(node.operand)
    if isinstance(node, BinOp):
        return _uses_champion(node.left) or _uses_champion(node.right)
    return False


def _num(value: float) -> str:
    return "NaN" if value != value else f"{value:.6g}"
