"""Written arithmetic: numbers as written (with the spans of their digits), expression trees
over them, equations (`Step`), and the arithmetic a checker compares them with."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Number:
    """A number as written: its value and the span of its digits (no '$', no '%')."""

    value: float
    start: int
    end: int
    text: str  # the digits as written, e.g. "1,200" or "0.5"
    percent: bool = False  # written with '%': value is already divided by 100
    word: bool = False  # written as a word ("three", "half")

    @property
    def written(self) -> float:
        """The number as it reads, before a '%' divides it by 100."""
        return self.value * 100 if self.percent else self.value


@dataclass(frozen=True)
class Expr:
    """An arithmetic expression tree over written numbers."""

    op: str | None  # + - * /, or None for a leaf
    start: int
    end: int
    number: Number | None = None  # the leaf's number
    left: Expr | None = None
    right: Expr | None = None
    op_span: tuple[int, int] | None = None  # characters of the operator (symbol or word)

    @property
    def value(self) -> float | None:
        if self.op is None:
            return self.number.value if self.number is not None else None
        a, b = self.left.value, self.right.value  # type: ignore[union-attr]
        if a is None or b is None:
            return None
        return apply_op(self.op, a, b)

    def leaves(self) -> list[Number]:
        if self.op is None:
            return [self.number] if self.number is not None else []
        return [*self.left.leaves(), *self.right.leaves()]  # type: ignore[union-attr]

    def ops(self) -> list[Expr]:
        """The operator nodes, left to right."""
        if self.op is None:
            return []
        return [*self.left.ops(), self, *self.right.ops()]  # type: ignore[union-attr]

    def render(self) -> str:
        """The expression in plain notation: '48 / 2', '(76 - 25) * 2'."""
        if self.op is None:
            return format_number(self.number.value if self.number else float("nan"))
        left, right = self.left.render(), self.right.render()  # type: ignore[union-attr]
        if self.left.op is not None and _PRECEDENCE[self.left.op] < _PRECEDENCE[self.op]:
            left = f"({left})"
        if self.right.op is not None and _PRECEDENCE[self.right.op] <= _PRECEDENCE[self.op]:
            right = f"({right})"
        return f"{left} {self.op} {right}"


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclass(frozen=True)
class Step:
    """A written equation: two or more expressions joined by '=' (or 'is' after an operation)."""

    sides: tuple[Expr, ...]
    start: int
    end: int
    text: str
    annotation: bool = False  # a GSM8K calculator annotation <<...>>

    @property
    def expression(self) -> Expr:
        """The first side: what the step computes."""
        return self.sides[0]

    @property
    def result(self) -> Expr:
        """The last side: what the step says it comes to."""
        return self.sides[-1]

    @property
    def operands(self) -> list[Number]:
        return self.expression.leaves()

    def render(self) -> str:
        return " = ".join(s.render() for s in self.sides)


def apply_op(op: str, a: float, b: float) -> float | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b != 0 else None
    raise ValueError(f"unknown operator {op!r}")


def format_number(value: float) -> str:
    """24.0 -> '24', 1.5 -> '1.5', 3.3333 -> '3.33'."""
    if not math.isfinite(value):
        return "?"
    rounded = round(value, 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def same_value(written: float, true: float, text: str | None = None) -> bool:
    """Does the written result stand for the true value? Exact, or rounded to the decimals it
    was written with when it has some ('3.33' for 10/3); an integer for a fraction is wrong."""
    if math.isclose(written, true, rel_tol=1e-9, abs_tol=1e-9):
        return True
    decimals = len(text.split(".")[1]) if text and "." in text else 0
    return decimals > 0 and abs(written - true) <= 0.5 * 10**-decimals + 1e-9


def values_equal(a: float, b: float) -> bool:
    """Equal up to float error."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def value_in(value: float, pool: list[float]) -> bool:
    """Is `value` one of `pool` (up to float error)?"""
    return any(values_equal(value, p) for p in pool)


def operations(tree: Expr) -> list[tuple[Expr, float]]:
    """Every operator node of a tree, innermost first, as a binary expression over the values of
    its operands (how a step uses earlier results), with its value."""
    if tree.op is None:
        return []
    inner = [*operations(tree.left), *operations(tree.right)]  # type: ignore[arg-type]
    left, right = _as_leaf(tree.left), _as_leaf(tree.right)  # type: ignore[arg-type]
    binary = Expr(tree.op, 0, 0, left=left, right=right)
    return [*inner, (binary, tree.value)]  # type: ignore[list-item]


def _as_leaf(e: Expr) -> Expr:
    """A subtree as the leaf of its value."""
    if e.op is None:
        return e
    v = e.value
    return Expr(None, 0, 0, number=Number(v, 0, 0, format_number(v)))  # type: ignore[arg-type]
