"""The first wrong step of a model's solution, and the smallest correction of it.

Each step of the model's output (`diagnostics.solution_steps`) is checked in text order:
1. the arithmetic (a calculator over every '=' of a chain);
2. where its operands come from: the question, an earlier result, a gold value, or a small
   constant; a number from nowhere is misread (when it is near a question number) or invented;
3. against the gold steps when they are known (`diagnostics.gold_solution`): a step is on the
   gold path when it computes a gold value (in any order: '12 * 7' for '7 * 12'); off it, it is a
   wrong operation (a gold step's operands with another operator), a misread number (a gold
   step with one operand swapped), or an invented step.
The earliest step that fails a check is the first error. When every step passes, the final
answer is checked: a gold intermediate is a missing step, anything else an answer-only error.
The correction rewrites the fewest characters the evidence supports (the result digits of a
slip; the operator and result of a wrong operation; the operand and result of a misread), so a
teacher-forced corrected path shares the model's text up to the first wrong character.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum

from diagnostics.gold_solution import GoldSolution, GoldStep, steps_of_tree
from diagnostics.number_bindings import Binding, check_clause, clause_around, question_bindings
from diagnostics.prose_claims import check_claim, relation_op
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


class ErrorKind(StrEnum):
    calculation_slip = "calculation_slip"
    wrong_operation = "wrong_operation"
    misread_number = "misread_number"
    invented_step = "invented_step"
    missing_step = "missing_step"
    answer_only = "answer_only"


class FoundBy(StrEnum):
    calculator = "calculator"  # arithmetic or operand provenance, no gold needed
    gold_step = "gold_step"  # against gold steps (annotations, reference, question, derived)
    question_binding = "question_binding"  # a question number restated for the wrong thing
    fallback = "fallback"  # nothing could be checked: the final answer is all there is


class Confidence(StrEnum):
    """How sure the location is."""

    checked = "checked"  # the calculator, GSM8K annotations, a reference, or the question's sum
    derived = "derived"  # one derivation consistent with the steps before it says so
    uncertain = "uncertain"  # derivations disagree, a prose-only check, or nothing checkable


CHECKED_SOURCES = ("annotations", "reference", "question")
"""Gold sources that are given, not searched for."""


_LIST_MARKER = re.compile(r"\d{1,2}[.)]\s")

SMALL_CONSTANTS = (1.0, 2.0, 10.0, 100.0)
"""Numbers a solution may bring in without reading them (halving, tens, percent)."""


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


@dataclass(frozen=True)
class StepError:
    """Where the model's solution first goes wrong, and what it should have written."""

    kind: ErrorKind
    found_by: FoundBy
    span: tuple[int, int]  # [start, end) characters of the wrong step in the output
    step_text: str
    should_be: str  # the corrected step, e.g. "48 / 2 = 24" ("" when unknown)
    evidence: str  # one sentence: why this step is wrong
    correction: Correction | None  # None: the evidence supports no specific correction
    gold_source: str | None = None  # where the gold step came from (annotations, derived, ...)
    confidence: Confidence = Confidence.checked  # how sure the location is


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
                else _check_prose(
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
            ) or _check_statement(event, output, bindings, names)
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
                _check_relation(step, output, bindings),
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


def _check_statement(
    quantity: Quantity, output: str, bindings: list[Binding], names: frozenset[str]
) -> StepError | None:
    """A stated number that the question binds to something else (number_bindings)."""
    clause = clause_around(output, quantity.number.start)
    wrong = check_clause(output, clause, quantity.number, bindings, names)
    if wrong is None:
        return None
    n = wrong.number
    at = wrong.wrong if wrong.wrong is not None else (n.start, n.end)
    correction = Correction((Edit(at[0], at[1], wrong.replacement),), clause[1])
    return StepError(
        kind=ErrorKind.misread_number,
        found_by=FoundBy.question_binding,
        span=clause,
        step_text=output[clause[0] : clause[1]],
        should_be=correction.apply(output)[clause[0] :].strip(),
        evidence=wrong.evidence,
        correction=correction,
        confidence=Confidence.uncertain,
    )


