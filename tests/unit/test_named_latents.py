"""How reports name flagged latents: specific ones only, each with its card; the verdict says in
words when only generic latents were found; the text report explains its numbers."""

from __future__ import annotations

import random

from diagnostics.feature_card import CardContext, FeatureCard
from diagnostics.named_latents import ONLY_GENERIC, activation_note
from diagnostics.report import Divergence
from diagnostics.report_text import render_report
from diagnostics.verdict import caveats, write_verdict
from tests.service.factories import synthetic_report

CTX = CardContext(before="Multiply the area ", peak="by", after=" the stroke", activation=32.7)


def _card(fid: int, description: str, generic: bool = False) -> FeatureCard:
    return FeatureCard(
        feature=fid, description=description, label=description, label_score=0.93,
        generic=generic, generic_reason="formatting: 81% of its strongest firings" if generic else "",
        contexts=[CTX],
    )  # fmt: skip


def _report(generic: list[bool]):
    report = synthetic_report(
        random.Random(0), correct=False, flagged=list(range(10, 10 + len(generic)))
    )
    report.divergence = Divergence(
        position=12, path_index=2, expected_token=" 72", expected_token_id=5, model_token=" 68",
        model_token_id=6, logit_expected=1.0, logit_model=2.0, metric=-1.0, prob_expected=0.2,
        prob_model=0.6,
    )  # fmt: skip
    for f, g in zip(report.flagged, generic, strict=True):
        f.generic = g
        f.generic_reason = "formatting" if g else ""
        f.card = _card(f.feature, f"words of {f.feature}" if not g else 'space "␣"', g)
    return report


def test_the_verdict_names_only_specific_latents_by_their_description():
    report = _report([True, False, False])
    verdict = write_verdict(report)
    assert "#11 'words of 11'" in verdict and "#12 'words of 12'" in verdict
    assert "#10" not in verdict and ONLY_GENERIC not in verdict.lower()


def test_when_only_generic_latents_are_flagged_the_verdict_says_so_in_words():
    report = _report([True, True])
    verdict = write_verdict(report)
    assert ONLY_GENERIC[0].upper() + ONLY_GENERIC[1:] + "." in verdict
    assert "#10" not in verdict and "#11" not in verdict
    assert any("generic" in c for c in caveats(report))


def test_a_latent_without_a_description_is_named_for_its_contexts():
    report = _report([False])
    report.flagged[0].card = FeatureCard(feature=10, contexts=[CTX])
    report.flagged[0].label = ""
    assert "#10 (no description: see its contexts)" in write_verdict(report)


def test_the_text_report_shows_each_card_and_explains_its_numbers():
    report = _report([False, True])
    first, second = report.flagged
    first.attribution, first.activation_failing, first.activation_expected = 0.97, 35.6, 35.6
    first.atlas_mean_activation = 8.9
    second.attribution, second.activation_expected = -0.4, 0.0
    text = render_report(report)
    assert "#10 words of 10 [AUROC 0.93]" in text
    assert text.count("Multiply the area [[by]] the stroke") == 2  # each card's context
    assert (
        "35.60 on both paths: it peaks before they part, on text both share, 4.0x its usual" in text
    )
    assert "its linear attribution is positive, but ablating it moves the gap toward the" in text
    assert "[generic: formatting: 81%" in text  # the generic one is marked as such
    assert text.index("#10 words") < text.index("#11 space")  # in the flagged order


def test_activation_note_tells_apart_the_two_paths():
    report = _report([False])
    f = report.flagged[0]
    f.activation_failing, f.activation_expected, f.atlas_mean_activation = 5.0, 1.0, None
    assert activation_note(f) == "5.00 on the model's path, 1.00 on the corrected one"
