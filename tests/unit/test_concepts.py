"""Flagged latents grouped into concepts, on the shipped SAE's decoder rows and atlas."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cli.audit_text import format_summary
from diagnostics.atlas import FeatureAtlas
from diagnostics.concept_evidence import NullCounts, poisson_binomial_tail, smoothed
from diagnostics.concepts import (
    COSINE_THRESHOLD,
    ConceptBasis,
    FlaggedFailure,
    audit_concepts,
    description_key,
    group_latents,
)
from diagnostics.sae import load_sae
from service.audit_summary import ITEM_COLUMNS, summarize


@pytest.fixture(scope="module")
def basis() -> ConceptBasis:
    sae = load_sae("default")
    return ConceptBasis.of(sae, FeatureAtlas.for_sae(sae, "default"))


def _cosine(basis: ConceptBasis, a: int, b: int) -> float:
    w = torch.nn.functional.normalize(basis.decoder[[a, b]], dim=1)
    return float(w[0] @ w[1])


def test_random_decoder_rows_are_far_below_the_threshold(basis):
    g = torch.Generator().manual_seed(0)
    d_sae = basis.decoder.shape[0]
    a, b = (
        torch.randint(d_sae, (20_000,), generator=g),
        torch.randint(d_sae, (20_000,), generator=g),
    )
    keep = a != b
    w = torch.nn.functional.normalize(basis.decoder, dim=1)
    cos = (w[a[keep]] * w[b[keep]]).sum(1).abs()  # [pairs]
    assert float(torch.quantile(cos, 0.99)) < 0.15
    assert float(torch.quantile(cos, 0.999)) < COSINE_THRESHOLD


def test_description_key_keeps_the_leading_group_without_its_variants():
    assert description_key('number two ("2", "two", "second"), "B"') == "number two"
    assert description_key('number two ("2", "two")') == "number two"
    assert description_key('comma "," after "Therefore", "Thus"') == "comma after therefore"
    assert description_key("") == ""


def test_latents_join_by_decoder_cosine_or_description(basis):
    # 4025 and 8160 write nearly the same direction (and both read "number four"); 562 and 925
    # are both "number two" with unrelated directions; 336 ("dollar sign") is neither
    assert _cosine(basis, 4025, 8160) >= COSINE_THRESHOLD
    assert _cosine(basis, 562, 925) < COSINE_THRESHOLD
    assert description_key(basis.descriptions[562]) == description_key(basis.descriptions[925])
    groups = group_latents([4025, 562, 336, 925, 8160], basis)
    assert groups == [[4025, 8160], [562, 925], [336]]
    # by cosine alone (no atlas): the "number two" pair splits, the close pair stays together
    bare = ConceptBasis(basis.decoder, [""] * len(basis.descriptions), basis.generic)
    assert group_latents([4025, 562, 336, 925, 8160], bare) == [[4025, 8160], [562], [336], [925]]


def test_audit_concepts_count_failures_and_fix_rates_per_kind(basis):
    generic = next(j for j in range(len(basis.generic)) if basis.generic[j])
    failures = [
        FlaggedFailure("r0", "calculation_slip", [562, 336], True, 0.25),
        FlaggedFailure("r1", "calculation_slip", [925], False, 0.0),
        FlaggedFailure("r2", "misread_number", [562, generic], None, 0.5),
        FlaggedFailure("r3", "misread_number", [generic, 4025], False, None),
        FlaggedFailure("r4", "other", [8160], True, 0.0),
    ]
    concepts, n_generic = audit_concepts(failures, basis, min_failures=2)
    by_latents = {tuple(c.latents): c for c in concepts}
    # 336 is in one failure; the generic latent's concept recurs but is left out
    assert set(by_latents) == {(562, 925), (4025, 8160)} and n_generic == 1
    two = by_latents[(562, 925)]
    assert two.failures == 3 and two.concept == basis.descriptions[562]  # flagged twice
    assert two.flagged_fix_rate == pytest.approx(1 / 2) and two.verified == 2
    assert two.null_fix_rate == pytest.approx(0.75 / 3) and two.with_null == 3
    slip = two.by_kind["calculation_slip"]
    assert (slip.failures, slip.flagged_fix_rate, slip.null_fix_rate) == (2, 0.5, 0.125)
    misread = two.by_kind["misread_number"]
    assert (misread.failures, misread.flagged_fix_rate, misread.null_fix_rate) == (1, None, 0.5)
    assert concepts[0] is two  # most failures first
    assert [c.feature for c in two.cards] == [562] and two.generic_latents == [925]  # dense
    assert all(c.contexts and "[[" in c.contexts[0].marked() for c in two.cards)


def test_poisson_binomial_tail_and_smoothing():
    assert poisson_binomial_tail([0.5, 0.5], 1) == pytest.approx(0.75)
    assert poisson_binomial_tail([0.5, 0.5], 2) == pytest.approx(0.25)
    assert poisson_binomial_tail([0.1, 0.2, 0.3], 0) == 1.0
    assert poisson_binomial_tail([0.1, 0.2], 3) == 0.0
    assert smoothed(0, 8) == pytest.approx(0.5 / 9)  # 0 of 8 draws is not a rate of zero


def test_a_concept_beats_the_null_only_when_it_fixes_more_than_the_null_would(basis):
    rare, often = NullCounts(0, 8, 0, 8), NullCounts(4, 8, 5, 8)
    failures = [
        FlaggedFailure(f"a{k}", "calculation_slip", [562], True, 0.0, True, rare) for k in range(5)
    ] + [
        FlaggedFailure("b0", "misread_number", [4025], True, 0.5, True, often),
        FlaggedFailure("b1", "misread_number", [8160], False, 0.5, False, often),
        FlaggedFailure("c0", "misread_number", [336], True, 0.0, True, rare),  # once: no concept
    ]
    concepts, _ = audit_concepts(failures, basis, min_failures=2)
    two, four = concepts
    assert (two.fix.count, two.fix.of, two.flip.count) == (5, 5, 5)
    assert two.fix.null_expected == pytest.approx(5 * 0.5 / 9, abs=1e-3)
    assert two.fix.p_value == pytest.approx((0.5 / 9) ** 5, rel=1e-3)
    assert two.p_value == pytest.approx(2 * 2 * (0.5 / 9) ** 5, rel=1e-3) and two.beats_null
    # fixing one of two failures where half the null draws fix too is chance
    assert (four.fix.count, four.fix.of) == (1, 2) and not four.beats_null
    assert four.fix.p_value == pytest.approx(1 - (1 - 4.5 / 9) ** 2, rel=1e-3)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three reports (two wrong) with their first errors, spans and null draws; one failure job."""
    body = {
        "first_error_kind": ["calculation_slip", "calculation_slip", None],
        "first_error_step": ["48 / 2 = 25", "3 x 4 = 13", None],
        "first_error_should_be": ["", "3 x 4 = 12", None],
        "span_kind": ["distracting", "quantity", None],
        "span_text": ["She also has a dog.", "48 → 51", None],
        "flipped": [True, True, None],
        "null_fixed": [0, 0, None], "null_fix_draws": [8, 8, None],
        "null_flipped": [0, 0, None], "null_flip_draws": [8, 8, None],
    }  # fmt: skip
    rows = [
        (0, "a", "done", None, "r0", False, "calculation_slip", True, True, 0.2, 2),
        (1, "b", "done", None, "r1", False, "calculation_slip", True, True, 0.0, 1),
        (2, "c", "done", None, "r2", True, "none", True, None, None, 0),
    ]
    items = pd.DataFrame([r + ("p", "1", "2", "v") for r in rows], columns=ITEM_COLUMNS)
    items = items.assign(**body)
    features = pd.DataFrame(
        {
            "report_id": ["r0", "r0", "r1", "r1"],
            "feature_id": [562, 4025, 925, GENERIC],
            "rank": [0, 1, 0, 1],
            "label": ["two", "four", "two", "space"],
            "attribution": [-1.0, -0.5, -2.0, -0.1],
            "ablation_effect": [0.5, 0.1, 0.2, 0.1],
        }
    )
    return items, features