def _check_prose(
    quantity: Quantity,
    output: str,
    question: str,
    bindings: list[Binding],
    names: frozenset[str],
    known: list[float],
    expected: float | None,
    gold_steps: list[GoldStep],
    done: list[GoldStep],
) -> StepError | None:
    """A stated quantity the question does not support (`prose_claims`): invented, or a
    question number restated for another relation or thing. A prose-only check: uncertain.
    Without a supported replacement the corrected path follows a gold step (a hypothesis):
    for a misread, the gold value computed from the number; else the next gold value not yet
    reached."""
    n = quantity.number
    line_start = output.rfind("\n", 0, n.start) + 1
    if not output[line_start : n.start].strip() and _LIST_MARKER.match(output, n.start):
        return None  # '2. Jaymee is ...': an enumeration, not a quantity
    clause = clause_around(output, n.start)
    wrong = check_claim(output, n, clause, question, bindings, names, known, expected)
    if wrong is None:
        return None
    replacement = wrong.replacement
    if replacement is None:
        hypothesis = _hypothesis(n.value, wrong.kind == "invented", gold_steps, done)
        replacement = _styled(hypothesis, n) if hypothesis is not None else None
    correction = None
    if replacement is not None:
        correction = Correction((Edit(n.start, n.end, replacement),), clause[1])
    return StepError(
        kind=ErrorKind.invented_step if wrong.kind == "invented" else ErrorKind.misread_number,
        found_by=FoundBy.question_binding,
        span=clause,
        step_text=output[clause[0] : clause[1]],
        should_be=correction.apply(output)[clause[0] :].strip()
        if correction and wrong.replacement is not None
        else "",
        evidence=wrong.evidence,
        correction=correction,
        confidence=Confidence.uncertain,
    )


def _check_relation(step: Step, output: str, bindings: list[Binding]) -> StepError | None:
    """An operand the question relates additively ('2 fewer sofas than chairs') used as a
    factor, or one it relates multiplicatively ('3 times as many') added or subtracted: a
    wrong operation by the question's wording (a prose reading, so uncertain)."""
    for node in step.expression.ops():
        for leaf in (node.left, node.right):
            if leaf is None or leaf.op is not None or leaf.number is None or leaf.number.word:
                continue
            relation = relation_op(leaf.number, bindings)
            if relation is None:
                continue
            op, clause = relation
            additive_misused = op in "+-" and node.op in "*/"
            factor_misused = op == "*" and node.op in "+-"
            if not (additive_misused or factor_misused) or node.op_span is None:
                continue
            edit = Edit(
                node.op_span[0], node.op_span[1], _op_like(op, output[slice(*node.op_span)])
            )
            correction = Correction((edit,), node.op_span[1])
            return StepError(
                kind=ErrorKind.wrong_operation,
                found_by=FoundBy.question_binding,
                span=(step.start, step.end),
                step_text=step.text,
                should_be="",
                evidence=f"the question relates {leaf.number.text} by '{clause.strip()}', which "
                f"is {_OP_NAMES[op]}, but the step uses it with '{node.op}'",
                correction=correction,
                confidence=Confidence.uncertain,
            )
    return None


_OP_NAMES = {"+": "an addition", "-": "a subtraction", "*": "a multiplication"}


def _hypothesis(
    value: float, invented: bool, gold_steps: list[GoldStep], done: list[GoldStep]
) -> float | None:
    """A gold value a wrongly stated number may stand for (see _check_prose)."""
    if not invented:
        for g in gold_steps:
            if _member(value, g.operands) and not _close(g.value, value):
                return g.value
    done_values = [d.value for d in done]
    return next((g.value for g in gold_steps if not _member(g.value, done_values)), None)


def _check_arithmetic(step: Step, output: str) -> StepError | None:
    """The first '=' of a chain whose two sides differ: a calculation slip."""
    for before, after in zip(step.sides, step.sides[1:], strict=False):
        true, written = before.value, after.value
        if true is None or written is None:
            return None
        text = after.number.text if after.op is None and after.number else None
        if same_value(written, true, text):
            continue
        correction = _correct_value(after, before)
        should = _render_corrected(step, output, correction)
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


