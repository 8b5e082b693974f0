"""Issue 25: a derived gold is a set of derivations (a right step is never blamed), prose claims
are checked against the question, and every location says how sure it is. The locator is text
logic: these need no model."""

from diagnostics.answers import judge
from diagnostics.failure_classes import FailureClass, classify_failure
from diagnostics.first_error import locate_first_error
from diagnostics.gold_solution import (
    GoldSolution,
    derive_gold,
    gold_for,
    gold_from_reference,
)
from diagnostics.prompts import last_question
from diagnostics.report import upgrade_report_body
from diagnostics.step_errors import Confidence, ErrorKind, FoundBy


def _locate(question: str, expected: str, output: str, reference: str | None = None):
    span = judge(output, expected).span
    gold = gold_for(question, expected, reference)
    return locate_first_error(last_question(question), output, float(expected), gold, span)


LENA_Q = (
    "Lena buys 3 notebooks that cost $4 each and one pen that costs $2. How much does she spend?"
)
LENA_OUT = (
    "3 * 4 = 12 dollars on the notebooks and 1 * 2 = 2 dollars on the pen. The total cost of "
    "the notebooks and the pen is 3 + 1 = 4 dollars.\n#### 1"
)


def test_a_right_step_on_one_derivation_is_not_blamed():
    gold = derive_gold(LENA_Q, 14)
    assert len(gold.trees) >= 2  # (3 + 4) * 2-like and 3 * 4 + 2: both reach 14
    e = _locate(LENA_Q, "14", LENA_OUT)
    assert e.step_text == "3 + 1 = 4"  # not '3 * 4 = 12', which lies on 3 * 4 + 2
    assert e.confidence is Confidence.derived  # one derivation is consistent with 3 * 4 = 12
    assert e.should_be == "12 + 2 = 14"
    assert e.correction.start == LENA_OUT.index("3 + 1")


SAM_Q = (
    "Sam is 4 years older than his sister, who is twice as old as their 5-year-old cousin. "
    "How old is Sam?"
)
SAM_OUT = "Sam is 5 years old. His sister is twice as old as Sam, so she is 2 * 5 = 10 years "
SAM_OUT += "old. The answer is 5."


def test_an_invented_first_claim_is_located_not_the_answer_token():
    e = _locate(SAM_Q, "14", SAM_OUT)
    assert e.found_by is FoundBy.question_binding and e.kind is ErrorKind.misread_number
    assert e.step_text.startswith("Sam is 5 years old")
    assert e.confidence is Confidence.uncertain  # a prose-only check
    assert e.correction.start == SAM_OUT.index("5")  # at the claim, not the answer
    assert e.should_be == "Sam is 14 years old."  # the asked quantity: the expected answer


def test_a_difference_restated_as_an_amount_is_a_misread():
    q = "The rug is 5 feet wider than the chair. The chair is 3 feet wide. How wide is the rug?"
    out = "The rug is 5 feet wider than the chair, which means the width of the rug is 5 feet."
    out += " So the answer is 5."
    e = _locate(q, "8", out)
    assert e.kind is ErrorKind.misread_number and "difference" in e.evidence
    assert out[slice(*e.span)].startswith("which means the width")


def test_a_total_given_to_one_person_is_a_misread():
    q = (
        "Together Lily, David, and Bodhi collected 43 insects. Lily found 7 more than David. "
        "David found half of what Bodhi found. How many insects did Lily find?"
    )
    out = "Lily found 43 insects.\nDavid found 43 - 7 = 36 insects.\n#### 36"
    e = _locate(q, "16", out)
    assert e.kind is ErrorKind.misread_number and e.span[0] == 0
    assert e.should_be == "Lily found 16 insects."


def test_a_number_stated_for_another_thing_is_a_misread():
    q = (
        "Miss Adamson has four classes with 20 students each. She uses 5 sheets of paper per "
        "student. How many sheets of paper will she use for all of her students?"
    )
    out = "There are 20 students in the class, and each student has 4 sheets of paper. "
    out += "So 20 x 4 = 80 sheets.\n#### 80"
    e = _locate(q, "400", out)
    assert e.kind is ErrorKind.misread_number
    assert out[slice(*e.span)].startswith("and each student has 4 sheets of paper")
    assert e.correction.start == out.index("4 sheets")
    assert e.correction.apply(out).endswith("each student has 5 sheets of paper.")


