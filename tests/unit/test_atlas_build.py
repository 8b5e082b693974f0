"""Feature atlas build on the tiny model: statistics, planted features, storage."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from diagnostics.atlas import ATLAS_VERSION, AtlasError, FeatureAtlas, build_atlas
from diagnostics.atlas.logit_effects import final_norm, unembedding
from diagnostics.hooks import residuals_at
from diagnostics.sae.harvest import token_windows
from tests.conftest import WORDS, make_random_sae, make_tiny_lm

GATE_LATENT = 7  # planted: fires on the token "gate"
DENSE_LATENT = 3  # calibrated to fire on about half of the tokens
PROMOTE_LATENT = 11  # decoder set to promote the token "apples"
D_SAE = 48
CTX_LEN = 64
_PHRASES = (("the", "golden", "gate", "bridge"), ("the", "sydney", "harbour", "bridge"))


def make_corpus(n_docs: int = 240, seed: int = 0) -> list[str]:
    """Random word documents with "golden gate bridge" / "sydney harbour bridge" phrases."""
    rng = random.Random(seed)
    plain = [w for w in WORDS if w not in {"bridge", "golden", "gate", "sydney", "harbour"}]
    docs = []
    for _ in range(n_docs):
        words: list[str] = []
        while len(words) < 50:
            r = rng.random()
            words += list(_PHRASES[0] if r < 0.04 else _PHRASES[1] if r < 0.08 else [])
            words += [] if r < 0.08 else [rng.choice(plain)]
        docs.append(" ".join(words))
    return docs


def _text_residuals(lm, sae, docs: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals minus b_dec [n, d] and token ids [n] of the text tokens of some windows."""
    windows = [w for w in token_windows(lm.tokenizer, docs, 32) if len(w) == 32]
    ids = torch.tensor(windows[:40])
    x = residuals_at(lm, ids, sae.cfg.hook_layer)[:, 1:]
    return (x - sae.b_dec).reshape(-1, x.shape[-1]), ids[:, 1:].reshape(-1)


def make_planted_sae(lm, docs: list[str]):
    """A random JumpReLU SAE, thresholds calibrated to ~7% density, with planted latents."""
    sae = make_random_sae(lm.d_model, D_SAE, layer=lm.default_layer, seed=1)
    x, ids = _text_residuals(lm, sae, docs)
    with torch.no_grad():
        pre = sae.pre_acts(x + sae.b_dec)  # [n, d_sae]
        level = torch.full((D_SAE,), 0.93)
        level[DENSE_LATENT] = 0.5
        cut = torch.stack([pre[:, j].quantile(float(level[j])) for j in range(D_SAE)])
        sae.b_enc -= cut  # pre-activation positive exactly on the top (1 - level) tokens
        sae.threshold.fill_(1e-4)
        # GATE_LATENT: encoder along the mean residual of "gate" minus the rest, threshold between
        gate = lm.tokenizer.convert_tokens_to_ids("gate")
        on, off = x[ids == gate], x[ids != gate]
        direction = on.mean(0) - off.mean(0)
        direction /= direction.norm()
        lo, hi = float((on @ direction).min()), float((off @ direction).max())
        assert lo > hi, "the tiny model should separate the token 'gate'"
        mid, scale = (lo + hi) / 2, 3.0 / float((on @ direction).mean() - (lo + hi) / 2)
        sae.W_enc[:, GATE_LATENT] = direction * scale
        sae.b_enc[GATE_LATENT] = 1.0 - mid * scale
        sae.threshold[GATE_LATENT] = 1.0
        sae.W_dec[GATE_LATENT] = direction
        # PROMOTE_LATENT: decoder along the unembedding of "apples" (undoing the norm weight)
        apples = lm.tokenizer.convert_tokens_to_ids("apples")
        w = unembedding(lm.model)[apples] / final_norm(lm.model).weight
        sae.W_dec[PROMOTE_LATENT] = w / w.norm()
    return sae


@pytest.fixture(scope="module")
def planted():
    lm = make_tiny_lm()
    docs = make_corpus()
    sae = make_planted_sae(lm, docs)
    atlas = build_atlas(
        lm,
        sae,
        docs,
        max_tokens=8_000,
        ctx_len=CTX_LEN,
        batch_size=8,
        n_contexts=8,
        score_context_len=8,
        progress=False,
    )
    return lm, sae, docs, atlas


def test_statistics_match_a_brute_force_pass(planted):
    lm, sae, docs, atlas = planted
    special = torch.tensor(lm.tokenizer.all_special_ids)
    feats, total = [], 0
    for w in token_windows(lm.tokenizer, docs, CTX_LEN):
        ids = torch.tensor([w])
        f = sae.encode(residuals_at(lm, ids, sae.cfg.hook_layer))[0]  # [s, d_sae]
        f = f[~torch.isin(ids[0], special)]
        feats.append(f)
        total += len(f)
        if total >= atlas.n_tokens:
            break
    f = torch.cat(feats)  # [n_tokens, d_sae]
    assert len(f) == atlas.n_tokens
    count = (f > 0).sum(0).numpy()
    np.testing.assert_allclose(atlas.density, count / len(f), rtol=1e-6)
    np.testing.assert_allclose(atlas.max_activation, f.max(0).values.numpy(), rtol=1e-5)
    mean = (f.sum(0) / (f > 0).sum(0).clamp(min=1)).numpy()
    np.testing.assert_allclose(atlas.mean_activation, mean, rtol=1e-4)
    # histogram quantiles: within a bin (~15%) of the exact median of firing activations
    i = GATE_LATENT
    exact = f[f[:, i] > 0, i].median().item()
    assert atlas.entry(i).quantiles["q0.5"] == pytest.approx(exact, rel=0.2)


