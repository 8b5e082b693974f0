"""Parsing worked solutions into steps: notations, spans, chains, worded operations."""

import pytest

from diagnostics.equation_parser import question_numbers
from diagnostics.equations import format_number, same_value
from diagnostics.solution_steps import parse_solution


def _steps(text: str) -> list[tuple[str, list[float | None]]]:
    return [
        (s.text, [e.value for e in s.sides]) for s in parse_solution(text).steps if not s.annotation
    ]


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("So, she sold 48/2 = 16 clips.", [("48/2 = 16", [24.0, 16.0])]),
        ("48 * 2 = 96 and 2 x 4 = 8, 6 × 7 = 42, 9 ÷ 3 = 3", [
            ("48 * 2 = 96", [96, 96]), ("2 x 4 = 8", [8, 8]), ("6 × 7 = 42", [42, 42]), ("9 ÷ 3 = 3", [3, 3])]),
        ("49 (regular soda) + 40 (diet soda) = 80", [("49 (regular soda) + 40 (diet soda) = 80", [89, 80])]),
        ("He earned $10/family * 3 families = $30.", [("10/family * 3 families = $30", [30, 30])]),
        ("5 hours * $10 per hour = $50", [("5 hours * $10 per hour = $50", [50, 50])]),
        ("Penny has $20 - 4 * 2 = $20 - 4 = $16 left.", [("20 - 4 * 2 = $20 - 4 = $16", [12, 16, 16])]),
        ("2 + 2 + 5 = 9 hours", [("2 + 2 + 5 = 9", [9, 9])]),
        ("(76 - 25) * 2 = 102", [("(76 - 25) * 2 = 102", [102, 102])]),
        ("It costs $1,200 + $300 = $1,500.", [("1,200 + $300 = $1,500", [1500, 1500])]),
        ("Cut = 20% of 400 = 0.2 * 400 = 80", [("20% of 400 = 0.2 * 400 = 80", [80, 80, 80])]),
        ("half of 48 is 24", [("half of 48 is 24", [24, 24])]),
        ("48 divided by 2 is 24 and 3 times 5 equals 15", [
            ("48 divided by 2 is 24", [24, 24]), ("3 times 5 equals 15", [15, 15])]),
        ("twice 48 is 96", [("twice 48 is 96", [96, 96])]),
        ("The total is 458 girls. x = 5", []),  # no operation: statements, not steps
    ],
)  # fmt: skip
def test_notations(text, steps):
    assert _steps(text) == [(t, [pytest.approx(v) for v in vs]) for t, vs in steps]


def test_spans_point_at_the_digits():
    text = "Total: $1,200 / 4 = $300 each."
    (step,) = parse_solution(text).steps
    result = step.result.number
    assert text[result.start : result.end] == "300"
    assert [text[n.start : n.end] for n in step.operands] == ["1,200", "4"]
    assert text[slice(*step.expression.op_span)] == "/"


def test_annotations_are_steps_and_stated_numbers_are_quantities():
    text = "Natalia sold 48/2 = <<48/2=24>>24 clips in May. She has 7 left."
    solution = parse_solution(text)
    assert [s.annotation for s in solution.steps] == [False, True]
    assert [q.number.value for q in solution.quantities] == [7]
    assert [type(e).__name__ for e in solution.events()] == ["Step", "Step", "Quantity"]


def test_question_numbers_include_words():
    q = "Tom buys three boxes of a dozen eggs and eats half of them; each costs $2."
    assert [(n.text, n.value) for n in question_numbers(q)] == [
        ("three", 3), ("dozen", 12), ("half", 2), ("2", 2)]  # fmt: skip


def test_rounding_and_formatting():
    assert same_value(3.33, 10 / 3, "3.33") and not same_value(3, 3.2, "3")
    assert format_number(24.0) == "24" and format_number(10 / 3) == "3.33"
