import json

import numpy as np
import pytest
import torch

from diagnostics.errors import SaeFormatError
from diagnostics.sae import SaeConfig, SaeMetadata, TopKSAE, build_sae, load_sae, save_sae
from tests.conftest import make_random_sae


def test_jumprelu_fires_only_above_threshold():
    sae = make_random_sae(16, 64, layer=1)
    x = torch.randn(5, 16)
    pre = sae.pre_acts(x)
    f = sae.encode(x)
    assert torch.equal(f != 0, pre > sae.threshold)
    torch.testing.assert_close(f[f != 0], pre[f != 0])
    torch.testing.assert_close(sae(x), f @ sae.W_dec + sae.b_dec)


def test_topk_keeps_exactly_k():
    cfg = SaeConfig(architecture="topk", d_in=16, d_sae=64, k=5)
    sae = TopKSAE(cfg)
    torch.nn.init.normal_(sae.W_enc)
    x = torch.randn(7, 3, 16)
    f = sae.encode(x)
    assert f.shape == (7, 3, 64)
    assert ((f > 0).sum(-1) <= 5).all() and ((f > 0).sum(-1) >= 4).all()
    pre = torch.relu(sae.pre_acts(x))
    assert torch.equal(f.max(-1).values, pre.max(-1).values)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_save_load_round_trip_is_bit_exact(tmp_path, dtype):
    sae = make_random_sae(16, 64, layer=2).to(getattr(torch, dtype))
    sae.cfg.metadata.extra["eval"] = {"l0": 12.5}
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert (
        cfg["architecture"] == "jumprelu"
        and cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_post"
    )
    back = load_sae(tmp_path / "sae", dtype=None)
    for name, tensor in sae.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert back.cfg.metadata.extra["eval"] == {"l0": 12.5}
    assert back.cfg.hook_layer == 2


def test_topk_round_trip_keeps_k(tmp_path):
    sae = build_sae(SaeConfig(architecture="topk", d_in=8, d_sae=32, k=3))
    save_sae(sae, tmp_path)
    assert load_sae(tmp_path).cfg.k == 3


@pytest.mark.parametrize("name", ["ae.pt", "weights.bin", "sae.pkl"])
def test_refuses_pickles(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(SaeFormatError, match="pickle"):
        load_sae(tmp_path / name)
    with pytest.raises(SaeFormatError, match="pickle"):
        load_sae(tmp_path)


def test_clear_errors_for_bad_directories(tmp_path):
    with pytest.raises(SaeFormatError, match="not found"):
        load_sae(tmp_path / "missing")
    with pytest.raises(SaeFormatError, match="expected cfg.json"):
        load_sae(tmp_path)
    sae = make_random_sae(8, 16, layer=0)
    save_sae(sae, tmp_path)
    (tmp_path / "cfg.json").write_text(
        json.dumps({"architecture": "jumprelu", "d_in": 8, "d_sae": 99})
    )
    with pytest.raises(SaeFormatError, match="shape"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(SaeFormatError, match="not a readable SAE"):
        load_sae(tmp_path)


def test_gemma_scope_npz_conversion(tmp_path):
    rng = np.random.default_rng(0)
    params = {
        "W_enc": rng.normal(size=(16, 48)).astype(np.float32),
        "W_dec": rng.normal(size=(48, 16)).astype(np.float32),
        "b_enc": rng.normal(size=48).astype(np.float32),
        "b_dec": rng.normal(size=16).astype(np.float32),
        "threshold": np.abs(rng.normal(size=48)).astype(np.float32),
    }
    np.savez(tmp_path / "params.npz", **params)
    sae = load_sae(tmp_path / "params.npz")
    assert not sae.cfg.apply_b_dec_to_input
    x = torch.from_numpy(rng.normal(size=(4, 16)).astype(np.float32))
    pre = x.numpy() @ params["W_enc"] + params["b_enc"]  # Gemma Scope: no b_dec on the input
    expected = pre * (pre > params["threshold"])
    np.testing.assert_allclose(sae.encode(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    save_sae(sae, tmp_path / "converted")
    assert torch.equal(load_sae(tmp_path / "converted").W_dec, sae.W_dec)
    np.savez(tmp_path / "bad.npz", W_enc=params["W_enc"])
    with pytest.raises(SaeFormatError, match="lacks"):
        load_sae(tmp_path / "bad.npz")


def test_config_reads_older_flat_saelens_cfg():
    cfg = SaeConfig.from_dict(
        {
            "d_in": 4,
            "d_sae": 8,
            "hook_name": "blocks.3.hook_resid_post",
            "model_name": "gpt2",
            "dtype": "torch.float32",
            "architecture": "jumprelu",
            "some_field": 1,
        }
    )
    assert cfg.metadata == SaeMetadata(model_name="gpt2", hook_name="blocks.3.hook_resid_post")
    with pytest.raises(ValueError, match="needs k"):
        SaeConfig(architecture="topk", d_in=4, d_sae=8)