def test_a_quantity_with_no_source_is_invented_at_its_sentence():
    q = "Jack cycles 50 miles to Peter. Then he cycles back. How many miles did he cycle?"
    out = "This cycle takes 50 miles to Peter and 20 miles to Jack. So 50 + 20 = 70.\n#### 70"
    e = _locate(q, "100", out)
    assert e.kind is ErrorKind.invented_step and e.span[0] == out.index("20 miles")


def test_true_restatements_and_plain_results_are_not_blamed():
    q = (
        "Gretchen charges $20.00 per drawing. If she sold 24 on Saturday and 16 on Sunday, how "
        "much money did she make?"
    )
    out = "She sold 24 drawings on Saturday and 16 on Sunday, 40 drawings in all.\n"
    out += "40 * 20 = 800.\n#### 900"
    e = _locate(q, "800", out)
    assert e.kind is ErrorKind.answer_only and e.confidence is Confidence.checked


def test_a_located_step_sets_the_class_even_when_the_expected_value_is_written():
    out = "First 72 clips, but then 48 * 2 = 96 clips. #### 96"
    q = (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
        "in May. How many clips did Natalia sell altogether in April and May?"
    )
    ref = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n48+24 = <<48+24=72>>72\n#### 72"
    j = judge(out, "72")
    e = locate_first_error(q, out, 72, gold_from_reference(ref), j.span)
    assert j.expected_in_output and e.kind is ErrorKind.wrong_operation
    assert classify_failure(out, j, e).failure_class is FailureClass.wrong_operation


def test_stored_first_errors_get_an_honest_confidence():
    def body(**fe):
        return {"schema_version": "2.0", "first_error": {"kind": "x", "found_by": "x", **fe}}

    calc = upgrade_report_body(body(found_by="calculator", gold_source=None))
    ref = upgrade_report_body(body(found_by="gold_step", gold_source="annotations"))
    derived = upgrade_report_body(body(found_by="gold_step", gold_source="derived"))
    prose = upgrade_report_body(body(found_by="question_binding", gold_source=None))
    assert calc["first_error"]["confidence"] == "checked"
    assert ref["first_error"]["confidence"] == "checked"
    assert derived["first_error"]["confidence"] == "uncertain"  # one of several, untold
    assert prose["first_error"]["confidence"] == "uncertain"


def test_a_comparison_turned_around_is_a_misread_and_list_numbers_are_not_claims():
    q = "Chenny is 10 years old. How old is Anne if she is 2 years older than Chenny?"
    out = "1. We know that Chenny is 2 years older than Anne.\n2. So Anne is 10 - 2 = 8.\n#### 8"
    e = _locate(q, "12", out)
    assert e.kind is ErrorKind.misread_number and "compare" in e.evidence
    assert e.correction is None or e.correction.start >= out.index("2 years")
    assert e.span[0] > out.index("1.")  # the list number '1.' is no claim


def test_a_given_output_is_not_called_the_models_preference():
    from diagnostics.report import Divergence, NextToken
    from diagnostics.verdict import _turn

    class R:  # the fields _turn reads
        output_source = "given"
        divergence = Divergence(
            position=9, path_index=3, output_offset=10, expected_token="7", expected_token_id=7,
            model_token="8", model_token_id=8, logit_expected=3.0, logit_model=0.1, metric=2.9,
            prob_expected=0.86, prob_model=0.05, near_tie=True, context="48 + 24 = ",
            top_next=[NextToken(token="7", token_id=7, prob=0.86)],
        )  # fmt: skip

    text = _turn(R())
    assert "preferred" not in text and "would write the corrected token" in text


def test_a_difference_used_as_a_factor_is_a_wrong_operation_by_the_wording():
    q = (
        "Ophelia and Jenna each have 2 fewer sofas than chairs. Jenna has 3 times as many "
        "chairs as Ophelia. If Ophelia has 20 sofas, how many chairs does Ophelia have?"
    )
    out = "Ophelia has 20 sofas, so 20 * 2 = 40 chairs.\n#### 40"
    derived = _locate(q, "22", out)  # the one derivation says so too: 20 + 2
    assert derived.kind is ErrorKind.wrong_operation and derived.confidence is Confidence.derived
    e = locate_first_error(q, out, 22, GoldSolution(), judge(out, "22").span)  # wording alone
    assert e.kind is ErrorKind.wrong_operation and e.confidence is Confidence.uncertain
    assert e.correction.start == out.index("*")
    assert e.correction.apply(out)[-1] in "+-"  # the wording says additive, not which way
