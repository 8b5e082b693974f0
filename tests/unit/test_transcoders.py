"""Per-layer transcoders on the tiny random Llama: training, the exported units, circuit-tracer's
format, and resuming an interrupted run."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml

from diagnostics.sae import checkpoint
from diagnostics.transcoders.config import TranscoderTrainConfig
from diagnostics.transcoders.evaluate import (
    evaluate_layers,
    evaluate_replacement,
    heldout_windows,
    transcode,
)
from diagnostics.transcoders.io import load_layer, load_transcoder_set, read_config, round_weights
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs
from diagnostics.transcoders.trainer import train_transcoders
from diagnostics.transcoders.training_transcoder import TrainingTranscoder
from tests.conftest import WORDS, make_tiny_lm


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    with path.open("w") as fh:
        for _ in range(600):
            words = " ".join(rng.choice(WORDS[:40]) for _ in range(60))
            fh.write(json.dumps({"text": words}) + "\n")
    return str(path)


def tiny_config(corpus: str, out_dir, **overrides) -> TranscoderTrainConfig:
    base = dict(
        sources=[corpus],
        out_dir=str(out_dir),
        d_transcoder=64,
        k=4,
        batch_size=128,
        max_tokens=128 * 40,
        ctx_len=32,
        windows_per_forward=8,
        model_dtype="float32",
        dead_after_tokens=2_000,
        threshold_tokens=512,
        warmup_steps=5,
        checkpoint_every_s=1e9,
    )
    return TranscoderTrainConfig(**(base | overrides))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    lm = make_tiny_lm(n_layers=4)
    out = tmp_path_factory.mktemp("tc")
    return lm, train_transcoders(tiny_config(corpus, out), lm, progress=False)


def test_every_layer_learns_its_mlp_and_the_set_is_saved(trained, corpus):
    lm, result = trained
    assert [r.layer for r in result.layers] == [0, 1, 2, 3]
    assert result.set_dir is not None
    windows = heldout_windows(lm, [corpus], 2_000, ctx_len=32)
    evals = evaluate_layers(lm, result.tensors, windows)
    # a random transcoder explains nothing (EV <= 0); these are trained on the same kind of text
    assert min(e.explained_variance for e in evals) > 0.5
    assert all(2 <= e.l0 <= 8 for e in evals)  # BatchTopK k=4, saved as JumpReLU calibrated to k


def test_exported_units_reproduce_the_training_space_prediction():
    gen = torch.Generator().manual_seed(0)
    tc = TrainingTranscoder(16, 32, skip=True, generator=gen)
    with torch.no_grad():
        for p in tc.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        tc.x_mean.copy_(torch.randn(16, generator=gen))
    s_in, s_out, threshold = 2.5, 0.4, 0.05
    x = torch.randn(10, 16, generator=gen)  # original units
    xs = x * s_in
    pre = (xs - tc.x_mean) @ tc.W_enc_t.T + tc.b_enc
    f = pre * (pre > threshold)
    y_scaled = f @ tc.W_dec + tc.b_dec + xs @ tc.W_skip.T
    exported = tc.export(scale_in=s_in, scale_out=s_out, threshold=threshold)
    torch.testing.assert_close(transcode(exported, x) * s_out, y_scaled, atol=1e-5, rtol=1e-5)


def test_the_set_is_circuit_tracers_format_and_it_loads_it(trained):
    lm, result = trained
    raw = yaml.safe_load((result.set_dir / "config.yaml").read_text())
    assert raw["model_kind"] == "transcoder_set"
    assert (raw["feature_input_hook"], raw["feature_output_hook"]) == (
        "mlp.hook_in",
        "mlp.hook_out",
    )
    assert raw["transcoders"] == [f"layer_{i}.safetensors" for i in range(4)]  # relative paths
    assert all(
        p.startswith(str(result.set_dir.resolve()))
        for p in read_config(result.set_dir)["transcoders"]
    )
    tc_set = load_transcoder_set(result.set_dir)
    assert tc_set.n_layers == 4 and tc_set.skip_connection
    x = torch.randn(5, lm.d_model)
    for layer in range(4):
        ours = load_layer(result.set_dir, layer)
        # circuit-tracer's own forward on the saved file agrees with ours (fp16 weights)
        torch.testing.assert_close(tc_set[layer](x), transcode(ours, x), atol=1e-4, rtol=1e-4)
        for key, value in result.tensors[layer].items():  # and the file holds what was trained
            torch.testing.assert_close(ours[key], value, atol=2e-3, rtol=2e-3)


def test_replacement_scores_are_the_models_own_cross_entropy(trained, corpus):
    lm, result = trained
    windows = heldout_windows(lm, [corpus], 1_000, ctx_len=32)
    nothing = evaluate_replacement(lm, {}, windows)
    assert nothing.next_token_agreement == 1.0 and nothing.ce_increase == pytest.approx(0, abs=1e-6)
    # the clean cross-entropy is the model's own loss on the same windows (BOS is never a target)
    with torch.no_grad():
        total = sum(
            float(lm.model(input_ids=torch.tensor([w]), labels=torch.tensor([w])).loss)
            * (len(w) - 1)
            for w in windows
        )
    assert nothing.ce_clean == pytest.approx(total / nothing.n_tokens, rel=1e-4)
    replaced = evaluate_replacement(lm, result.tensors, windows)
    assert replaced.n_tokens == nothing.n_tokens
    assert replaced.ce_clean == pytest.approx(nothing.ce_clean, rel=1e-6)
    assert replaced.ce_replaced != pytest.approx(replaced.ce_clean, rel=1e-6)


def test_mlp_capture_matches_the_models_own_mlp():
    lm = make_tiny_lm(n_layers=3)
    ids = torch.tensor([[0, 5, 6, 7, 8, 9]])
    xs, ys = mlp_inputs_outputs(lm, ids, [0, 2])  # [2, 1, 6, d]
    for i, layer in enumerate([0, 2]):
        torch.testing.assert_close(lm.decoder_layers[layer].mlp(xs[i]), ys[i])


def test_an_interrupted_run_resumes_where_it_stopped(corpus, tmp_path, monkeypatch):
    lm = make_tiny_lm(n_layers=2)
    straight = train_transcoders(
        tiny_config(corpus, tmp_path / "a", max_tokens=128 * 12), lm, progress=False
    )

    saves = {"n": 0}
    real_save = checkpoint.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves["n"] += 1
        if saves["n"] == 5:
            raise KeyboardInterrupt

    cfg = tiny_config(corpus, tmp_path / "b", max_tokens=128 * 12, checkpoint_every_s=0.0)
    monkeypatch.setattr("diagnostics.transcoders.trainer.save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_transcoders(cfg, lm, progress=False)
    state = json.loads((tmp_path / "b/checkpoint/state.json").read_text())
    assert state["step"] == 5 and state["windows_done"] > 0
    monkeypatch.setattr("diagnostics.transcoders.trainer.save_checkpoint", real_save)
    resumed = train_transcoders(cfg, lm, progress=False)
    for layer in (0, 1):
        for key, value in straight.tensors[layer].items():
            torch.testing.assert_close(resumed.tensors[layer][key], value)


def test_stored_weights_keep_pre_activations_when_the_mlp_input_has_a_large_mean():
    gen = torch.Generator().manual_seed(1)
    d, n = 64, 128
    mean = 40 * torch.randn(d, generator=gen)  # a late layer's MLP input: a large constant part
    x = mean + 0.5 * torch.randn(200, d, generator=gen)  # [200, d]
    w_enc = 10 * torch.randn(n, d, generator=gen)  # folded input scales make encoders large
    w_skip = 3 * torch.randn(d, d, generator=gen)
    tensors = {
        "W_enc": w_enc,
        "W_dec": torch.randn(n, d, generator=gen),
        "b_enc": -(w_enc @ mean),  # the folded centring: x W^T + b = W (x - m)
        "b_dec": -(w_skip @ mean),
        "activation_function.threshold": torch.full((n,), 0.5),
        "W_skip": w_skip,
    }
    exact = x @ w_enc.T + tensors["b_enc"]
    naive = round_weights(tensors, torch.float16, None)
    stored = round_weights(tensors, torch.float16, mean)
    assert stored["W_enc"].dtype == torch.float16 and stored["b_enc"].dtype == torch.float32

    def pre(t):
        return x @ t["W_enc"].float().T + t["b_enc"]

    # rounding the weights alone shifts pre-activations by (W16 - W) m; the biases absorb it
    naive_err = (pre(naive) - exact).abs().max()
    stored_err = (pre(stored) - exact).abs().max()
    assert stored_err < naive_err / 4
    skip_exact = x @ w_skip.T + tensors["b_dec"]
    skip_stored = x @ stored["W_skip"].float().T + stored["b_dec"]
    skip_naive = x @ naive["W_skip"].float().T + naive["b_dec"]
    assert (skip_stored - skip_exact).abs().max() < (skip_naive - skip_exact).abs().max() / 4


def test_the_skip_term_starts_at_the_least_squares_fit():
    """init_from puts the linear part of the MLP in W_skip before any step: on a target that is
    linear in the input, the untrained transcoder's offset alone already explains it."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=gen) + 3.0  # a large mean input, as late layers have
    a, c = torch.randn(16, 16, generator=gen), torch.randn(16, generator=gen)
    y = x @ a + c
    tc = TrainingTranscoder(16, 32, skip=True, generator=gen)
    tc.init_from(x, y, ridge=1e-6)
    with torch.no_grad():
        fvu = (tc._offset(x) - y).pow(2).sum(-1).mean() / (y - y.mean(0)).pow(2).sum(-1).mean()
    assert fvu < 1e-4
