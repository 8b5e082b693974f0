"""The first wrong step of a model's solution, and the smallest correction of it.

Each step and stated quantity of the model's output (`diagnostics.solution_steps`) is checked
in text order:
1. the arithmetic (a calculator over every '=' of a chain);
2. where its operands come from: the question, an earlier result, a gold value, or a small
   constant; a number from nowhere is misread (when it is near a question number) or invented;
3. what a sentence claims, against the question's wording (`diagnostics.claim_checks`);
4. against the gold steps when they are known (`diagnostics.gold_solution`, checked by
   `diagnostics.gold_path`): on the gold path, or a wrong operation, a misread number or an
   invented step.
The earliest step that fails a check is the first error, with how sure its location is
(`step_errors.Confidence`). When every step passes, the final answer is checked
(`diagnostics.answer_errors`): a gold intermediate is a missing step, anything else an
answer-only error. The correction (`diagnostics.corrections`) rewrites the fewest characters the
evidence supports, so a teacher-forced corrected path shares the model's text up to the first
wrong character.
"""

from __future__ import annotations

from diagnostics.answer_errors import check_answer
from diagnostics.claim_checks import check_prose, check_relation, check_statement
from diagnostics.corrections import (
    Correction,
    Edit,
    correct_value,
    render_corrected,
    replace_operand,
    replace_step,
)
from diagnostics.equation_parser import question_numbers
from diagnostics.equations import Number, Step, format_number, same_value, value_in
from diagnostics.gold_path import Derivations, check_against_gold, next_gold
from diagnostics.gold_solution import GoldSolution, GoldStep
from diagnostics.number_bindings import question_bindings
from diagnostics.solution_steps import Quantity, parse_solution
from diagnostics.step_errors import ErrorKind, FoundBy, StepError

SMALL_CONSTANTS = (1.0, 2.0, 10.0, 100.0)
"""Numbers a solution may bring in without reading them (halving, tens, percent)."""


def locate_first_error(
    question: str,
    output: str,
    expected: float | None,
    gold: GoldSolution,
    answer_span: tuple[int, int] | None,
) -> StepError | None:
    """The first wrong step of `output` (the model's answer to `question`), or None when the
    output has neither a checkable step nor an answer to point at. Only the text up to the end of
    the judged answer (`answer_span`) is its solution: a raw prompt's model often goes on to
    write new examples."""
    solution = parse_solution(output)
    worded = [  # 'four packs of strawberry gum': a number word states a quantity too
        Quantity(n, (n.start, n.end))
        for n in question_numbers(output)
        if n.word and n.value >= 3 and not _inside_step(n, solution.steps)
    ]
    q_values = [n.value for n in question_numbers(question)]
    bindings, names = question_bindings(question)
    known = [*q_values, *gold.values, *SMALL_CONSTANTS]
    if expected is not None:
        known.append(expected)
    derivable = [*q_values, *gold.values]  # what a stated result may be computed from
    done: list[GoldStep] = []
    paths = Derivations(gold)
    limit = answer_span[1] if answer_span is not None else len(output)
    events = sorted(
        [*solution.events(), *worded],
        key=lambda e: e.start if isinstance(e, Step) else e.number.start,
    )
    for event in events:  # what comes after the judged answer is not its solution
        if (event.start if isinstance(event, Step) else event.number.start) >= limit:
            break
        if not isinstance(event, Step):
            is_answer = answer_span is not None and event.number.start >= answer_span[0]
            found = (
                None
                if is_answer  # the answer itself is checked last (check_answer)
                else check_prose(
                    event,
                    output,
                    question,
                    bindings,
                    names,
                    derivable,
                    expected,
                    paths.steps(gold),
                    done,
                )  # fmt: skip
            ) or check_statement(event, output, bindings, names)
            if found is not None and not _corrects_nothing(found):
                return found
            known.append(event.number.value)  # a stated quantity is available afterwards
            derivable.append(event.number.value)
            continue
        step = event
        found = [
            e
            for e in (
                _check_provenance(step, output, known, q_values, gold),
                check_against_gold(step, output, gold, done, q_values, paths),
                _check_arithmetic(step, output),
                check_relation(step, output, bindings),
            )
            if e is not None and not _corrects_nothing(e)
        ]
        if found:  # what is wrong first in the step: its operands, its operator, its result
            return min(found, key=lambda e: e.correction.start if e.correction else e.span[0])
        results = [v for v in (s.value for s in step.sides) if v is not None]
        known.extend(results)
        derivable.extend(results)
    return check_answer(solution, output, expected, gold, answer_span)


