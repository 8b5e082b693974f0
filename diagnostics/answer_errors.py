"""The final answer of a solution whose every step passes: a gold intermediate is a missing
step, anything else an answer-only error; with no checkable step, a bare answer to the
expression the question asks is a wrong operation or a calculation slip."""

from __future__ import annotations

from diagnostics.corrections import Correction, Edit
from diagnostics.equations import apply_op, format_number, values_equal
from diagnostics.gold_solution import GoldSolution, GoldStep
from diagnostics.solution_steps import Solution
from diagnostics.step_errors import CHECKED_SOURCES, Confidence, ErrorKind, FoundBy, StepError


def check_answer(
    solution: Solution,
    output: str,
    expected: float | None,
    gold: GoldSolution,
    answer_span: tuple[int, int] | None,
) -> StepError | None:
    """No step is wrong: the final answer is a gold intermediate (a missing step), or does not
    follow (answer only). Without any checkable step this is the fallback."""
    if answer_span is None:
        return None
    start, end = _line_around(output, answer_span)
    written = output[answer_span[0] : answer_span[1]]
    edit = Edit(
        answer_span[0], answer_span[1], format_number(expected) if expected is not None else ""
    )
    correction = Correction((edit,), answer_span[1]) if expected is not None else None
    value = _to_float(written)
    checked = bool(solution.steps)
    if not checked and gold.source == "question" and value is not None:
        return _bare_answer(gold.steps[0], value, (start, end), output, correction)
    intermediates = gold.values[:-1]
    if value is not None and gold and any(values_equal(value, v) for v in intermediates):
        return StepError(
            kind=ErrorKind.missing_step,
            found_by=FoundBy.gold_step,
            span=(start, end),
            step_text=output[start:end],
            should_be=format_number(expected) if expected is not None else "",
            evidence=f"answered {written}, an intermediate result of the solution",
            correction=correction,
            gold_source=gold.source,
            confidence=Confidence.checked
            if gold.source in CHECKED_SOURCES
            else Confidence.uncertain,
        )
    return StepError(
        kind=ErrorKind.answer_only,
        found_by=FoundBy.calculator if checked else FoundBy.fallback,
        span=(start, end),
        step_text=output[start:end],
        should_be=format_number(expected) if expected is not None else "",
        evidence=(
            f"every step checks out, but the answer {written} does not follow"
            if checked
            else "no step could be checked; the final answer is all there is"
        ),
        correction=correction,
        # the answer alone (nothing stated before it) is certainly where it went wrong
        confidence=Confidence.checked
        if checked or not any(n.start < answer_span[0] for n in solution.numbers)
        else Confidence.uncertain,
    )


def _bare_answer(
    asked: GoldStep,
    value: float,
    span: tuple[int, int],
    output: str,
    correction: Correction | None,
) -> StepError:
    """A bare answer to the expression the question asks: another operator's value is a wrong
    operation, any other wrong value a calculation slip."""
    e = asked.expression
    kind, evidence = (
        ErrorKind.calculation_slip,
        (
            f"answered {e.render()} = {format_number(value)} (should be {format_number(asked.value)})"
        ),
    )
    if e.op is not None and e.left.op is None and e.right.op is None:  # type: ignore[union-attr]
        a, b = e.left.value, e.right.value  # type: ignore[union-attr]
        for op in "+-*/":
            other = apply_op(op, a, b) if op != e.op else None  # type: ignore[arg-type]
            if other is not None and values_equal(other, value):
                kind = ErrorKind.wrong_operation
                evidence = (
                    f"answered {format_number(value)} = {format_number(a)} {op} "  # type: ignore[arg-type]
                    f"{format_number(b)}; the question asks {e.render()}"  # type: ignore[arg-type]
                )
                break
    return StepError(
        kind=kind,
        found_by=FoundBy.gold_step,
        span=span,
        step_text=output[span[0] : span[1]],
        should_be=format_number(asked.value),
        evidence=evidence,
        correction=correction,
        gold_source="question",
    )


def _line_around(text: str, span: tuple[int, int]) -> tuple[int, int]:
    start = text.rfind("\n", 0, span[0]) + 1
    end = text.find("\n", span[1])
    end = len(text) if end < 0 else end
    return start, end


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").rstrip("."))
    except ValueError:
        return None
