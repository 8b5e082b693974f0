"""The first wrong step of a model's solution, and the smallest correction of it.

Each step and stated quantity of the model's output (`diagnostics.solution_steps`) is checked
in text order:
1. the arithmetic (a calculator over every '=' of a chain);
2. where its operands come from: the question, an earlier result, a gold value, or a small
   constant; a number from nowhere is misread (when it is near a question number) or invented;
3. what a sentence claims, against the question's wording (`diagnostics.claim_checks`);
4. against the gold steps when they are known (`diagnostics.gold_solution`): a step is on the
   gold path when it computes a gold value (in any order: '12 * 7' for '7 * 12'); a derived gold
   is a set of derivations, narrowed to those consistent with the steps before (`Derivations`);
   off it, a step is a wrong operation (a gold step's operands with another operator), a
   misread number (a gold step with one operand swapped), or an invented step.
The earliest step that fails a check is the first error, with how sure its location is
(`step_errors.Confidence`). When every step passes, the final answer is checked: a gold
intermediate is a missing step, anything else an answer-only error. The correction
(`diagnostics.corrections`) rewrites the fewest characters the evidence supports, so a
teacher-forced corrected path shares the model's text up to the first wrong character.
"""

from __future__ import annotations

import math
from dataclasses import replace

from diagnostics.claim_checks import check_prose, check_relation, check_statement
from diagnostics.corrections import (
    Correction,
    Edit,
    correct_value,
    render_corrected,
    replace_operand,
    replace_step,
    rewrite_to_gold,
)
from diagnostics.gold_solution import GoldSolution, GoldStep, steps_of_tree
from diagnostics.number_bindings import question_bindings
from diagnostics.solution_steps import (
    Expr,
    Number,
    Quantity,
    Solution,
    Step,
    apply_op,
    format_number,
    parse_solution,
    question_numbers,
    same_value,
)
from diagnostics.step_errors import (
    CHECKED_SOURCES,
    Confidence,
    ErrorKind,
    FoundBy,
    StepError,
)

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
                if is_answer  # the answer itself is checked last (_check_answer)
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
                _check_against_gold(step, output, gold, done, q_values, paths),
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
    return _check_answer(solution, output, expected, gold, answer_span)


class Derivations:
    """The derivations of a derived gold still consistent with the model's steps so far: a step
    that computes a value of some of them keeps only those (a set, not a path)."""

    def __init__(self, gold: GoldSolution) -> None:
        self.derived = gold.source == "derived" and bool(gold.trees)
        self.trees = list(gold.trees) if self.derived else []

    def on_path(self, value: float) -> bool:
        """Does a consistent derivation compute `value`? Keeps those that do."""
        hits = [t for t in self.trees if any(_close(value, v) for v in _tree_values(t))]
        if hits:
            self.trees = hits
        return bool(hits)

    def confidence(self) -> Confidence:
        return Confidence.derived if len(self.trees) == 1 else Confidence.uncertain

    def steps(self, gold: GoldSolution) -> list[GoldStep]:
        """The gold steps a hypothesis may follow: the first consistent derivation's, else the
        given gold's."""
        return steps_of_tree(self.trees[0]) if self.derived else list(gold.steps)


def _tree_values(tree: Expr) -> list[float]:
    return [v for node in tree.ops() if (v := node.value) is not None]


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
        if leaf.word or _member(leaf.written, known) or _member(leaf.value, known):
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
        nxt = _next_gold(gold, [])
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


