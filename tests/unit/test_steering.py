"""Steering by clamping SAE features (error term kept) on the tiny model."""

from __future__ import annotations

import pytest
import torch

from diagnostics.atlas.logit_effects import final_norm, unembedding
from diagnostics.splice import splice_sae
from diagnostics.steering import clamp_values, concept_probability, concept_token_ids, steer
from tests.conftest import make_random_sae, make_tiny_lm

LATENT = 5


@pytest.fixture(scope="module")
def lm_and_sae():
    lm = make_tiny_lm()
    sae = make_random_sae(lm.d_model, 32, layer=lm.default_layer, seed=3)
    with torch.no_grad():
        # a random init gives near-flat logits (p(token) can move <2x); sharpen the unembedding
        lm.model.get_output_embeddings().weight.mul_(20)
        apples = lm.tokenizer.convert_tokens_to_ids("apples")
        w = unembedding(lm.model)[apples] / final_norm(lm.model).weight
        sae.W_dec[LATENT] = w / w.norm()
    return lm, sae


def test_amplifying_a_feature_raises_the_probability_of_its_token(lm_and_sae):
    lm, sae = lm_and_sae
    shift = concept_probability(lm, sae, "how many clips did she sell", {LATENT: 8.0}, ["apples"])
    assert shift.token_ids == [lm.tokenizer.convert_tokens_to_ids("apples")]
    assert shift.p_steered > 5 * shift.p_baseline and shift.ratio > 5
    down = concept_probability(lm, sae, "how many clips did she sell", {LATENT: -8.0}, ["apples"])
    assert down.p_steered < down.p_baseline


def test_steer_returns_both_generations_and_keeps_the_model_without_edit(lm_and_sae):
    lm, sae = lm_and_sae
    result = steer(lm, sae, "how many apples", {LATENT: 8.0}, None, max_new_tokens=6)
    baseline = lm.generate("how many apples", max_new_tokens=6)
    assert result.baseline_text == baseline.text
    assert result.steered_ids != result.baseline_ids
    assert "apples" in result.steered_text
    assert result.values == {LATENT: 8.0}
    # the concept shift is read along the whole unsteered output, teacher-forced
    with_concept = steer(
        lm, sae, "how many apples", {LATENT: 8.0}, None, max_new_tokens=6, concept=["apples"]
    )
    assert with_concept.concept.positions == len(with_concept.baseline_ids)
    assert with_concept.concept.p_steered > with_concept.concept.p_baseline
    # clamping a latent to the value it already has (0: it is silent on the whole baseline
    # sequence) changes nothing
    seq = torch.cat([lm.prompt_ids("how many apples"), torch.tensor(result.baseline_ids)])
    with torch.no_grad(), splice_sae(lm, sae) as rec:
        lm.model(seq[None])
    quiet = int(torch.nonzero(rec.features[0].amax(0) <= 0)[0])  # first latent silent throughout
    silent = steer(lm, sae, "how many apples", {quiet: 0.0}, None, max_new_tokens=6)
    assert silent.values == {quiet: 0.0} and silent.steered_ids == silent.baseline_ids


def test_clamp_values_use_atlas_max_activation_and_check_range(lm_and_sae):
    _, sae = lm_and_sae

    class FakeAtlas:  # only max_activation is read
        max_activation = torch.arange(32).float().numpy()

    assert clamp_values({4: 2.5}, FakeAtlas(), 32) == {4: 10.0}
    with pytest.raises(ValueError, match="out of range"):
        clamp_values({99: 1.0}, None, 32)


def test_concept_token_ids_cover_word_variants(lm_and_sae):
    lm, _ = lm_and_sae
    tokens, ids = concept_token_ids(lm.tokenizer, ["Bridge", 7])
    assert lm.tokenizer.convert_tokens_to_ids("bridge") in ids and 7 in ids
