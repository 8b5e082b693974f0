"""A model's step against the gold steps: on the gold path when it computes a gold value (in any
order: '12 * 7' for '7 * 12'); off it, a wrong operation (a gold step's operands with another
operator), a misread number (a gold step with one operand swapped), or an invented step. A
derived gold is a set of derivations, narrowed to those consistent with the steps before
(`Derivations`)."""

from __future__ import annotations

from dataclasses import replace

from diagnostics.corrections import render_corrected, replace_step, rewrite_to_gold
from diagnostics.equations import Expr, Step, format_number, value_in, values_equal
from diagnostics.gold_solution import GoldSolution, GoldStep, steps_of_tree
from diagnostics.step_errors import CHECKED_SOURCES, Confidence, ErrorKind, FoundBy, StepError


class Derivations:
    """The derivations of a derived gold still consistent with the model's steps so far: a step
    that computes a value of some of them keeps only those (a set, not a path)."""

    def __init__(self, gold: GoldSolution) -> None:
        self.derived = gold.source == "derived" and bool(gold.trees)
        self.trees = list(gold.trees) if self.derived else []

    def on_path(self, value: float) -> bool:
        """Does a consistent derivation compute `value`? Keeps those that do."""
        hits = [t for t in self.trees if any(values_equal(value, v) for v in _tree_values(t))]
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


def check_against_gold(
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
            done.extend(g for g in gold.steps if values_equal(value, g.value))
            return None
        if step.expression.op is None or (value_in(value, q_values) and value_in(value, operands)):
            return None  # restates a number of the question
        n = len(paths.trees)
        gold = GoldSolution(steps_of_tree(paths.trees[0]), gold.source, 1, paths.trees[:1])
        done = [g for g in gold.steps if any(values_equal(g.value, d.value) for d in done)]
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
        if values_equal(value, g.value):
            done.append(g)
            return None  # computes a gold value: on the path, in whatever order
    if value_in(value, q_values):
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
            shared = [v for v in operands if value_in(v, g.operands)]
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
    nxt = next_gold(gold, done)
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


def next_gold(gold: GoldSolution, done: list[GoldStep]) -> GoldStep | None:
    """The first gold step not done yet."""
    for g in gold.steps:
        if g not in done:
            return g
    return None


def _same_multiset(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
