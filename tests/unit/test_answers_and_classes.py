import pytest

from diagnostics.answers import extract_flexible, extract_strict, judge
from diagnostics.failure_classes import FailureClass, classify_failure, is_degenerate
from diagnostics.first_error import locate_first_error
from diagnostics.gold_solution import gold_from_reference

NATALIA_Q = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)
NATALIA_REF = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"


def test_gsm8k_extraction_follows_lm_eval():
    assert extract_strict("so #### 1,234.") == "1234"
    assert extract_strict("the answer is 5") is None
    assert extract_flexible("I had $1,200 and then 35 more.") == "35"
    assert extract_flexible("no numbers") is None


@pytest.mark.parametrize(
    ("output", "expected", "mode", "correct", "format_ok"),
    [
        ("... #### 72", "72", "gsm8k", True, True),
        ("The answer is 72.", "72", "gsm8k", True, False),
        ("#### 70 and later 72", "72", "gsm8k", False, True),  # strict wins
        ("It is $1,000.", "1000", "gsm8k", True, False),
        ("3.14159", "3.1416", "numeric", False, True),
        ("Paris", " paris ", "exact", True, True),
        ("It is Paris, France", "paris", "contains", True, True),
        ("answer: 42!", "42", "regex", True, True),
    ],
)
def test_judge_modes(output, expected, mode, correct, format_ok):
    j = judge(output, expected, mode, pattern=r"answer: (\d+)" if mode == "regex" else None)
    assert (j.correct, j.format_ok) == (correct, format_ok)


def test_answer_span_points_at_the_answer_in_every_locating_mode():
    # the span is what the expected path splices the expected answer into
    assert judge(" 196\nA", "106", "regex", pattern=r"^\s*(-?\d+)").span == (1, 4)
    assert judge("so x = 5\n#### 5", "5", "gsm8k").span == (14, 15)
    assert judge("about 5.1 apples", "5", "numeric").span == (6, 9)


def test_numeric_tolerance_and_bad_modes():
    assert judge("3.14159", "3.1416", "numeric", tolerance=1e-3).correct
    with pytest.raises(ValueError, match="unknown answer mode"):
        judge("1", "1", "fuzzy")
    with pytest.raises(ValueError, match="needs a pattern"):
        judge("1", "1", "regex")
    with pytest.raises(ValueError, match="invalid answer pattern"):
        judge("1", "1", "regex", pattern="(")


def test_worked_answers_to_raw_prompts():
    # the restated operand is not the answer; new examples after the answer are not read
    assert judge(" 57 + 68 = 125\n\nQ: What is 3 + 4?\nA: 7", "125", "worked").correct
    assert judge(" 57 + 68 = 135\nQ: 1 + 1\nA: 2", "125", "worked").extracted == "135"
    assert judge(" The answer is 125.", "125", "worked").span == (15, 18)
    assert judge(" -8", "82", "worked").extracted == "-8"


def test_degenerate_text():
    assert is_degenerate("the the the the " * 10)
    assert is_degenerate("   ")
    assert not is_degenerate("Natalia sold 48 clips in April and 24 in May, 72 in total.")


@pytest.mark.parametrize(
    ("output", "klass"),
    [
        ("She sold 48 + 24 = 72 clips. #### 72", FailureClass.none),
        ("She sold many clips.", FailureClass.format),
        ("She sold 72 clips, or so I say. #### 80", FailureClass.format),
        # an unsupported claim before the answer is the first error, and the class follows it
        ("First 72 clips, but then I think 80. #### 80", FailureClass.invented_step),
        ("clips clips clips clips " * 12, FailureClass.degenerate),
        ("48 / 2 = 24. 48 + 24 = 73. #### 73", FailureClass.calculation_slip),
        ("48 / 2 = 24. 84 + 24 = 108. #### 108", FailureClass.misread_number),
        ("48 / 2 = 24. 48 * 24 = 1152. #### 1152", FailureClass.wrong_operation),
        ("48 / 2 = 24. #### 24", FailureClass.missing_step),
        ("No clue, maybe 50. #### 50", FailureClass.other),
    ],
)
def test_failure_classes_follow_the_first_error(output, klass):
    j = judge(output, "72")
    gold = gold_from_reference(NATALIA_REF)
    first = None if j.correct else locate_first_error(NATALIA_Q, output, 72, gold, j.span)
    assert classify_failure(output, j, first).failure_class == klass
