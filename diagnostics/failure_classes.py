"""Classify a wrong answer from the text alone (no model): format, degenerate, arithmetic classes.

GSM8K gold solutions carry calculator annotations `<<a*b=c>>`; they give the gold operands,
operators and intermediate results, so several classes can be checked automatically:

- format: no answer could be extracted, or the expected value is in the output but not as its answer;
- degenerate: empty, or mostly repeated text;
- calculation_slip: the model wrote `a op b = c` with c wrong, or gave a wrong bare answer to a
  sum the question asks outright ("What is 37 + 45?");
- misread_number: an operand the model used is in neither the question nor its own earlier results;
- wrong_operation: the model combined the operands of a gold step (or of the sum the question
  asks) with a different operator;
- missing_step: the model's final answer is a gold intermediate result;
- distraction: the model used a question number that the gold solution never uses;
- other: none of the above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from diagnostics.answers import Judgment, numbers_in, to_float


class FailureClass(StrEnum):
    none = "none"  # the answer is correct
    format = "format"
    degenerate = "degenerate"
    calculation_slip = "calculation_slip"
    misread_number = "misread_number"
    wrong_operation = "wrong_operation"
    missing_step = "missing_step"
    distraction = "distraction"
    other = "other"


@dataclass(frozen=True)
class Equation:
    """`left op right = result` as written in a text."""

    left: float
    op: str
    right: float
    result: float

    @property
    def true_result(self) -> float | None:
        try:
            return {
                "+": self.left + self.right,
                "-": self.left - self.right,
                "*": self.left * self.right,
                "x": self.left * self.right,
                "×": self.left * self.right,
                "/": self.left / self.right,
                "÷": self.left / self.right,
            }[self.op]
        except ZeroDivisionError:
            return None


@dataclass
class Classification:
    """A failure class and the evidence for it."""

    failure_class: FailureClass
    evidence: str
    equations: list[Equation] = field(default_factory=list)


_NUM = r"\$?-?\d[\d,]*(?:\.\d+)?"
_EXPRESSION = re.compile(rf"({_NUM})\s*([-+*/x×÷])\s*({_NUM})")
_EQUATION = re.compile(rf"{_EXPRESSION.pattern}\s*=\s*({_NUM})")
_ANNOTATION = re.compile(r"<<([^<>]*)>>")


def equations_in(text: str) -> list[Equation]:
    """Binary equations `a op b = c` in text (GSM8K `<<a*b=c>>` annotations included)."""
    out = []
    for m in _EQUATION.finditer(text.replace("<<", " ").replace(">>", " ")):
        left, right, result = (to_float(m.group(i)) for i in (1, 3, 4))
        if None not in (left, right, result):
            out.append(Equation(left, m.group(2), right, result))  # type: ignore[arg-type]
    return out


def asked_expression(question: str, expected: float | None) -> Equation | None:
    """The sum a question asks outright ("What is 37 + 45?"): its last expression `a op b` whose
    value is the expected answer, or None (worked examples before it have other values)."""
    if expected is None:
        return None
    for m in reversed(list(_EXPRESSION.finditer(question))):
        left, right = to_float(m.group(1)), to_float(m.group(3))
        if left is None or right is None:
            continue
        eq = Equation(left, m.group(2), right, expected)
        if eq.true_result is not None and _close(eq.true_result, expected):
            return eq
    return None


def gold_equations(reference: str) -> list[Equation]:
    """The steps of a GSM8K solution, from its `<<a op b=c>>` annotations (or its text if none)."""
    annotations = _ANNOTATION.findall(reference)
    if not annotations:
        return equations_in(reference)
    return [eq for content in annotations for eq in equations_in(content)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _member(value: float, pool: list[float]) -> bool:
    return any(_close(value, p) for p in pool)


def is_degenerate(output: str, n: int = 4) -> bool:
    """Empty, or a single n-gram of words makes up most of the text."""
    words = output.split()
    if len(words) < 3:
        return not output.strip()
    grams = [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))]
    most = max(grams.count(g) for g in set(grams))
    return len(words) >= 4 * n and most * n >= 0.5 * len(words)


def classify_failure(
    question: str, output: str, judgment: Judgment, reference: str | None = None
) -> Classification:
    """The most specific class that the text supports, checked in the order of the module doc."""
    if judgment.correct:
        return Classification(FailureClass.none, "the answer is correct")
    if is_degenerate(output):
        return Classification(FailureClass.degenerate, "empty or repetitive output")
    if judgment.extracted is None:
        return Classification(FailureClass.format, "no answer could be extracted")
    if judgment.expected_in_output:
        return Classification(
            FailureClass.format,
            f"the expected value {judgment.expected} is in the output, but the answer taken "
            f"from it is {judgment.extracted}",
        )
    eqs = equations_in(output)
    for eq in eqs:
        true = eq.true_result
        if true is not None and not _close(eq.result, true):
            return Classification(
                FailureClass.calculation_slip,
                f"wrote {eq.left:g} {eq.op} {eq.right:g} = {eq.result:g} (should be {true:g})",
                eqs,
            )
    final = to_float(judgment.extracted)
    asked = asked_expression(question, to_float(judgment.expected))
    if asked is not None and final is not None and not eqs:
        return _bare_answer_class(asked, final)
    q_numbers = numbers_in(question)
    seen = list(q_numbers)
    for eq in eqs:  # operands must come from the question or from the model's earlier results
        for operand in (eq.left, eq.right):
            if not _member(operand, seen) and not _is_small_constant(operand):
                return Classification(
                    FailureClass.misread_number,
                    f"used {operand:g}, which is neither in the question nor an earlier result",
                    eqs,
                )
        seen.append(eq.result)
    if reference:
        gold = gold_equations(reference)
        for eq in eqs:
            for g in gold:
                if {eq.left, eq.right} == {g.left, g.right} and _canon(eq.op) != _canon(g.op):
                    return Classification(
                        FailureClass.wrong_operation,
                        f"combined {eq.left:g} and {eq.right:g} with '{eq.op}'; the solution uses '{g.op}'",
                        eqs,
                    )
        intermediates = [g.result for g in gold[:-1]]
        if final is not None and _member(final, intermediates):
            return Classification(
                FailureClass.missing_step,
                f"answered {final:g}, an intermediate result of the solution",
                eqs,
            )
        gold_operands = [v for g in gold for v in (g.left, g.right, g.result)]
        for eq in eqs:
            for operand in (eq.left, eq.right):
                if _member(operand, q_numbers) and not _member(operand, gold_operands):
                    return Classification(
                        FailureClass.distraction,
                        f"used {operand:g} from the question, which the solution never uses",
                        eqs,
                    )
    return Classification(FailureClass.other, "no rule identified the error", eqs)


def _bare_answer_class(asked: Equation, final: float) -> Classification:
    """A wrong bare answer to a sum the question asks: another operator's value, else a slip."""
    a, b = asked.left, asked.right
    for op in "+-*/":
        other = Equation(a, op, b, final)
        true = other.true_result
        if op != _canon(asked.op) and true is not None and _close(final, true):
            return Classification(
                FailureClass.wrong_operation,
                f"answered {final:g} = {a:g} {op} {b:g}; the question asks {a:g} {asked.op} {b:g}",
                [other],
            )
    return Classification(
        FailureClass.calculation_slip,
        f"answered {a:g} {asked.op} {b:g} = {final:g} (should be {asked.result:g})",
        [Equation(a, asked.op, b, final)],
    )


def _canon(op: str) -> str:
    return {"x": "*", "×": "*", "÷": "/"}.get(op, op)


def _is_small_constant(value: float) -> bool:
    """Numbers a solution may bring in without reading them (halves, percent, units)."""
    return value in (0, 1, 2, 10, 100, 1000, 60, 12, 7, 24, 52, 365)