def _correct_value(after: Expr, before: Expr) -> Correction | None:
    """Rewrite the side `after` so that it equals `before`: its one differing number.

    A side that is a number gets the right value. A side that partly evaluates the one before it
    ('20 - 4 * 2 = 20 - 4') is aligned with it node by node, and the number that stands for a
    sub-expression of the wrong value is rewritten ('4' -> '8')."""
    target = _misaligned_leaf(before, after)
    if target is None:
        return None
    leaf, value = target
    edit = Edit(leaf.start, leaf.end, _styled(value, leaf.number))
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


def _styled(value: float, like: Number | None) -> str:
    """A value written like the number it replaces (thousands separators kept)."""
    text = format_number(value)
    if like is not None and "," in like.text and "." not in text:
        text = f"{int(round(value)):,}"
    return text


def _render_corrected(step: Step, output: str, correction: Correction | None) -> str:
    if correction is None:
        return ""
    return correction.apply(output)[step.start :].strip()


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
            correction = _replace_operand(step, leaf, near, output)
            return StepError(
                kind=ErrorKind.misread_number,
                found_by=FoundBy.calculator,
                span=(step.start, step.end),
                step_text=step.text,
                should_be=_render_corrected(step, output, correction),
                evidence=f"used {leaf.text}, which is not in the question; the question has "
                f"{format_number(near)}",
                correction=correction,
            )
        nxt = _next_gold(gold, [])
        correction = _replace_step(step, nxt, output) if nxt is not None else None
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
    correction = _replace_step(step, g, output) if whole else _rewrite_to_gold(step, g, output)
    return StepError(
        kind=kind,
        found_by=FoundBy.gold_step,
        span=(step.start, step.end),
        step_text=step.text,
        should_be=_render_corrected(step, output, correction) if correction else g.render(),
        evidence=evidence,
        correction=correction,
        gold_source=gold.source,
        confidence=Confidence.checked if gold.source in CHECKED_SOURCES else Confidence.derived,
    )


def _rewrite_to_gold(step: Step, g: GoldStep, output: str) -> Correction:
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
            edits.append(Edit(e.left.start, e.left.end, _styled(gl, e.left.number)))  # type: ignore[union-attr, arg-type]
        if e.op != ge.op and e.op_span is not None:
            edits.append(
                Edit(e.op_span[0], e.op_span[1], _op_like(ge.op, output[slice(*e.op_span)]))
            )
        if not _close(mr, gr):  # type: ignore[arg-type]
            edits.append(Edit(e.right.start, e.right.end, _styled(gr, e.right.number)))  # type: ignore[union-attr, arg-type]
    else:
        edits.append(Edit(e.start, e.end, ge.render()))
    edits.sort(key=lambda x: x.start)
    if len(step.sides) < 2:  # an operation written without its result
        return Correction(tuple(edits), e.end)
    result = step.sides[1]
    edits.append(Edit(result.start, result.end, _styled(g.value, result.number)))
    return Correction(tuple(edits), result.end)


def _op_like(op: str, written: str) -> str:
    """The gold operator in the model's notation (a word for a word, a symbol for a symbol)."""
    if written.strip().isalpha() and written.strip().lower() not in ("x",):
        return {"+": "plus", "-": "minus", "*": "times", "/": "divided"}[op]
    return op


def _replace_step(step: Step, g: GoldStep, output: str) -> Correction:
    return Correction((Edit(step.start, step.end, g.render()),), step.end)


def _replace_operand(step: Step, leaf: Number, value: float, output: str) -> Correction:
    edits = [Edit(leaf.start, leaf.end, _styled(value, leaf))]
    new_value = _value_with(step.expression, leaf, value)
    if len(step.sides) < 2:
        return Correction(tuple(edits), step.end)
    result = step.sides[1]
    if new_value is not None and result.op is None and result.start > leaf.end:
        edits.append(Edit(result.start, result.end, _styled(new_value, result.number)))
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
