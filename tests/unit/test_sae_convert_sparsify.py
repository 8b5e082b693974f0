"""`sparsify_to_sae`: an EleutherAI sparsify SparseCoder read as our TopK SAE.

The main tests write a file in sparsify's layout by hand and compare with its forward pass written
out here, so they do not need sparsify installed; the last test checks the real package if present.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diagnostics.errors import SaeFormatError
from diagnostics.sae.convert import sparsify_to_sae
from diagnostics.sae.modules import TopKSAE

D_IN, N_LATENTS, K = 16, 64, 4


def sparsify_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with sparsify's names and shapes (non-zero biases, unit decoder rows)."""
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(N_LATENTS, D_IN, generator=g)
    return {
        "encoder.weight": torch.randn(N_LATENTS, D_IN, generator=g) / D_IN**0.5,
        "encoder.bias": 0.1 * torch.randn(N_LATENTS, generator=g),
        "W_dec": w_dec / w_dec.norm(dim=1, keepdim=True),
        "b_dec": torch.randn(D_IN, generator=g),
    }


def write_sparsify_dir(directory: Path, tensors: dict[str, torch.Tensor], **cfg) -> Path:
    """cfg.json + sae.safetensors as `SparseCoder.save_to_disk` writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = {
        "activation": "topk",
        "expansion_factor": N_LATENTS // D_IN,
        "normalize_decoder": True,
        "num_latents": N_LATENTS,
        "k": K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D_IN,
    }
    (directory / "cfg.json").write_text(json.dumps(raw | cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "sae.safetensors"))
    return directory


def sparsify_forward(w: dict[str, torch.Tensor], x: torch.Tensor, k: int = K):
    """sparsify's encode (b_dec subtracted, ReLU, top-k) and decode, as dense latents and output."""
    pre = torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    values, indices = pre.topk(k, dim=-1, sorted=False)  # [n, k]
    dense = torch.zeros_like(pre).scatter_(-1, indices, values)  # [n, N_LATENTS]
    out = (w["W_dec"][indices] * values[..., None]).sum(-2) + w["b_dec"]  # [n, D_IN]
    return dense, out


def test_converted_sae_reproduces_sparsify_forward(tmp_path):
    w = sparsify_weights()
    sae = sparsify_to_sae(
        write_sparsify_dir(tmp_path / "sae", w), hook_name="blocks.3.hook_resid_post"
    )
    assert isinstance(sae, TopKSAE)
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k) == (D_IN, N_LATENTS, K)
    assert sae.W_enc.shape == (D_IN, N_LATENTS) and sae.cfg.apply_b_dec_to_input
    assert sae.cfg.hook_layer == 3
    x = 3 * torch.randn(32, D_IN, generator=torch.Generator().manual_seed(1))
    dense, out = sparsify_forward(w, x)
    f = sae.encode(x)
    torch.testing.assert_close(f, dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(sae.decode(f), out, atol=1e-5, rtol=0)


def test_input_scale_is_folded_into_the_biases(tmp_path):
    w = sparsify_weights(seed=2)
    scale = 0.25  # sparsify was trained on x * scale
    sae = sparsify_to_sae(write_sparsify_dir(tmp_path / "sae", w), input_scale=scale)
    x = 8 * torch.randn(32, D_IN, generator=torch.Generator().manual_seed(3))
    dense, out = sparsify_forward(w, x * scale)
    f = sae.encode(x)
    torch.testing.assert_close(f * scale, dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(sae.decode(f) * scale, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("cfg", "extra", "match"),
    [
        ({"transcode": True}, {}, "transcoder"),
        ({"skip_connection": True}, {"W_skip": torch.zeros(D_IN, D_IN)}, "skip connection"),
        ({"activation": "groupmax"}, {}, "groupmax"),
        ({"k": 0}, {}, "k=0"),
    ],
)
def test_refuses_what_topk_cannot_express(tmp_path, cfg, extra, match):
    directory = write_sparsify_dir(tmp_path / "sae", sparsify_weights() | extra, **cfg)
    with pytest.raises(SaeFormatError, match=match):
        sparsify_to_sae(directory)


def test_refuses_missing_files_and_tensors(tmp_path):
    with pytest.raises(SaeFormatError, match="cfg.json and sae.safetensors"):
        sparsify_to_sae(tmp_path)
    weights = sparsify_weights()
    del weights["b_dec"]
    with pytest.raises(SaeFormatError, match="b_dec"):
        sparsify_to_sae(write_sparsify_dir(tmp_path / "sae", weights))


def test_matches_the_real_sparsify_package(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    torch.manual_seed(0)
    coder = sparsify.SparseCoder(D_IN, sparsify.SparseCoderConfig(num_latents=N_LATENTS, k=K))
    with torch.no_grad():
        coder.encoder.bias.normal_(0, 0.1)
        coder.b_dec.normal_()
    x = 3 * torch.randn(32, D_IN)
    with torch.no_grad():
        ref = coder(x)
    dense = torch.zeros(32, N_LATENTS).scatter_(-1, ref.latent_indices, ref.latent_acts)
    coder.save_to_disk(tmp_path / "sae")
    for source in (coder, tmp_path / "sae"):
        sae = sparsify_to_sae(source)
        f = sae.encode(x)
        torch.testing.assert_close(f, dense, atol=1e-5, rtol=0)
        torch.testing.assert_close(sae.decode(f), ref.sae_out, atol=1e-5, rtol=0)
