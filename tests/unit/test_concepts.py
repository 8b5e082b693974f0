"""Flagged latents grouped into concepts, on the shipped SAE's decoder rows and atlas."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cli.audit import format_summary
from diagnostics.atlas import FeatureAtlas
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
    concepts = audit_concepts(failures, basis, min_failures=2)
    by_latents = {tuple(c.latents): c for c in concepts}
    assert set(by_latents) == {(562, 925), (4025, 8160), (generic,)}  # 336 is in one failure
    two = by_latents[(562, 925)]
    assert two.failures == 3 and two.concept == basis.descriptions[562]  # flagged twice
    assert two.flagged_fix_rate == pytest.approx(1 / 2) and two.verified == 2
    assert two.null_fix_rate == pytest.approx(0.75 / 3) and two.with_null == 3
    slip = two.by_kind["calculation_slip"]
    assert (slip.failures, slip.flagged_fix_rate, slip.null_fix_rate) == (2, 0.5, 0.125)
    misread = two.by_kind["misread_number"]
    assert (misread.failures, misread.flagged_fix_rate, misread.null_fix_rate) == (1, None, 0.5)
    assert by_latents[(generic,)].generic and by_latents[(generic,)].generic_latents == [generic]
    assert not two.generic
    assert concepts[0] is two  # most failures first


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        (0, "a", "done", None, "r0", False, "calculation_slip", True, True, 0.0, 0.2, 2),
        (1, "b", "done", None, "r1", False, "calculation_slip", True, False, 0.0, 0.0, 1),
        (2, "c", "done", None, "r2", True, "none", True, None, None, None, 0),
    ]
    items = pd.DataFrame(
        [r + ("p", "1", "2", "v") for r in rows], columns=ITEM_COLUMNS
    )  # fmt: skip
    features = pd.DataFrame(
        {
            "report_id": ["r0", "r0", "r1"],
            "feature_id": [562, 4025, 925],
            "rank": [0, 1, 0],
            "label": ["two", "four", "two"],
            "attribution": [-1.0, -0.5, -2.0],
            "ablation_effect": [0.5, 0.1, 0.2],
        }
    )
    return items, features


def test_the_audit_summary_carries_concepts_and_the_cli_prints_them(basis):
    items, features = _frames()
    summary = summarize(items, features, basis)
    assert summary["null_fix_rate"] == pytest.approx(0.1)
    [concept] = summary["concepts"]  # 4025 is flagged once: not recurring
    assert concept["latents"] == [562, 925] and concept["failures"] == 2
    assert concept["by_kind"] == {
        "calculation_slip": {
            "failures": 2, "flagged_fix_rate": 0.5, "null_fix_rate": pytest.approx(0.1),
            "verified": 2, "with_null": 2,
        }
    }  # fmt: skip
    assert summarize(items, features)["concepts"] == []  # no basis, no concepts
    text = format_summary(summary)
    assert "concepts recurring across failures" in text
    assert f"{concept['concept']}: 2 latents (#562, #925), in 2 failures" in text
    assert "calculation_slip 2: 50.0% vs 10.0%" in text
