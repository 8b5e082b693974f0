"""Checks of what a solution's sentences claim, against the question's wording: a stated
number the question binds to something else (`number_bindings`), a stated quantity the question
does not support (`prose_claims`), and an operand used against the relation the question gives
it. All are readings of prose: their locations are `uncertain`."""

from __future__ import annotations

import math
import re

from diagnostics.corrections import Correction, Edit, op_like, styled
from diagnostics.equations import Step
from diagnostics.gold_solution import GoldStep
from diagnostics.number_bindings import Binding, check_clause, clause_around
from diagnostics.prose_claims import check_claim, relation_op
from diagnostics.solution_steps import Quantity
from diagnostics.step_errors import Confidence, ErrorKind, FoundBy, StepError

_LIST_MARKER = re.compile(r"\d{1,2}[.)]\s")


def check_statement(
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


def check_prose(
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
        replacement = styled(hypothesis, n) if hypothesis is not None else None
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


def check_relation(step: Step, output: str, bindings: list[Binding]) -> StepError | None:
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
            edit = Edit(node.op_span[0], node.op_span[1], op_like(op, output[slice(*node.op_span)]))
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


_OP_NAMES = {"+": "an addition or subtraction", "-": "an addition or subtraction",
             "*": "a multiplication"}  # fmt: skip
"""Which way a difference goes depends on which side is known: the wording fixes only the
kind of operation, so the corrected operator is a hypothesis (the location is uncertain)."""


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


def _member(value: float, pool: list[float]) -> bool:
    return any(_close(value, p) for p in pool)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