def _check_against_gold(
    step: Step,
    output: str,
    gold: GoldSolution,
    done: list[GoldStep],
    q_values: list[float],
    paths: Derivations,
) -> StepError | None:
    """Off the gold path: a wrong operation, a misread operand, or an invented step. A derived
    gold is a set of derivations: a step is off it only when no derivation consistent with the
    steps before computes its value; when the consistent ones disagree on what comes next, the
    step is located as uncertain, with no 'should be', and the corrected path follows the first
    of them (a hypothesis, so that attribution happens at the step and not at the answer)."""
    if not gold:
        return None
    value = step.expression.value
    if value is None:
        return None
    operands = sorted(n.value for n in step.expression.leaves())
    if paths.derived:
        if paths.on_path(value):
            done.extend(g for g in gold.steps if _close(value, g.value))
            return None
        if step.expression.op is None or (_member(value, q_values) and _member(value, operands)):
            return None  # restates a number of the question
        n = len(paths.trees)
        gold = GoldSolution(steps_of_tree(paths.trees[0]), gold.source, 1, paths.trees[:1])
        done = [g for g in gold.steps if any(_close(g.value, d.value) for d in done)]
        found = _off_path(step, output, gold, done, operands, value)
        if found is None or paths.confidence() is Confidence.derived:
            return found
        return replace(  # located; which correction is right the derivations do not agree
            found,
            should_be="",
            evidence=f"{step.expression.render()} = {format_number(value)} is a step of none of "
            f"the {n} derivations that reach the answer and agree with the steps before it; "
            "they disagree on what comes next (the corrected path follows the first)",
            confidence=Confidence.uncertain,
        )
    for g in gold.steps:
        if _close(value, g.value):
            done.append(g)
            return None  # computes a gold value: on the path, in whatever order
    if _member(value, q_values):
        return None  # restates a number of the question
    return _off_path(step, output, gold, done, operands, value)


def _off_path(
    step: Step,
    output: str,
    gold: GoldSolution,
    done: list[GoldStep],
    operands: list[float],
    value: float,
) -> StepError | None:
    """A step computing no gold value: which gold step it stands for, and how it is wrong."""
    for g in [*gold.steps, *gold.expressions]:
        if _same_multiset(operands, sorted(g.operands)):
            return _gold_error(
                ErrorKind.wrong_operation,
                step,
                g,
                gold,
                output,
                f"combined {', '.join(format_number(v) for v in operands)} as "
                f"{step.expression.render()}; the solution computes {g.expression.render()}",
            )
    if step.expression.op is not None and len(operands) == 2:
        for g in gold.steps:
            if g.expression.op != step.expression.op or len(g.operands) != 2:
                continue
            shared = [v for v in operands if _member(v, g.operands)]
            if len(shared) == 1:
                return _gold_error(
                    ErrorKind.misread_number,
                    step,
                    g,
                    gold,
                    output,
                    f"computed {step.expression.render()}; the solution computes "
                    f"{g.expression.render()}",
                )
    nxt = _next_gold(gold, done)
    if nxt is None:
        return None
    return _gold_error(
        ErrorKind.invented_step,
        step,
        nxt,
        gold,
        output,
        f"{step.expression.render()} = {format_number(value)} is no step of the solution "
        f"(its values: {', '.join(format_number(v) for v in gold.values)})",
        whole=True,
    )


def _gold_error(
    kind: ErrorKind,
    step: Step,
    g: GoldStep,
    gold: GoldSolution,
    output: str,
    evidence: str,
    *,
    whole: bool = False,
) -> StepError:
    correction = replace_step(step, g, output) if whole else rewrite_to_gold(step, g, output)
    return StepError(
        kind=kind,
        found_by=FoundBy.gold_step,
        span=(step.start, step.end),
        step_text=step.text,
        should_be=render_corrected(step, output, correction) if correction else g.render(),
        evidence=evidence,
        correction=correction,
        gold_source=gold.source,
        confidence=Confidence.checked if gold.source in CHECKED_SOURCES else Confidence.derived,
    )


def _next_gold(gold: GoldSolution, done: list[GoldStep]) -> GoldStep | None:
    for g in gold.steps:
        if g not in done:
            return g
    return None


def _check_answer(
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
    if value is not None and gold and any(_close(value, v) for v in intermediates):
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
            if other is not None and _close(other, value):
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


def _member(value: float, pool: list[float]) -> bool:
    return any(_close(value, p) for p in pool)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _same_multiset(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