GENERIC = 2182  # a space latent of the shipped atlas (generic: formatting)


def test_the_audit_summary_leads_with_first_errors_and_spans_then_concepts(basis):
    assert basis.generic[GENERIC]
    items, features = _frames()
    summary = summarize(items, features, basis)
    [slip] = summary["first_errors"]
    assert slip["kind"] == "calculation_slip" and slip["count"] == 2 and slip["share"] == 1.0
    assert slip["example"] == {"report_id": "r1", "step": "3 x 4 = 13", "should_be": "3 x 4 = 12"}
    spans = {s["kind"]: s for s in summary["responsible_spans"]}
    assert spans["distracting"]["example"]["text"] == "She also has a dog."
    assert spans["quantity"]["count"] == 1 and "quantity" in spans["quantity"]["meaning"]
    # 562 and 925 are one concept (both "number two"); two fixes where the null fixes 0 of 8
    assert summary["concepts_tested"] == 1
    [concept] = summary["concepts"]
    assert concept["latents"] == [562, 925] and concept["beats_null"]
    assert concept["fix"]["count"] == 2 and concept["fix"]["of"] == 2
    assert concept["fix"]["null_rate"] == pytest.approx(0.5 / 9, abs=1e-4)
    assert [c["feature"] for c in concept["cards"]] == [562]  # 925 is generic (dense)
    assert summarize(items, features)["concepts"] == []  # no basis, no concepts
    # the generic latent never recurs, with a basis that knows it
    recurring = {f["feature"] for f in summarize(items, features, basis)["recurring_features"]}
    assert GENERIC not in recurring
    text = format_summary(summary)
    first, spans_at, concepts_at = (
        text.index("first errors"), text.index("responsible spans"), text.index("concepts whose")
    )  # fmt: skip
    assert first < spans_at < concepts_at
    assert "calculation slip" in text and "e.g. wrote '3 x 4 = 13', should be '3 x 4 = 12'" in text
    assert "fixed 2 of 2 (null expects 0.1)" in text
    card = basis.card_of(562)
    assert card.contexts[0].marked() in text  # the card's strongest context, peak marked


def test_the_summary_says_so_when_nothing_beats_the_null(basis):
    items, features = _frames()
    items["null_fixed"], items["null_flipped"] = [4, 4, None], [5, 5, None]
    summary = summarize(items, features, basis)
    assert summary["concepts"] == [] and summary["concepts_tested"] == 1
    text = format_summary(summary)
    assert "no recurring concept beats the selection-matched null (1 tested)" in text
