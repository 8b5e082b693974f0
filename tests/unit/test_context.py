"""Context attribution: the edits of a prompt, and the responsible span on the tiny model."""

from diagnostics.context import prompt_edits

Q = (
    "Tom has 5 apples. The library opened 12 years ago. He buys 3 more apples. "
    "How many apples does he have?"
)


def test_sentences_are_deleted_but_not_the_question_and_numbers_replaced():
    edits = prompt_edits(Q)
    sentences = [e for e in edits if e.kind == "sentence"]
    assert [e.text for e in sentences] == [
        "Tom has 5 apples.", "The library opened 12 years ago.", "He buys 3 more apples."]  # fmt: skip
    assert sentences[1].prompt == (
        "Tom has 5 apples. He buys 3 more apples. How many apples does he have?"
    )
    numbers = [e for e in edits if e.kind == "number"]
    assert [(e.text, e.replacement) for e in numbers] == [("5", "7"), ("12", "18"), ("3", "5")]
    assert all(Q[e.start : e.end] == e.text for e in edits)


def test_only_the_last_question_of_a_worked_prompt_is_edited():
    prompt = "Q: Ann has 2 pens. She buys 1. How many?\nA: 3\nQ: Tom has 5 apples. He eats 2. How many?\nA:"
    edits = prompt_edits(prompt)
    assert {e.text for e in edits if e.kind == "sentence"} == {"Tom has 5 apples.", "He eats 2."}
    assert all(e.start > prompt.index("A: 3") for e in edits)


def test_a_one_sentence_question_is_never_deleted_only_its_numbers_replaced():
    for prompt in ("Q: What is 57 + 68?\nA:", "Compute 57 + 68."):
        edits = prompt_edits(prompt)
        assert [e.kind for e in edits] == ["number", "number"]
