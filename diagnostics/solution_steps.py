"""The steps of a worked solution: its equations and the quantities it states, with spans.

`parse_solution(text)` reads the notations models and GSM8K write: `48 / 2 = 24`, `48/2=24`,
`2 x 4`, `×`, `÷`, `$1,200`, `20%`, units and words between numbers (`49 (regular soda) + 40
(diet soda) = 89`, `$10/family * 3 families = $30`, `5 hours * $10 per hour`), chains
(`20 - 4 * 2 = 20 - 8 = 12`), parentheses, and worded operations ("half of 48 is 24", "48 divided
by 2 is 24", "twice 48", "3 times 5 equals 15", "20% of 400"). Every number keeps the character
span of its digits, so a checker can say where a step is wrong and a correction can rewrite
exactly those characters. GSM8K calculator annotations `<<48/2=24>>` are parsed as steps too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from diagnostics.equation_parser import (
    expression_runs,
    parse_prefix,
    steps_in_run,
    tokenize,
    written_number,
)
from diagnostics.equations import Expr, Number, Step


@dataclass(frozen=True)
class Quantity:
    """A number stated outside any equation ('She sold 24 clips in May.')."""

    number: Number
    sentence: tuple[int, int]  # the span of the sentence it is stated in


@dataclass
class Solution:
    """A text's steps and stated quantities, each in text order."""

    text: str
    steps: list[Step] = field(default_factory=list)
    quantities: list[Quantity] = field(default_factory=list)
    numbers: list[Number] = field(default_factory=list)  # every number, in order

    def events(self) -> list[Step | Quantity]:
        """Steps and quantities merged in text order."""
        items: list[Step | Quantity] = [*self.steps, *self.quantities]
        return sorted(items, key=lambda e: e.start if isinstance(e, Step) else e.number.start)


_NUM_TEXT = r"\$?\d[\d,]*(?:\.\d+)?%?"
_GERUND = re.compile(
    rf"\b(?P<verb>multiplying|dividing|adding|subtracting)\s+"
    rf"(?P<a_words>(?:[A-Za-z$'-]+\s+){{0,4}}?)(?P<a>{_NUM_TEXT})(?:[- ][A-Za-z-]+){{0,3}}?"
    rf"\s+(?P<prep>by|and|to|from)\s+(?P<b>{_NUM_TEXT}(?:\s*/\s*\d+)?)"
    rf"(?:\s*,?\s*(?:which|this|that|we)?\s*(?:gives|get|equals|is|results in|yields)(?:\s+us)?"
    rf"\s*|\s*=\s*)?(?P<r>{_NUM_TEXT})?",
    re.IGNORECASE,
)
"""Operations written with a gerund: 'dividing 4000 by 3/4', 'multiplying the 8-pound weight by
2, which gives us 4', 'subtracting 3 from 10' (10 - 3)."""
_GERUND_OPS = {"multiplying": "*", "dividing": "/", "adding": "+", "subtracting": "-"}

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def parse_solution(text: str) -> Solution:
    """Every equation (and calculator annotation) and every stated quantity in `text`."""
    steps: list[Step] = []
    masked = text
    for m in _ANNOTATION.finditer(text):
        inner_start = m.start(1)
        inner = _parse_at(text, inner_start, m.end(1))
        steps.extend(
            Step(s.sides, s.start, s.end, s.text, annotation=True) for s in inner
        )  # fmt: skip
        masked = masked[: m.start()] + " " * (m.end() - m.start()) + masked[m.end() :]
    tokens = tokenize(masked)
    for run in expression_runs(tokens, masked):
        steps.extend(steps_in_run(run, text))
    for step in _gerund_steps(masked):
        if not any(s.start < step.end and step.start < s.end for s in steps):
            steps.append(step)
    steps.sort(key=lambda s: s.start)
    numbers = [written_number(t, masked) for t in tokens if t.kind == "num"]
    in_steps = {
        (n.start, n.end) for s in steps if not s.annotation for e in s.sides for n in e.leaves()
    }
    sentences = sentence_spans(text)
    quantities = [
        Quantity(n, next((s for s in sentences if s[0] <= n.start < s[1]), (n.start, n.end)))
        for n in numbers
        if (n.start, n.end) not in in_steps
    ]
    return Solution(text=text, steps=steps, quantities=quantities, numbers=numbers)


def _gerund_steps(text: str) -> list[Step]:
    """Steps written as 'dividing A by B (, which gives R)'; without a result, a step of one side."""
    out = []
    for m in _GERUND.finditer(text):
        verb = m.group("verb").lower()
        prep = m.group("prep").lower()
        if (verb, prep) not in {("multiplying", "by"), ("dividing", "by"), ("adding", "and"),
                                ("adding", "to"), ("subtracting", "from")}:  # fmt: skip
            continue
        a, b = _leaf_expr(text, m, "a"), _leaf_expr(text, m, "b")
        if a is None or b is None:
            continue
        left, right = (b, a) if verb == "subtracting" else (a, b)  # 'subtracting 3 from 10'
        expr = Expr(_GERUND_OPS[verb], m.start("verb"), b.end, left=left, right=right,
                    op_span=m.span("verb"))  # fmt: skip
        sides: tuple[Expr, ...] = (expr,)
        if m.group("r"):
            r = _leaf_expr(text, m, "r")
            if r is not None:
                sides = (expr, r)
        end = sides[-1].end
        out.append(Step(sides, m.start("verb"), end, text[m.start("verb") : end]))
    return out


def _leaf_expr(text: str, m: re.Match, group: str) -> Expr | None:
    """A number group of a match as an expression (a fraction 'a/b' as a division)."""
    start, end = m.span(group)
    piece = " " * start + text[start:end]  # the group alone, at its place in the text
    runs = expression_runs(tokenize(piece), piece)
    return parse_prefix(runs[0], whole=True) if runs else None


def _parse_at(text: str, start: int, end: int) -> list[Step]:
    """Steps of text[start:end] with spans in `text`'s coordinates."""
    padded = " " * start + text[start:end]
    return [
        s
        for run in expression_runs(tokenize(padded), padded)
        for s in steps_in_run(run, padded)
    ]  # fmt: skip


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `text` (split after . ! ? before whitespace, and at
    newlines)."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans
