"""Short descriptions: surface variants grouped, the list cut where precision drops, generic marks."""

from __future__ import annotations

import numpy as np

from diagnostics.atlas.describe import describe, element_rows, peak_agreement, sub_rule
from diagnostics.atlas.generic import format_share, format_tokens, generic_reason
from diagnostics.atlas.label_search import rank_by_label
from diagnostics.atlas.records import LabelRule
from diagnostics.atlas.surface import same_word, surface

# a BPE-like vocabulary: word-start tokens carry their leading space
STRINGS = [
    "<|endoftext|>", "3", " three", " third", " Three", " cl", " Tuesday", " Wednesday", " –",
    " average", " March", " How", " many", " much", "=", "1", "2", " cat", " cats", " Cat",
    " sheep", " snowfl", "akes", " multiply", " divide", " that", "\n", " ", " hours", "?",
    " Le", "ipzig",
]  # fmt: skip
ID = {s: i for i, s in enumerate(STRINGS)}


def rule(tokens=(), grams=(), counts=()):
    """A rule of `tokens` (strings) and `grams` ((prev, token) strings) with (fires, occ) counts."""
    tok_ids = [ID[t] for t in tokens]
    gram_ids = [[ID[a], ID[b]] for a, b in grams]
    fires = [f for f, _ in counts]
    occ = [o for _, o in counts]
    return LabelRule(
        token_ids=tok_ids,
        tokens=list(tokens),
        ngram_ids=gram_ids,
        ngrams=["".join(g) for g in grams],
        fires=fires,
        occurrences=occ,
        coverage=0.8,
        precision=sum(fires) / sum(occ),
    )


def test_surface_classes_fold_case_space_plural_and_number_words():
    assert surface("3").key == surface(" three").key == surface(" Third").key == "3"
    assert surface(" three").kind == "number"
    assert surface(" How").kind == "question" and surface("\n").kind == "space"
    assert surface(" =").kind == "symbol" and surface(" Tuesday").kind == "weekday"
    assert surface(" may").kind == "word"  # the verb, not the month
    assert same_word("cat", "cats") and same_word("box", "boxes") and same_word("mult", "multiply")
    assert same_word("competition", "compete") and not same_word("special", "specific")
    assert not same_word("cat", "car")


def test_number_variants_group_and_the_unrelated_tail_is_cut():
    # the rule of issue 15's latent 5048: the number three, then a low-share, imprecise tail
    r = rule(
        ["3", " three", " third", " cl", " Tuesday", " Wednesday", " –", " average", " March"],
        counts=[(900, 950), (60, 70), (30, 40), (3, 40), (4, 9), (3, 8), (5, 60), (4, 50), (3, 30)],
    )
    d = describe(r, STRINGS)
    assert d.text == 'number three ("3", "three", "third")'
    assert d.elements == [0, 1, 2]  # the matcher is exactly what the text names
    part = sub_rule(r, d.elements)
    assert part.token_ids == [ID["3"], ID[" three"], ID[" third"]]
    assert part.precision == round(990 / 1060, 4) and d.precision == part.precision


def test_question_phrase_symbols_and_a_shared_previous_token():
    q = rule(grams=[(" How", " many"), (" How", " much")], counts=[(50, 52), (20, 22)])
    assert describe(q, STRINGS).text == 'question phrase "How many" ("How much")'
    digits = rule(grams=[("=", "1"), ("=", "2")], counts=[(40, 41), (30, 31)])
    assert describe(digits, STRINGS).text == 'digits ("1", "2") after "="'
    that = rule(grams=[(" multiply", " that"), (" divide", " that")], counts=[(20, 20), (10, 11)])
    assert describe(that, STRINGS).text == '"that" after "multiply", "divide"'
    space = rule([" ", "\n"], counts=[(500, 510), (2, 400)])
    assert describe(space, STRINGS).text == 'space "␣"'  # the newline is imprecise: cut


def test_words_group_plurals_and_word_pieces_are_completed_from_contexts():
    cats = rule([" cats", " cat", " Cat", " sheep"], counts=[(40, 41), (30, 33), (5, 5), (12, 13)])
    assert describe(cats, STRINGS).text == '"cats" ("cat"), "sheep"'
    pieces = rule(["ipzig", " snowfl"], counts=[(20, 20), (10, 10)])
    contexts = [[ID[" Le"], ID["ipzig"], ID[" cat"]], [ID[" snowfl"], ID["akes"], ID["?"]]]
    assert describe(pieces, STRINGS, contexts).text == '"Leipzig", "snowflakes"'
    assert describe(LabelRule(), STRINGS).text == ""


def test_peak_agreement_and_rule_rows():
    r = rule([" cat"], [(" How", " many")], counts=[(30, 31), (5, 50)])
    rows = [[ID[" cats"], ID[" cat"]], [ID[" How"], ID[" many"]], [ID["?"], ID[" cl"]]]
    assert peak_agreement(r, rows, 1) == 2 / 3
    shown = element_rows(r.model_copy(update={"described": [0]}))
    assert [(e.text, e.fires, e.described) for e in shown] == [
        ("cat", 30, True),
        ("How many", 5, False),
    ]


def test_generic_reasons_and_format_share_from_sparse_counts():
    mask = format_tokens(STRINGS, special_ids=[0])
    assert mask[ID["?"]] and mask[ID["\n"]] and mask[0] and not mask[ID["3"]]
    latent = np.array([0, 0, 1, 1])
    token = np.array([ID["?"], ID[" cat"], ID[" cat"], ID["3"]])
    fires = np.array([9.0, 1.0, 5.0, 5.0])
    share = format_share(latent, token, fires, mask, d_sae=3)
    np.testing.assert_allclose(share, [0.9, 0.0, 0.0])
    assert generic_reason(0.12, 0.0, 0.0).startswith("dense: fires on 12.0%")
    assert generic_reason(0.01, 0.9, 0.0).startswith("formatting: 90%")
    assert generic_reason(0.01, 0.1, 0.7).startswith("position: 70%")
    assert generic_reason(0.01, 0.1, 0.1) == ""


def test_label_search_ranks_an_exact_description_first():
    descriptions = ['"cats" ("cat")', 'number three ("3")', '"cat" after "the"', ""]
    labels = [d + (' → "s"' if i == 0 else "") for i, d in enumerate(descriptions)]
    rules = [{"tokens": [" cats"]}, {"tokens": ["3"]}, {"tokens": [" cat"]}, {}]
    score = np.array([0.5, 0.9, 0.99, 0.0])
    assert rank_by_label('"cats" ("cat")', labels, descriptions, rules, score)[0] == 0
    assert rank_by_label("cat", labels, descriptions, rules, score) == [2, 0]
    assert rank_by_label("number three", labels, descriptions, rules, score) == [1]
    assert rank_by_label("  ", labels, descriptions, rules, score) == []
