"""The SAE trainer end to end on a tiny random model: sparse ops, training, resume, export, eval."""

import json

import pytest
import torch

from diagnostics.sae import load_sae
from diagnostics.sae.activation_cache import ActivationCache, ShuffleBuffer
from diagnostics.sae.evaluate import evaluate_sae, plot_log_density
from diagnostics.sae.harvest import harvest
from diagnostics.sae.sparse_ops import SparsePattern, sparse_decode, sparse_encode
from diagnostics.sae.trainer import train
from diagnostics.sae.training_config import TrainConfig
from diagnostics.sae.training_sae import TrainingSae

DOCS = [
    " ".join(f"what is {a} plus {b} ? the answer is {a + b} ." for a, b in [(i, i + 1), (2, i)])
    for i in range(60)
] + ["how many clips did she sell in april and may ? " * 3] * 20


def test_sparse_ops_match_dense_autograd():
    torch.manual_seed(0)
    R, L, d = 6, 20, 8
    x = torch.randn(R, d, requires_grad=True)
    w_enc = torch.randn(L, d, requires_grad=True)
    b_enc = torch.randn(L, requires_grad=True)
    w_dec = torch.randn(L, d, requires_grad=True)
    rows = torch.tensor([0, 0, 1, 3, 3, 3, 5, 2])
    cols = torch.tensor([4, 1, 7, 0, 19, 3, 4, 4])
    pattern = SparsePattern(rows, cols, R, L)
    out = sparse_decode(sparse_encode(x, w_enc, b_enc, pattern), w_dec, pattern)
    (out * torch.arange(d)).sum().backward()
    grads = [t.grad.clone() for t in (x, w_enc, b_enc, w_dec)]
    for t in (x, w_enc, b_enc, w_dec):
        t.grad = None
    mask = torch.zeros(R, L)
    mask[rows, cols] = 1
    dense = (torch.relu(x @ w_enc.T + b_enc) * mask) @ w_dec
    torch.testing.assert_close(out, dense)
    (dense * torch.arange(d)).sum().backward()
    for got, t in zip(grads, (x, w_enc, b_enc, w_dec), strict=True):
        torch.testing.assert_close(got, t.grad)


def test_batch_topk_step_selects_k_per_token_on_average():
    sae = TrainingSae(16, 64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(32, 16)
    out = sae.step(x, k=4, batch_topk=True)
    assert out.l0 == pytest.approx(4.0)
    out = sae.step(x, k=4, batch_topk=False)
    assert out.l0 == pytest.approx(4.0)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:40] = True
    out = sae.step(x, k=4, batch_topk=True, dead=dead, k_aux=8, auxk_alpha=0.1)
    assert out.auxk > 0
    out.loss.backward()
    assert sae.W_enc_t.grad[:40].abs().sum() > 0  # AuxK reaches the dead latents


def test_batch_topk_trains_what_the_saved_jumprelu_fires_even_on_an_outlier_token():
    """Every pair above the batch's threshold is selected, uncapped: a token whose
    pre-activations all rise (here every latent) is trained on all it would fire at inference,
    not on its 4k largest only."""
    sae = TrainingSae(16, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc.fill_(-1.0)
    x = torch.randn(32, 16)
    x[5] = sae.W_enc_t.sum(0) * 10  # pushes every latent's pre-activation far up
    out = sae.step(x, k=2, batch_topk=True)
    bf16 = torch.bfloat16
    pre = torch.relu(x.to(bf16) @ sae.W_enc_t.to(bf16).T + sae.b_enc.to(bf16))  # [32, 64]
    # the threshold: the B*k-th largest of each row's 4k candidates
    threshold = pre.topk(4 * 2, dim=-1).values.flatten().topk(32 * 2).values.min()
    rows, cols = ((pre >= threshold) & (pre > 0)).nonzero(as_tuple=True)
    assert (rows == 5).sum() > 4 * 2  # the outlier trains more than the old cap of 4k a row
    assert torch.equal(out.fired, cols)
    assert out.l0 * 32 == len(cols) >= 32 * 2


def test_shuffle_buffer_emits_every_row_once():
    chunks = [torch.arange(i * 10, i * 10 + 10).float()[:, None] for i in range(9)]
    out = torch.cat(list(ShuffleBuffer(size=40, batch_size=5, seed=0)(chunks)))
    assert sorted(out.squeeze(1).tolist()) == list(range(90))
    assert out.squeeze(1).tolist() != list(range(90))


@pytest.fixture(scope="module")
def tiny_cache(tiny_lm, tmp_path_factory):
    path = tmp_path_factory.mktemp("acts") / "cache"
    harvest(tiny_lm, DOCS, path, layer=tiny_lm.default_layer, ctx_len=32, batch_size=8)
    return path


@pytest.mark.parametrize("architecture", ["batchtopk", "topk"])
def test_train_resume_export_and_evaluate(tiny_lm, tiny_cache, tmp_path, architecture):
    cfg = TrainConfig(
        activations=str(tiny_cache),
        out_dir=str(tmp_path / "run"),
        architecture=architecture,
        expansion_factor=4,
        k=4,
        batch_size=64,
        epochs=6,
        lr=3e-3,
        warmup_steps=5,
        checkpoint_every=10,
        dead_after_tokens=512,
        threshold_tokens=512,
    )
    first = train(cfg, progress=False)
    assert first.history[0]["fvu"] > first.final_fvu  # it learns
    assert first.final_fvu < 0.6
    sae = load_sae(first.sae_dir)
    assert sae.cfg.architecture == ("jumprelu" if architecture == "batchtopk" else "topk")
    meta = sae.cfg.metadata
    assert meta.hook_name == f"blocks.{tiny_lm.default_layer}.hook_resid_post"
    assert meta.training_tokens == first.tokens_seen and meta.extra["training"]["k"] == 4
    # the exported module reproduces training quality on the (unscaled) cache
    x = ActivationCache(tiny_cache).load().float()
    x_hat = sae(x)
    fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert float(fvu) < first.final_fvu + 0.1
    assert abs(float((sae.encode(x) > 0).sum(-1).float().mean()) - 4) < 1.0
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.cfg.d_sae), atol=1e-4)

    # resume: a later run with more epochs continues from the last checkpoint, not from scratch
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    done = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"]
    cfg.epochs = 8
    second = train(cfg, progress=False)
    assert second.steps > first.steps and second.history[0]["step"] > done

    result, density = evaluate_sae(
        tiny_lm, sae, DOCS[:20], max_tokens=400, ctx_len=32, progress=False
    )
    assert 0 < result.l0 < 16 and result.explained_variance > 0.3
    # a random model barely cares about zero-ablation; the CE floors are checked on SmolLM2
    assert result.ce_increase == pytest.approx(result.ce_sae - result.ce_clean)
    assert result.kl_sae >= 0 and density.shape == (sae.cfg.d_sae,)
    png = plot_log_density(density, tmp_path / "density.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_config_file_round_trip(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('activations = "a"\nout_dir = "b"\nk = 48\n')
    cfg = TrainConfig.from_file(path, epochs=2.0)
    assert cfg.k == 48 and cfg.epochs == 2.0
    path.write_text('activations = "a"\nout_dir = "b"\nkk = 1\n')
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_file(path)
