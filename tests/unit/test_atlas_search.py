"""Feature search by text (contrastive) and by label keyword."""

from __future__ import annotations

import pytest

from diagnostics.atlas import search_text
from tests.unit.test_atlas_build import GATE_LATENT, planted  # noqa: F401  (fixture)


def test_contrastive_search_finds_the_planted_feature(planted):  # noqa: F811
    lm, sae, _, atlas = planted
    hits = search_text(
        lm, sae, "the golden gate bridge", versus="the sydney harbour bridge", atlas=atlas
    )
    # random latents may also differ (on "bridge" in this context); the planted one ranks high
    gate = next(h for h in hits[:3] if h.id == GATE_LATENT)
    assert gate.peak_token == "gate" and gate.versus_activation == 0.0 and gate.activation > 0
    assert gate.score == pytest.approx(
        gate.activation / float(atlas.max_activation[GATE_LATENT]), rel=1e-3
    )
    assert gate.label == atlas.label(GATE_LATENT) and gate.detection_auroc > 0.9
    assert all(h.score > 0 for h in hits)
    reverse = search_text(lm, sae, "the sydney harbour bridge", versus="the golden gate bridge")
    assert GATE_LATENT not in [h.id for h in reverse]


def test_search_without_atlas_ranks_raw_activation_differences(planted):  # noqa: F811
    lm, sae, _, _ = planted
    hits = search_text(lm, sae, "golden gate", top=5)
    assert len(hits) <= 5 and all(h.label is None for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert GATE_LATENT in [h.id for h in hits]


def test_label_keyword_search(planted):  # noqa: F811
    _, _, _, atlas = planted
    found = atlas.search_label("GATE")
    assert found[0] == GATE_LATENT
    assert all(
        "gate" in (atlas.label(i) + " ".join(atlas.rules[i]["tokens"])).lower() for i in found
    )
    assert atlas.search_label("no-such-word") == []
    # a latent's own description finds it first
    assert atlas.search_label(atlas.description(GATE_LATENT))[0] == GATE_LATENT
