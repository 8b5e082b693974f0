"""Converters from other SAE formats into ours (SAELens layout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from diagnostics.errors import SaeFormatError
from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.modules import JumpReLUSAE, TopKSAE

GEMMA_SCOPE_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
SPARSIFY_KEYS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")


def gemma_scope_to_sae(
    npz_path: str | Path, *, model_name: str = "", hook_name: str = ""
) -> JumpReLUSAE:
    """A Gemma Scope `params.npz` as a JumpReLU SAE (same tensor orientation, no b_dec on input)."""
    npz_path = Path(npz_path)
    try:
        with np.load(npz_path, allow_pickle=False) as params:
            arrays = {k: params[k] for k in params.files}
    except (OSError, ValueError) as err:
        raise SaeFormatError(f"cannot read {npz_path} as a Gemma Scope params.npz: {err}") from err
    missing = [k for k in GEMMA_SCOPE_KEYS if k not in arrays]
    if missing:
        raise SaeFormatError(
            f"{npz_path} lacks {missing}; Gemma Scope files hold {GEMMA_SCOPE_KEYS}"
        )
    d_in, d_sae = arrays["W_enc"].shape
    cfg = SaeConfig(
        architecture="jumprelu",
        d_in=int(d_in),
        d_sae=int(d_sae),
        apply_b_dec_to_input=False,
        dtype="float32",
        metadata=SaeMetadata(
            model_name=model_name, hook_name=hook_name, extra={"converted_from": "gemma_scope"}
        ),
    )
    sae = JumpReLUSAE(cfg)
    state = {k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float32)) for k in GEMMA_SCOPE_KEYS}
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(getattr(sae, name).shape):
            raise SaeFormatError(f"{name} has shape {tuple(tensor.shape)}, inconsistent with W_enc")
    sae.load_state_dict(state)
    return sae.eval().requires_grad_(False)


def sparsify_to_sae(
    source: str | Path | nn.Module,
    *,
    input_scale: float = 1.0,
    model_name: str = "",
    hook_name: str = "",
) -> TopKSAE:
    """An EleutherAI sparsify SparseCoder (its directory or the module) as a TopK SAE.

    sparsify encodes topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias)) and decodes
    f @ W_dec + b_dec: our TopK rule with W_enc = encoder.weight.T. `input_scale` is the factor
    the inputs were multiplied by in training; it is folded in (b_enc and b_dec divided by it), so
    the result reads unscaled activations and its latents are sparsify's divided by the scale.
    Transcoders, skip connections and GroupMax activations have no equivalent and are refused.
    """
    raw_cfg, tensors, where = _read_sparsify(source)
    if raw_cfg.get("transcode", False):
        raise SaeFormatError(f"{where} is a transcoder, not an autoencoder")
    if raw_cfg.get("skip_connection", False) or "W_skip" in tensors:
        raise SaeFormatError(f"{where} has a skip connection, which a TopK SAE cannot express")
    if raw_cfg.get("activation", "topk") != "topk":
        raise SaeFormatError(
            f"{where} uses activation {raw_cfg['activation']!r}; only topk converts"
        )
    missing = [key for key in SPARSIFY_KEYS if key not in tensors]
    if missing:
        raise SaeFormatError(f"{where} lacks {missing}; sparsify SAEs hold {SPARSIFY_KEYS}")
    if not input_scale > 0:
        raise ValueError("input_scale must be positive")
    d_sae, d_in = tensors["encoder.weight"].shape
    for key, shape in (("encoder.bias", (d_sae,)), ("W_dec", (d_sae, d_in)), ("b_dec", (d_in,))):
        if tuple(tensors[key].shape) != shape:
            raise SaeFormatError(
                f"{where}: {key} has shape {tuple(tensors[key].shape)}, expected {shape}"
            )
    k = int(raw_cfg.get("k", 0))
    if not 0 < k <= d_sae:
        raise SaeFormatError(f"{where}: k={k} is not in 1..{d_sae}")
    cfg = SaeConfig(
        architecture="topk",
        d_in=int(d_in),
        d_sae=int(d_sae),
        k=k,
        apply_b_dec_to_input=True,
        dtype="float32",
        metadata=SaeMetadata(
            model_name=model_name,
            hook_name=hook_name,
            extra={"converted_from": "sparsify", "input_scale": input_scale},
        ),
    )
    sae = TopKSAE(cfg)
    f32 = {key: t.detach().to("cpu", torch.float32) for key, t in tensors.items()}
    with torch.no_grad():
        sae.W_enc.copy_(f32["encoder.weight"].T)
        sae.b_enc.copy_(f32["encoder.bias"] / input_scale)
        sae.W_dec.copy_(f32["W_dec"])
        sae.b_dec.copy_(f32["b_dec"] / input_scale)
    return sae.eval().requires_grad_(False)


def _read_sparsify(
    source: str | Path | nn.Module,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """(config dict, tensors, description) of a sparsify SparseCoder module or directory."""
    if isinstance(source, nn.Module):
        cfg = getattr(source, "cfg", None)
        if cfg is None:
            raise SaeFormatError(f"{type(source).__name__} is not a sparsify SparseCoder (no cfg)")
        raw = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
        tensors = {key: t for key, t in source.state_dict().items() if t is not None}
        return raw, tensors, f"sparsify module {type(source).__name__}"
    directory = Path(source).expanduser()
    cfg_path, weights_path = directory / "cfg.json", directory / "sae.safetensors"
    if not cfg_path.is_file() or not weights_path.is_file():
        raise SaeFormatError(
            f"{directory} is not a sparsify SAE: expected cfg.json and sae.safetensors"
        )
    try:
        raw = json.loads(cfg_path.read_text())
        tensors = load_file(str(weights_path))
    except (json.JSONDecodeError, OSError, SafetensorError) as err:
        raise SaeFormatError(f"{directory} is not a readable sparsify SAE: {err}") from err
    if not isinstance(raw, dict):
        raise SaeFormatError(f"{cfg_path} does not hold a JSON object")
    return raw, tensors, str(directory)
