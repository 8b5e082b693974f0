"""The foundation on the real model: hooks, splice identity, generation, SAE round trip, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from diagnostics.hooks import hook_resid_post, residuals_at
from diagnostics.model_loading import BUNDLED_MODEL_ID, bundled_model_dir, load_model
from diagnostics.sae import load_sae, save_sae
from diagnostics.splice import splice_sae
from tests.conftest import make_random_sae

PROMPT = "Natalia sold 48 clips in April and 41 clips in May. How many clips did she sell in total?"


def test_identity_and_shape(bundled_lm):
    assert bundled_lm.model_id.startswith(BUNDLED_MODEL_ID)
    assert (bundled_lm.n_layers, bundled_lm.d_model, bundled_lm.default_layer) == (30, 576, 15)
    assert bundled_lm.model.config.vocab_size == 49152


def test_second_load_comes_from_the_cache(bundled_lm):
    again = load_model()
    assert again.from_cache
    ids = bundled_lm.prompt_ids(PROMPT)[None]
    torch.testing.assert_close(
        again.model(ids).logits, bundled_lm.model(ids).logits, rtol=0, atol=0
    )


def test_bundled_model_dir_is_the_cache_other_tools_can_load(bundled_lm):
    # the directory lm-eval reads (--model_args pretrained=<dir>) holds the very weights we diagnose
    directory = bundled_model_dir()
    assert (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()
    plain = load_model(str(directory))
    ids = bundled_lm.prompt_ids(PROMPT)[None]
    torch.testing.assert_close(
        plain.model(ids).logits, bundled_lm.model(ids).logits, rtol=0, atol=0
    )


def test_hook_shapes(bundled_lm):
    ids = bundled_lm.prompt_ids(PROMPT)[None]  # [1, seq]
    seen = []
    with hook_resid_post(bundled_lm, 15, lambda x: seen.append(x.detach())):
        out = bundled_lm.model(ids, output_hidden_states=True)
    assert seen[0].shape == (1, ids.shape[1], 576)
    torch.testing.assert_close(seen[0], out.hidden_states[16], rtol=0, atol=0)
    torch.testing.assert_close(residuals_at(bundled_lm, ids, 15), seen[0], rtol=0, atol=0)


def test_splice_is_identity_on_the_real_model(bundled_lm):
    sae = make_random_sae(576, 16 * 576, layer=15, seed=1)
    ids = bundled_lm.prompt_ids(PROMPT)[None]
    with torch.no_grad():
        x = residuals_at(bundled_lm, ids, 15)
        # scale the random SAE to this layer's activations so its reconstruction is far from exact
        sae.b_dec.copy_(x[0].mean(0))
        clean = bundled_lm.model(ids).logits
        with splice_sae(bundled_lm, sae) as rec:
            spliced = bundled_lm.model(ids).logits
        with splice_sae(bundled_lm, sae, keep_error=False):
            recon_only = bundled_lm.model(ids).logits
    assert (rec.features > 0).sum(-1).float().mean() > 1  # the SAE really is in the path
    assert (spliced - clean).abs().max().item() < 1e-4
    assert (recon_only - clean).abs().max().item() > 1.0


def test_generation_of_a_known_prompt(bundled_lm):
    gen = bundled_lm.generate("What is 2+3?", max_new_tokens=16)
    assert "5" in gen.text
    raw = bundled_lm.generate("The capital of France is", chat=False, max_new_tokens=4)
    assert "Paris" in raw.text


def test_real_size_sae_round_trip_is_bit_exact(tmp_path):
    for dtype in (torch.float32, torch.bfloat16):
        sae = make_random_sae(576, 16 * 576, layer=15, seed=2).to(dtype)
        save_sae(sae, tmp_path / str(dtype))
        back = load_sae(tmp_path / str(dtype), dtype=None)
        for name, tensor in sae.state_dict().items():
            assert back.state_dict()[name].dtype == dtype
            assert torch.equal(back.state_dict()[name], tensor), name


def test_cli_model_info_and_generate():
    driftscope = str(Path(sys.executable).parent / "driftscope")  # the installed console script
    info = subprocess.run(
        [driftscope, "model", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(info.stdout)["default_hook"] == "blocks.15.hook_resid_post"
    gen = subprocess.run(
        [driftscope, "generate", "What is 2+3?", "--max-new-tokens", "12"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "5" in gen.stdout
