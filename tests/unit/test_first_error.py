"""The first wrong step of a solution and its correction, with and without gold steps."""

import pytest

from diagnostics.answers import judge
from diagnostics.first_error import locate_first_error
from diagnostics.gold_solution import (
    GoldSolution,
    derive_gold,
    gold_from_question,
    gold_from_reference,
)
from diagnostics.prompts import last_question
from diagnostics.step_errors import ErrorKind, FoundBy

NATALIA_Q = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)
NATALIA_REF = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


def _locate(output: str, gold: GoldSolution, question: str = NATALIA_Q, expected: float = 72):
    span = judge(output, str(expected)).span
    return locate_first_error(question, output, expected, gold, span)


def test_derived_gold_for_natalia_is_half_then_sum():
    gold = derive_gold(NATALIA_Q, 72)
    assert gold.source == "derived"
    assert [s.render() for s in gold.steps] == ["48 / 2 = 24", "24 + 48 = 72"]


@pytest.mark.parametrize("gold", ["reference", "derived"])
def test_a_slip_is_corrected_in_its_result_digits(gold):
    out = "She sold 48 in April. So, she sold 48/2 = 16 clips in May. 48 + 16 = 64. #### 64"
    g = gold_from_reference(NATALIA_REF) if gold == "reference" else derive_gold(NATALIA_Q, 72)
    e = _locate(out, g)
    assert (e.kind, e.found_by) == (ErrorKind.calculation_slip, FoundBy.calculator)
    assert out[slice(*e.span)] == "48/2 = 16" and e.should_be == "48/2 = 24"
    assert e.correction.apply(out) == "She sold 48 in April. So, she sold 48/2 = 24"
    assert e.correction.start == out.index("16")


@pytest.mark.parametrize("gold", ["reference", "derived"])
def test_half_as_many_written_as_times_two_is_a_wrong_operation(gold):
    out = "In May she sold 48 * 2 = 96 clips. Altogether 48 + 96 = 144 clips.\n#### 144"
    g = gold_from_reference(NATALIA_REF) if gold == "reference" else derive_gold(NATALIA_Q, 72)
    e = _locate(out, g)
    assert (e.kind, e.found_by) == (ErrorKind.wrong_operation, FoundBy.gold_step)
    assert e.step_text == "48 * 2 = 96" and e.should_be == "48 / 2 = 24"
    assert e.correction.start == out.index("*")  # the operator is the first thing to change


def test_a_valid_reordering_is_not_an_error():
    out = "In May: 48/2 = 24. In total 24 + 48 = 72 clips... so #### 27"
    e = _locate(out, gold_from_reference(NATALIA_REF))
    assert e.kind == ErrorKind.answer_only and out[slice(*e.span)].startswith("In May")


def test_a_partial_evaluation_slip_rewrites_the_collapsed_number():
    out = "Penny has $20 - 4 * 2 = $20 - 4 = $16 left."
    e = _locate(out, GoldSolution(), "Penny has $20 and buys 4 pairs of socks at $2.", 12)
    assert e.kind == ErrorKind.calculation_slip
    assert e.correction.apply(out) == "Penny has $20 - 4 * 2 = $20 - 8"


def test_misread_operand_against_a_gold_step():
    q = "Jimmy makes 8 sandwiches, using two slices of bread each. Each pack has 4 slices. How many packs?"
    ref = "8*2=<<8*2=16>>16 slices. 16/4=<<16/4=4>>4 packs.\n#### 4"
    out = "The total number of slices is 4 * 8 = 32 slices. So 32 / 4 = 8 packs. #### 8"
    e = _locate(out, gold_from_reference(ref), q, 4)
    assert e.kind == ErrorKind.misread_number and e.step_text == "4 * 8 = 32"
    assert e.should_be == "2 * 8 = 16"


