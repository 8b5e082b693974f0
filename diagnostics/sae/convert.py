"""Converters from other SAE formats into ours (SAELens layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diagnostics.errors import SaeFormatError
from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.modules import JumpReLUSAE

GEMMA_SCOPE_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


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
