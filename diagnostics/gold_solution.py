"""Gold steps: what a correct solution computes, to check a model's steps against.

Sources, most trusted first:
- a reference solution's GSM8K calculator annotations `<<48/2=24>>` (or its written equations);
- an expression the question asks outright ("What is 57 + 68?", "(76 - 25)");
- derived: the arithmetic over the question's numbers (numerals, number words, 'half', 'twice',
  unit constants it implies) that reaches the expected answer, each number paying for its
  operation (`diagnostics.gold_search`). A derivation is a hypothesis, not a reference: every
  equally good one is kept (at most `gold_search.MAX_DERIVATIONS`), and `gold_path` checks a step
  against those still consistent with the steps before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from diagnostics.answers import to_float
from diagnostics.equations import Expr, Step, format_number, operations
from diagnostics.gold_search import search_derivations
from diagnostics.prompts import last_question
from diagnostics.solution_steps import parse_solution


@dataclass(frozen=True)
class GoldStep:
    """One operation of a correct solution: `left op right = value` (a tree for compound ones)."""

    expression: Expr
    value: float

    @property
    def operands(self) -> list[float]:
        return [n.value for n in self.expression.leaves()]

    def render(self) -> str:
        return f"{self.expression.render()} = {format_number(self.value)}"


@dataclass
class GoldSolution:
    """The gold steps of a problem, in solution order, and where they came from."""

    steps: list[GoldStep] = field(default_factory=list)
    source: str = "none"  # annotations | reference | question | derived | none
    alternatives: int = 1  # how many equally good derivations were merged (derived only)
    trees: list[Expr] = field(default_factory=list)  # whole derivations (derived only)

    @property
    def values(self) -> list[float]:
        return [s.value for s in self.steps]

    @property
    def expressions(self) -> list[GoldStep]:
        """Every sub-expression of the gold steps over the problem's own numbers (a compound
        step '14 + 4 - 8' and its part '14 + 4'), to match a model's compound step by its
        operands."""
        roots = self.trees or [s.expression for s in self.steps]
        out: list[GoldStep] = []
        for root in roots:
            for node in _subtrees(root):
                value = node.value
                if value is not None and not any(_same_step(GoldStep(node, value), g) for g in out):
                    out.append(GoldStep(node, value))
        return out

    def __bool__(self) -> bool:
        return bool(self.steps)


def gold_from_reference(reference: str) -> GoldSolution:
    """Gold steps of a worked reference: its calculator annotations, else its equations."""
    parsed = parse_solution(reference)
    annotated = [s for s in parsed.steps if s.annotation]
    steps, source = (annotated, "annotations") if annotated else (parsed.steps, "reference")
    return GoldSolution([_gold(s) for s in steps if _gold(s) is not None], source)  # type: ignore[misc]


def _gold(step: Step) -> GoldStep | None:
    value = step.expression.value
    return GoldStep(step.expression, value) if value is not None else None


_ASKED = re.compile(r"[\d(][\d\s.,+\-*/x×÷()$%]*[+\-*/x×÷][\d\s.,+\-*/x×÷()$%]*[\d)]")


def gold_from_question(question: str, expected: float) -> GoldSolution:
    """The expression a question asks outright whose value is the expected answer (its last
    one: worked examples before it have other values)."""
    for m in reversed(list(_ASKED.finditer(question))):
        solution = parse_solution(f"{m.group(0)} = {format_number(expected)}")
        for step in solution.steps:
            value = step.expression.value
            if value is not None and abs(value - expected) <= 1e-6 * max(1.0, abs(expected)):
                return GoldSolution([GoldStep(step.expression, value)], "question")
    return GoldSolution()


def gold_for(prompt: str, expected: str, reference: str | None) -> GoldSolution:
    """The gold steps: the reference's, else an expression the question asks, else derived."""
    if reference:
        gold = gold_from_reference(reference)
        if gold:
            return gold
    value = to_float(expected)
    if value is None:
        return GoldSolution()
    question = last_question(prompt)
    return gold_from_question(question, value) or derive_gold(question, value)


def derive_gold(question: str, expected: float, *, max_leaves: int = 6) -> GoldSolution:
    """The simplest arithmetic over the question's numbers that reaches `expected`: every
    derivation as good as the best (`gold_search`), their steps the gold."""
    found = search_derivations(question, expected, max_leaves)
    if not found:
        return GoldSolution()
    steps: list[GoldStep] = []
    for tree in found:
        for step in steps_of_tree(tree):
            if not any(_same_step(step, s) for s in steps):
                steps.append(step)
    return GoldSolution(steps, "derived", alternatives=len(found), trees=found)


def _same_step(a: GoldStep, b: GoldStep) -> bool:
    return sorted(a.operands) == sorted(b.operands) and abs(a.value - b.value) < 1e-9


def _subtrees(tree: Expr) -> list[Expr]:
    if tree.op is None:
        return []
    return [*_subtrees(tree.left), *_subtrees(tree.right), tree]  # type: ignore[arg-type]


def steps_of_tree(tree: Expr) -> list[GoldStep]:
    """Every operator node of a tree, innermost first, as a binary gold step."""
    return [GoldStep(e, v) for e, v in operations(tree)]