def _inside_step(n: Number, steps: list[Step]) -> bool:
    return any(s.start <= n.start < s.end for s in steps)


def _corrects_nothing(e: StepError) -> bool:
    """A 'correction' that rewrites the step into itself is no error."""
    return bool(e.should_be) and " ".join(e.should_be.split()) == " ".join(e.step_text.split())


def correction_for(
    step_error: StepError | None,
    output: str,
    answer_span: tuple[int, int] | None,
    expected: str,
    warnings: list[str],
) -> Correction:
    """The first error's correction; without one, the expected answer in place of the model's
    (the answer-token fallback, which explains the copying of the answer, not the error)."""
    if step_error is not None and step_error.found_by == "fallback":
        warnings.append(
            "the output asserts nothing checkable before its answer: the divergence is the "
            "final answer token"
        )
    if step_error is not None and step_error.correction is not None:
        return step_error.correction
    if step_error is not None and step_error.found_by != "fallback":
        warnings.append(
            f"the first wrong step ('{step_error.step_text}') has no correction the evidence "
            "supports: the divergence is the final answer token"
        )
    if answer_span is not None:
        return Correction((Edit(*answer_span, expected.strip()),), answer_span[1])
    warnings.append(
        "no answer could be read from the output: the corrected path is the expected answer alone"
    )
    return Correction((Edit(0, len(output), expected.strip()),), len(output))


def _check_arithmetic(step: Step, output: str) -> StepError | None:
    """The first '=' of a chain whose two sides differ: a calculation slip."""
    for before, after in zip(step.sides, step.sides[1:], strict=False):
        true, written = before.value, after.value
        if true is None or written is None:
            return None
        text = after.number.text if after.op is None and after.number else None
        if same_value(written, true, text):
            continue
        correction = correct_value(after, before)
        should = render_corrected(step, output, correction)
        return StepError(
            kind=ErrorKind.calculation_slip,
            found_by=FoundBy.calculator,
            span=(step.start, step.end),
            step_text=step.text,
            should_be=should,
            evidence=f"{before.render()} is {format_number(true)}, not {format_number(written)}",
            correction=correction,
        )
    return None


def _check_provenance(
    step: Step, output: str, known: list[float], q_values: list[float], gold: GoldSolution
) -> StepError | None:
    """An operand that is neither in the question, nor an earlier result, nor gold, nor a small
    constant: misread when it is near a question number, else invented."""
    for leaf in step.expression.leaves():
        if leaf.word or value_in(leaf.written, known) or value_in(leaf.value, known):
            continue
        near = _near_number(leaf.value, q_values)
        if near is not None:
            correction = replace_operand(step, leaf, near, output)
            return StepError(
                kind=ErrorKind.misread_number,
                found_by=FoundBy.calculator,
                span=(step.start, step.end),
                step_text=step.text,
                should_be=render_corrected(step, output, correction),
                evidence=f"used {leaf.text}, which is not in the question; the question has "
                f"{format_number(near)}",
                correction=correction,
            )
        nxt = next_gold(gold, [])
        correction = replace_step(step, nxt, output) if nxt is not None else None
        return StepError(
            kind=ErrorKind.invented_step,
            found_by=FoundBy.calculator,
            span=(step.start, step.end),
            step_text=step.text,
            should_be=nxt.render() if nxt is not None else "",
            evidence=f"used {leaf.text}, which is neither in the question nor an earlier result",
            correction=correction,
            gold_source=gold.source if nxt is not None else None,
        )
    return None


def _near_number(value: float, pool: list[float]) -> float | None:
    """A question number the written one is a slip of the pen from: one digit changed, two
    adjacent digits swapped, or a factor of 10 off."""
    a = format_number(value)
    for p in pool:
        b = format_number(p)
        if a == b:
            continue
        if len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1 and len(a) > 1:
            return p
        if len(a) == len(b) and sorted(a) == sorted(b) and len(a) > 1:
            return p
        if p != 0 and value / p in (10, 0.1, 100, 0.01):
            return p
    return None
