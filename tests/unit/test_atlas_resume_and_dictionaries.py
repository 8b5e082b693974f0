"""An atlas build that is stopped resumes to the same atlas; feature cards; the same pipeline
describes the features of a transcoder layer (tiny Llama, a few thousand tokens)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diagnostics.atlas import build_atlas
from diagnostics.atlas.checkpoint import BuildCheckpoint, CheckpointMismatch
from diagnostics.atlas.dictionary import encoder_inputs, transcoder_layer
from diagnostics.atlas.store import U16_PAD
from diagnostics.atlas.token_change import LayerTail, context_state, token_change
from diagnostics.hooks import residuals_at
from diagnostics.sae.harvest import token_windows
from diagnostics.transcoders.io import save_transcoder_set
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs
from tests.unit.test_atlas_build import (  # noqa: F401  (fixture)
    CTX_LEN,
    DENSE_LATENT,
    GATE_LATENT,
    make_corpus,
    planted,
)

BUILD = dict(
    max_tokens=8_000,
    ctx_len=CTX_LEN,
    batch_size=8,
    n_contexts=8,
    score_context_len=8,
    progress=False,
)  # fmt: skip  (the planted fixture's settings)


def test_a_card_shows_the_description_the_strongest_contexts_and_the_score(planted):  # noqa: F811
    _, _, _, atlas = planted
    card = atlas.card(GATE_LATENT)
    assert card.description == '"gate"' and card.label_score > 0.95 and not card.generic
    assert 1 <= len(card.contexts) <= 3
    assert all(c.peak == "gate" and "[[gate]]" in c.marked() for c in card.contexts)
    acts = [c.activation for c in card.contexts]
    assert acts == sorted(acts, reverse=True)
    # they are the strongest on the scoring split (no label was written from it): brute force
    assert card.contexts_held_out
    lm, sae = planted[0], planted[1]
    peak = 0.0
    for row in atlas.arrays["score_windows"]:
        ids = torch.tensor([[int(t) for t in row if t != U16_PAD]])
        f = sae.encode(residuals_at(lm, ids, sae.cfg.hook_layer))[0, 1:, GATE_LATENT]
        peak = max(peak, float(f.max()))
    assert acts[0] == pytest.approx(peak, rel=1e-3) and peak <= atlas.max_activation[GATE_LATENT]
    lines = card.lines()
    assert lines[0] == f"#{GATE_LATENT} {atlas.label(GATE_LATENT)} [AUROC {card.label_score:.2f}]"
    assert len(lines) == 1 + len(card.contexts) and "[[gate]]" in lines[1]
    dense = atlas.card(DENSE_LATENT)
    assert dense.generic and dense.generic_reason.startswith("dense")


def _stopping(docs: list[str], n: int):
    for k, doc in enumerate(docs):
        if k == n:
            raise KeyboardInterrupt  # what a stopped build sees
        yield doc


def test_a_stopped_build_resumes_to_the_same_atlas(planted, tmp_path):  # noqa: F811
    lm, sae, docs, atlas = planted
    kw = BUILD | {"checkpoint_dir": tmp_path / "ck", "checkpoint_every": 2}
    with pytest.raises(KeyboardInterrupt):
        build_atlas(lm, sae, _stopping(docs, 60), **kw)
    saved = torch.load(tmp_path / "ck" / "pass.pt", weights_only=False)
    assert saved["n_batches"] >= 2 and not saved["done"]
    assert 0 < saved["accs"][0].n_tokens < atlas.n_tokens
    resumed = build_atlas(lm, sae, docs, **kw)
    assert sorted(resumed.arrays) == sorted(atlas.arrays)
    for key, value in atlas.arrays.items():
        np.testing.assert_array_equal(resumed.arrays[key], value, err_msg=key)
    assert resumed.labels == atlas.labels and resumed.n_tokens == atlas.n_tokens
    assert (tmp_path / "ck" / "token_change").is_dir()  # the output test saved its blocks
    # the finished pass is read back, not run again: a planted count shows up in the atlas
    saved = torch.load(tmp_path / "ck" / "pass.pt", weights_only=False)
    assert saved["done"]
    saved["accs"][0].count[GATE_LATENT] += 1000
    torch.save(saved, tmp_path / "ck" / "pass.pt")
    again = build_atlas(lm, sae, docs, **kw)
    assert again.arrays["count"][GATE_LATENT] == atlas.arrays["count"][GATE_LATENT] + 1000
    with pytest.raises(CheckpointMismatch, match="ctx_len"):
        build_atlas(lm, sae, docs, **kw | {"ctx_len": 32})


def test_the_output_test_runs_only_the_blocks_a_checkpoint_lacks(planted, tmp_path):  # noqa: F811
    lm, sae, docs, atlas = planted
    windows = [w for w in token_windows(lm.tokenizer, docs, CTX_LEN) if len(w) > 20][:3]
    contexts = [w[:20] for w in windows]
    clamp = atlas.max_activation * 2
    plain = token_change(lm, sae, contexts, clamp, block=16, n_null=20, progress=False)
    ck = BuildCheckpoint(tmp_path / "ck", {"test": 1})
    first = token_change(
        lm, sae, contexts, clamp, block=16, n_null=20, progress=False, checkpoint=ck
    )
    blocks = sorted(p.name for p in (tmp_path / "ck" / "token_change").iterdir())
    assert "latents_0.pt" in blocks and "latents_16.pt" in blocks and "null_0.pt" in blocks
    (tmp_path / "ck" / "token_change" / "latents_16.pt").unlink()
    # a saved block is read back, not run: poison it and the result carries the poison
    ids, vals = ck.load_block("latents_0")
    ck.save_block("latents_0", (ids, vals + 1.0))
    again = token_change(
        lm, sae, contexts, clamp, block=16, n_null=20, progress=False, checkpoint=ck
    )
    assert ck.has_block("latents_16")
    np.testing.assert_array_equal(first.lifts, plain.lifts)
    np.testing.assert_array_equal(first.null_max_lifts, plain.null_max_lifts)
    np.testing.assert_array_equal(again.lifts[:16], plain.lifts[:16] + 1.0)
    np.testing.assert_array_equal(again.lifts[16:], plain.lifts[16:])


def _random_transcoders(lm, docs: list[str], directory, d_tc: int = 24) -> None:
    """A random transcoder per layer, biases set so each feature fires on ~10% of tokens."""
    windows = [w for w in token_windows(lm.tokenizer, docs, 32) if len(w) == 32][:20]
    n_layers = len(lm.decoder_layers)
    ins, _ = mlp_inputs_outputs(lm, torch.tensor(windows), list(range(n_layers)))
    gen = torch.Generator().manual_seed(0)
    layers = {}
    for layer in range(n_layers):
        x = ins[layer, :, 1:].reshape(-1, lm.d_model).float()  # [n, d_model]
        w_enc = torch.randn(d_tc, lm.d_model, generator=gen)
        pre = x @ w_enc.T  # [n, d_tc]
        w_dec = torch.randn(d_tc, lm.d_model, generator=gen)
        layers[layer] = {
            "W_enc": w_enc,
            "W_dec": w_dec / w_dec.norm(dim=1, keepdim=True),
            "b_enc": -pre.quantile(0.9, dim=0),
            "b_dec": torch.zeros(lm.d_model),
            "activation_function.threshold": torch.full((d_tc,), 1e-4),
        }
    save_transcoder_set(layers, directory, scan="test", dtype="float32")


def test_the_atlas_describes_a_transcoder_layer(planted, tmp_path):  # noqa: F811
    lm, _, docs, _ = planted
    _random_transcoders(lm, docs, tmp_path / "tc")
    layer = 2
    tc = transcoder_layer(tmp_path / "tc", layer)
    assert tc.cfg.hook_layer == layer and tc.cfg.d_sae == 24
    atlas = build_atlas(
        lm, tc, make_corpus(60, seed=1), **BUILD | {"max_tokens": 3_000, "output_contexts": 4}
    )
    # the statistics are those of the encoder on the MLP input of the layer
    windows = list(token_windows(lm.tokenizer, make_corpus(60, seed=1), CTX_LEN))
    special = torch.tensor(lm.tokenizer.all_special_ids)
    feats, total = [], 0
    for w in windows:
        ids = torch.tensor([w])
        x, _ = mlp_inputs_outputs(lm, ids, [layer])
        f = tc.encode(x[0, 0])[~torch.isin(ids[0], special)]  # [text tokens, d_tc]
        feats.append(f)
        total += len(f)
        if total >= atlas.n_tokens:
            break
    f = torch.cat(feats)
    x, _ = mlp_inputs_outputs(lm, torch.tensor([windows[0]]), [layer])
    torch.testing.assert_close(encoder_inputs(lm, [tc], torch.tensor([windows[0]]))[0], x[0])
    np.testing.assert_allclose(atlas.density, (f > 0).float().mean(0).numpy(), rtol=1e-6)
    assert 0.03 < float(atlas.density.mean()) < 0.3
    assert atlas.meta.output_test["n_contexts"] == 4
    # the output test encodes the MLP input at the edited position, not the residual
    tail = LayerTail(lm, layer)
    state = context_state(lm, tc, tail, windows[0][:20])
    x, _ = mlp_inputs_outputs(lm, torch.tensor([windows[0][:20]]), [layer])
    torch.testing.assert_close(state.features, tc.encode(x[0, 0, -1].float()[None])[0])