def test_a_number_from_nowhere_near_a_question_number_is_misread():
    out = "April: 84 + 24 = 108 clips. #### 108"
    e = _locate(out, GoldSolution())
    assert e.kind == ErrorKind.misread_number and "84" in e.evidence
    assert e.correction.apply(out) == "April: 48 + 24 = 72"


def test_stopping_at_an_intermediate_is_a_missing_step():
    out = "In May she sold 48 / 2 = 24 clips.\n#### 24"
    e = _locate(out, gold_from_reference(NATALIA_REF))
    assert e.kind == ErrorKind.missing_step and out[slice(*e.span)] == "#### 24"
    assert e.correction.apply(out) == "In May she sold 48 / 2 = 24 clips.\n#### 72"


def test_nothing_checkable_falls_back_to_the_answer():
    out = "I think they sold a lot of clips. The answer is 50."
    e = _locate(out, GoldSolution())
    assert (e.kind, e.found_by) == (ErrorKind.answer_only, FoundBy.fallback)


@pytest.mark.parametrize(
    ("question", "output", "kind", "evidence"),
    [
        ("What is 37 + 45?", " 72", ErrorKind.calculation_slip, "37 + 45 = 72 (should be 82)"),
        ("Q: What is 12 + 35?\nA: 47\nQ: What is 37 + 45?\nA:", " 83\n", ErrorKind.calculation_slip, "(should be 82)"),
        ("37 + 45 =", " 1665", ErrorKind.wrong_operation, "1665 = 37 * 45"),
        ("What is 37 + 45?", " -8", ErrorKind.wrong_operation, "the question asks 37 + 45"),
    ],
)  # fmt: skip
def test_a_bare_answer_to_an_asked_sum(question, output, kind, evidence):
    q = last_question(question)
    gold = gold_from_question(q, 82)
    span = judge(output, "82", "worked").span
    e = locate_first_error(q, output, 82, gold, span)
    assert e.kind == kind and evidence in e.evidence and e.gold_source == "question"


@pytest.mark.parametrize(
    ("question", "output", "evidence", "corrected"),
    [
        (
            "Tom has 12 marbles and gives 5 of them to Ann. If Ann has 30 marbles, how many?",
            "If Tom has 30 marbles, he gives 5 of them away. #### 25",
            "to Ann",
            "If Ann",
        ),
        (
            "A shop sells 40 pens a day. Only 25% of the pens sold each day are blue. Of these "
            "blue pens, 60% are cheap. How many cheap blue pens does it sell?",
            "Since 60% of the pens sold each day are blue, 40 * 0.6 = 24. #### 24",
            "25%",
            "Since 25",
        ),
    ],
)  # fmt: skip
def test_a_question_number_restated_for_the_wrong_thing(question, output, evidence, corrected):
    e = locate_first_error(question, output, 6, GoldSolution(), judge(output, "6").span)
    assert (e.kind, e.found_by) == (ErrorKind.misread_number, FoundBy.question_binding)
    assert evidence in e.evidence and e.correction.apply(output).startswith(corrected)
    assert e.span[0] == 0  # the clause that restates it


def test_a_pronoun_or_month_is_no_binding_error():
    out = "She sold 48 in April. In May she sold 48 / 2 = 24. 48 + 24 = 72 #### 73"
    e = _locate(out, gold_from_reference(NATALIA_REF))
    assert e.found_by != FoundBy.question_binding


def test_a_worded_operation_without_a_result_is_checked_against_gold():
    q = "A school enrolls 4000 students. Another enrolls 3/4 as many. How many more?"
    ref = "3/4*4000=<<4000*3/4=3000>>3000. 4000-3000=<<4000-3000=1000>>1000\n#### 1000"
    out = "Dividing 4000 by 3/4:\nDividing 4000 by 3/4:\n#### 5333"
    e = locate_first_error(q, out, 1000, gold_from_reference(ref), judge(out, "1000").span)
    assert e.kind == ErrorKind.wrong_operation and e.step_text == "Dividing 4000 by 3/4"
