"""Feature atlas on the real SmolLM2-135M-Instruct: a short build, and the shipped atlas if any."""

from __future__ import annotations

import numpy as np
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
    atlas = build_atlas(
        lm, sae, docs, max_tokens=1500, batch_size=8, ctx_len=128, progress=False,
        output_contexts=2,
    )  # fmt: skip
    atlas.save(tmp_path)
    loaded = FeatureAtlas.load(tmp_path)
    live = [i for i in range(256) if loaded.live[i]]
    assert live and loaded.n_tokens >= 1500
    entry = loaded.entry(live[0])
    assert entry.top_contexts and entry.top_contexts[0].tokens[entry.top_contexts[0].peak_index]
    assert len(entry.promoted_tokens) == 10 and entry.promoted_tokens[0].value > 0
    assert entry.output is not None and entry.output.n_contexts == 2
    assert len(loaded.descriptions) == 256 and loaded.meta.output_test["n_contexts"] == 2
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
    assert atlas.n_tokens >= 300_000
    assert all(atlas.labels[i] != "(dead)" for i in range(atlas.d_sae) if atlas.live[i])
    s = atlas.meta.summary
    assert s["median_detection_auroc"] >= 0.75
    assert abs(s["median_random_label_auroc"] - 0.5) < 0.1


def test_shipped_descriptions_are_short_scored_and_findable(shipped):
    atlas = shipped
    s = atlas.meta.summary
    assert s["median_description_auroc"] >= 0.9  # issue 15: must stay >= 0.9
    assert abs(s["median_description_random_auroc"] - 0.5) < 0.1
    described = [i for i in range(atlas.d_sae) if atlas.description(i)]
    assert len(described) >= 0.5 * int(atlas.live.sum())
    assert max(len(atlas.description(i)) for i in described) < 200
    rng = np.random.default_rng(0)
    sample = rng.choice(described, 200, replace=False)
    found = [int(i) in atlas.search_label(atlas.description(int(i)))[:10] for i in sample]
    assert np.mean(found) >= 0.8


def test_generic_latents_and_the_causal_output_test_on_the_shipped_atlas(shipped):
    atlas = shipped
    densest = int(np.argmax(atlas.density))
    assert atlas.is_generic(densest) and atlas.generic_reason(densest).startswith("dense")
    assert 0 < atlas.meta.summary["n_generic"] < 0.5 * int(atlas.live.sum())
    described = [i for i in range(atlas.d_sae) if atlas.description(i)]
    assert any((atlas.entry(i).peaks_on_rule or 1) < 0.5 for i in described[:300])
    test = atlas.meta.output_test
    assert test["n_contexts"] >= 2 and test["alpha"] == 0.01
    causal = [i for i in range(atlas.d_sae) if atlas.output_effect(i)]
    assert causal and all(" → " in atlas.label(i) for i in causal)
    assert all(
        t.lift > atlas.output_test(i).threshold for i in causal for t in atlas.output_effect(i)
    )
    quiet = next(i for i in range(atlas.d_sae) if atlas.live[i] and not atlas.output_effect(i))
    assert " → " not in atlas.label(quiet)


def test_the_one_position_tail_matches_the_real_model(bundled_lm):
    from diagnostics.atlas.token_change import LayerTail, context_state
    from diagnostics.sae import load_sae

    lm, sae = bundled_lm, load_sae("default")
    tail = LayerTail(lm, sae.cfg.hook_layer)
    ids = lm.prompt_ids("Natalia sold clips to 48 of her friends in April", chat=False).tolist()
    state = context_state(lm, sae, tail, ids)
    with torch.no_grad():
        full = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0, -1].float()
    full[tail.special] = -torch.inf
    assert (state.probs - full.softmax(-1)).abs().max() < 1e-3


@pytest.mark.parametrize(
    "text, versus, word",
    [
        ("It started to snow heavily", "It started to rain heavily", "snow"),
        ("The cat chased the mouse", "The dog chased the ball", "cat"),
        # ("She multiplied 7 by 8", ..., "*") needs GSM8K text in the atlas: the 300k-token
        # shipped atlas has none (docs/atlas.md); put it back after the full rebuild
    ],
)
def test_contrastive_search_finds_the_concept_and_its_label(
    bundled_lm, shipped, text, versus, word
):
    from diagnostics.sae import load_sae

    hits = search_text(bundled_lm, load_sae("default"), text, versus=versus, atlas=shipped, top=3)
    shown = [(h.label or "") + " " + shipped.rule_text(h.id) for h in hits]
    assert any(word in text for text in shown), shown
    assert all(h.versus_activation is not None and h.activation > h.versus_activation for h in hits)


def test_amplifying_the_shipped_cat_latent_makes_cats_likelier(bundled_lm, shipped):
    from diagnostics.sae import load_sae
    from diagnostics.steering import steer

    result = steer(
        bundled_lm, load_sae("default"), "Tell me a short story about an animal.", {510: 2.0},
        shipped, max_new_tokens=20, concept=["cat", "cats", "kitten"],
    )  # fmt: skip
    assert "cat" in shipped.rule_text(510)
    assert result.concept.ratio > 2 and "cat" in result.steered_text.lower()
