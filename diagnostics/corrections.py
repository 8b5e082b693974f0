"""Corrections of a wrong step: edits to the model's output that turn it into what the evidence
supports (the result digits of a slip; the operator and result of a wrong operation; the
operand and result of a misread; a gold step in place of an invented one), written in the
model's own notation, so that a teacher-forced corrected path shares the model's text up to
the first wrong character."""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostics.equations import Expr, Number, Step, apply_op, format_number
from diagnostics.gold_solution import GoldStep


@dataclass(frozen=True)
class Edit:
    """Replace output[start:end] with `text`."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Correction:
    """The corrected step: edits to the model's output, and where the corrected text ends."""

    edits: tuple[Edit, ...]  # sorted, non-overlapping
    end: int  # the corrected text is output[:end] with the edits applied

    @property
    def start(self) -> int:
        """The first character that changes."""
        return self.edits[0].start

    def apply(self, output: str) -> str:
        out, at = [], 0
        for e in self.edits:
            out.append(output[at : e.start])
            out.append(e.text)
            at = e.end
        out.append(output[at : self.end])
        return "".join(out)


def correct_value(after: Expr, before: Expr) -> Correction | None:
    """Rewrite the side `after` so that it equals `before`: its one differing number.

    A side that is a number gets the right value. A side that partly evaluates the one before it
    ('20 - 4 * 2 = 20 - 4') is aligned with it node by node, and the number that stands for a
    sub-expression of the wrong value is rewritten ('4' -> '8')."""
    target = _misaligned_leaf(before, after)
    if target is None:
        return None
    leaf, value = target
    edit = Edit(leaf.start, leaf.end, styled(value, leaf.number))
    return Correction((edit,), after.end)  # the corrected side; later sides would be stale


def _misaligned_leaf(before: Expr, after: Expr) -> tuple[Expr, float] | None:
    if after.op is None:
        v = before.value
        return (after, v) if v is not None else None
    if before.op == after.op and before.op is not None:
        for b, a in ((before.left, after.left), (before.right, after.right)):
            if b is None or a is None or b.value is None or a.value is None:
                continue
            if not math.isclose(b.value, a.value, rel_tol=1e-9, abs_tol=1e-9):
                return _misaligned_leaf(b, a)
    return None


def styled(value: float, like: Number | None) -> str:
    """A value written like the number it replaces (thousands separators kept)."""
    text = format_number(value)
    if like is not None and "," in like.text and "." not in text:
        text = f"{int(round(value)):,}"
    return text


def render_corrected(step: Step, output: str, correction: Correction | None) -> str:
    if correction is None:
        return ""
    return correction.apply(output)[step.start :].strip()


def rewrite_to_gold(step: Step, g: GoldStep, output: str) -> Correction:
    """The model's step turned into the gold step with the fewest edits: for a binary step,
    its operator and/or one operand (operands swapped when the order matters), then the result;
    otherwise the whole expression."""
    e = step.expression
    edits: list[Edit] = []
    ge = g.expression
    if e.op is not None and ge.op is not None and e.left.op is None and e.right.op is None:  # type: ignore[union-attr]
        gl, gr = ge.left.value, ge.right.value  # type: ignore[union-attr]
        ml, mr = e.left.value, e.right.value  # type: ignore[union-attr]
        if ge.op in "+*" and _close(ml, gr) and _close(mr, gl):  # type: ignore[arg-type]
            gl, gr = gr, gl  # commutative: keep the model's order
        if ge.op in "+*" and not (_close(ml, gl) or _close(mr, gr)):  # type: ignore[arg-type]
            if _close(ml, gr) or _close(mr, gl):  # type: ignore[arg-type]
                gl, gr = gr, gl
        if not _close(ml, gl):  # type: ignore[arg-type]
            edits.append(Edit(e.left.start, e.left.end, styled(gl, e.left.number)))  # type: ignore[union-attr, arg-type]
        if e.op != ge.op and e.op_span is not None:
            edits.append(
                Edit(e.op_span[0], e.op_span[1], op_like(ge.op, output[slice(*e.op_span)]))
            )
        if not _close(mr, gr):  # type: ignore[arg-type]
            edits.append(Edit(e.right.start, e.right.end, styled(gr, e.right.number)))  # type: ignore[union-attr, arg-type]
    else:
        edits.append(Edit(e.start, e.end, ge.render()))
    edits.sort(key=lambda x: x.start)
    if len(step.sides) < 2:  # an operation written without its result
        return Correction(tuple(edits), e.end)
    result = step.sides[1]
    edits.append(Edit(result.start, result.end, styled(g.value, result.number)))
    return Correction(tuple(edits), result.end)


def op_like(op: str, written: str) -> str:
    """The gold operator in the model's notation (a word for a word, a symbol for a symbol)."""
    if written.strip().isalpha() and written.strip().lower() not in ("x",):
        return {"+": "plus", "-": "minus", "*": "times", "/": "divided"}[op]
    return op


def replace_step(step: Step, g: GoldStep, output: str) -> Correction:
    return Correction((Edit(step.start, step.end, g.render()),), step.end)


def replace_operand(step: Step, leaf: Number, value: float, output: str) -> Correction:
    edits = [Edit(leaf.start, leaf.end, styled(value, leaf))]
    new_value = _value_with(step.expression, leaf, value)
    if len(step.sides) < 2:
        return Correction(tuple(edits), step.end)
    result = step.sides[1]
    if new_value is not None and result.op is None and result.start > leaf.end:
        edits.append(Edit(result.start, result.end, styled(new_value, result.number)))
        return Correction(tuple(edits), result.end)
    return Correction(tuple(edits), step.end)


def _value_with(e: Expr, leaf: Number, value: float) -> float | None:
    """e's value with `leaf` replaced by `value`."""
    if e.op is None:
        if e.number is leaf:
            return value
        return e.value
    a, b = _value_with(e.left, leaf, value), _value_with(e.right, leaf, value)  # type: ignore[arg-type]
    if a is None or b is None:
        return None
    return apply_op(e.op, a, b)


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