def test_planted_token_feature_contexts_label_and_score(planted):
    _, _, _, atlas = planted
    e = atlas.entry(GATE_LATENT)
    assert len(e.top_contexts) == 8
    assert all(c.tokens[c.peak_index] == "gate" for c in e.top_contexts)
    acts = [c.activation for c in e.top_contexts]
    assert acts == sorted(acts, reverse=True) and acts[0] == pytest.approx(e.max_activation)
    assert e.top_contexts[0].token_activations[e.top_contexts[0].peak_index] == pytest.approx(
        acts[0], rel=1e-2
    )
    assert e.rule.tokens == ["gate"] and e.description == '"gate"'
    assert e.label.startswith(e.description) and e.label_source == "ngram"
    assert e.rule_text == '"gate"' and e.peaks_on_rule == 1.0
    assert e.description_auroc is not None and e.description_auroc > 0.95
    assert e.is_unigram and not e.is_dense and not e.is_generic and e.generic_reason == ""
    assert e.detection_auroc is not None and e.detection_auroc > 0.95
    assert e.n_positive_contexts >= 5 and e.n_negative_contexts >= 20
    assert atlas.search_label("gate")[0] == GATE_LATENT


def test_dense_flag_logit_effects_and_summary(planted):
    lm, sae, _, atlas = planted
    assert atlas.entry(DENSE_LATENT).is_dense
    assert atlas.is_dense.sum() >= 1
    entry = atlas.entry(PROMOTE_LATENT)
    promoted, suppressed = entry.promoted_tokens, entry.suppressed_tokens
    assert promoted[0].token == "apples"
    # the whole ranking, both ways, against the logit effect computed here (specials left out)
    with torch.no_grad():
        effect = (sae.W_dec[PROMOTE_LATENT] * final_norm(lm.model).weight) @ unembedding(
            lm.model
        ).T  # [vocab]
    effect[lm.tokenizer.all_special_ids] = torch.nan
    order = [i for i in torch.argsort(effect.nan_to_num(-torch.inf), descending=True).tolist()]
    assert [t.token_id for t in promoted] == order[: len(promoted)]
    lowest = torch.argsort(effect.nan_to_num(torch.inf)).tolist()
    assert [t.token_id for t in suppressed] == lowest[: len(suppressed)]
    assert [t.value for t in promoted] == pytest.approx(
        effect[order[: len(promoted)]].tolist(), abs=1e-3
    )
    assert suppressed[0].value < 0
    assert atlas.is_generic(DENSE_LATENT) and atlas.generic_reason(DENSE_LATENT).startswith("dense")
    assert atlas.generic.sum() == atlas.meta.summary["n_generic"]
    s = atlas.meta.summary
    assert s["n_live"] == D_SAE and s["n_scored"] >= 5
    # random features with a random-label control: the control sits near chance
    assert 0.3 <= s["median_random_label_auroc"] <= 0.7
    assert s["median_detection_auroc"] > s["median_random_label_auroc"]


def test_save_load_round_trip_and_version_guard(planted, tmp_path):
    _, sae, _, atlas = planted
    atlas.save(tmp_path)
    loaded = FeatureAtlas.load(tmp_path)
    assert loaded.entry(GATE_LATENT) == atlas.entry(GATE_LATENT)
    assert loaded.label(GATE_LATENT) == atlas.label(GATE_LATENT)
    assert loaded.description(GATE_LATENT) == atlas.description(GATE_LATENT)
    assert loaded.output_effect(PROMOTE_LATENT) == atlas.output_effect(PROMOTE_LATENT)
    assert loaded.n_tokens == atlas.n_tokens and loaded.max_activation.shape == (D_SAE,)
    loaded.check_matches(sae)
    other = make_random_sae(sae.cfg.d_in, D_SAE, layer=sae.cfg.hook_layer, seed=5)
    with pytest.raises(AtlasError, match="another SAE"):
        loaded.check_matches(other)
    doc = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    doc["meta"]["version"] = ATLAS_VERSION + 1
    (tmp_path / "atlas" / "atlas.json").write_text(json.dumps(doc))
    with pytest.raises(AtlasError, match="rebuild"):
        FeatureAtlas.load(tmp_path)
    with pytest.raises(AtlasError, match="features build"):
        FeatureAtlas.load(tmp_path / "nowhere")


def test_a_report_names_the_atlas_it_used(planted):
    from diagnostics.diagnose import diagnose
    from diagnostics.options import DiagnosisOptions

    lm, sae, _, atlas = planted
    options = DiagnosisOptions(mode="exact", chat=False, max_new_tokens=2, verify=False)
    report = diagnose(lm, sae, "the golden gate", "bridge", atlas=atlas, options=options)
    assert report.identity.atlas_version == atlas.version
    assert atlas.version.startswith(f"v{ATLAS_VERSION} sae:")
