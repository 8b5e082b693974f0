"""Feature atlas on the real SmolLM2-135M-Instruct: a short build, and the shipped atlas if any."""

from __future__ import annotations

import pytest
import torch

from diagnostics.atlas import FeatureAtlas, build_atlas, search_text
from diagnostics.documents import iter_documents
from diagnostics.sae.io import default_sae_dir
from diagnostics.steering import concept_probability
from tests.conftest import make_random_sae

GSM8K_TEST = "/work/shared/datasets/gsm8k/test.jsonl"


def test_short_build_on_the_real_model(bundled_lm, tmp_path):
    lm = bundled_lm
    sae = make_random_sae(lm.d_model, 256, layer=lm.default_layer, seed=0)
    try:
        docs = iter_documents(GSM8K_TEST, "all")
    except FileNotFoundError:
        pytest.skip("GSM8K test file not present")
    atlas = build_atlas(lm, sae, docs, max_tokens=1500, batch_size=8, ctx_len=128, progress=False)
    atlas.save(tmp_path)
    loaded = FeatureAtlas.load(tmp_path)
    live = [i for i in range(256) if loaded.live[i]]
    assert live and loaded.n_tokens >= 1500
    entry = loaded.entry(live[0])
    assert entry.top_contexts and entry.top_contexts[0].tokens[entry.top_contexts[0].peak_index]
    assert len(entry.promoted_tokens) == 10 and entry.promoted_tokens[0].value > 0
    hits = search_text(lm, sae, "Janet sells eggs", versus="Tom buys apples", atlas=loaded, top=3)
    assert all(h.label is not None for h in hits)


def test_amplifying_a_token_direction_raises_its_probability(bundled_lm):
    lm = bundled_lm
    sae = make_random_sae(lm.d_model, 64, layer=lm.default_layer, seed=0)
    paris = lm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        w = lm.model.get_output_embeddings().weight[paris].float()
        sae.W_dec[3] = w / w.norm()
    # residual norms at layer 15 are ~175, so the clamp must be of that order to matter
    shift = concept_probability(lm, sae, "Name a city.", {3: 300.0}, [paris])
    assert shift.p_steered > 10 * shift.p_baseline


@pytest.fixture(scope="module")
def shipped():
    return FeatureAtlas.load(default_sae_dir())


def test_shipped_atlas_covers_all_live_latents(shipped):
    atlas = shipped
    assert atlas.n_tokens >= 1_000_000
    assert all(atlas.labels[i] != "(dead)" for i in range(atlas.d_sae) if atlas.live[i])
    s = atlas.meta.summary
    assert s["median_detection_auroc"] >= 0.75
    assert abs(s["median_random_label_auroc"] - 0.5) < 0.1


@pytest.mark.parametrize(
    "text, versus, word",
    [
        ("It started to snow heavily", "It started to rain heavily", "snow"),
        ("The cat chased the mouse", "The dog chased the ball", "cat"),
        ("She multiplied 7 by 8", "She added 7 and 8", "*"),
    ],
)
def test_contrastive_search_finds_the_concept_and_its_label(
    bundled_lm, shipped, text, versus, word
):
    from diagnostics.sae import load_sae

    hits = search_text(bundled_lm, load_sae("default"), text, versus=versus, atlas=shipped, top=3)
    assert any(word in (h.label or "") for h in hits), [h.label for h in hits]
    assert all(h.versus_activation is not None and h.activation > h.versus_activation for h in hits)


def test_amplifying_the_shipped_cat_latent_makes_cats_likelier(bundled_lm, shipped):
    from diagnostics.sae import load_sae
    from diagnostics.steering import steer

    result = steer(
        bundled_lm, load_sae("default"), "Tell me a short story about an animal.", {510: 2.0},
        shipped, max_new_tokens=20, concept=["cat", "cats", "kitten"],
    )  # fmt: skip
    assert "cat" in shipped.label(510)
    assert result.concept.ratio > 2 and "cat" in result.steered_text.lower()
