"""Sparse autoencoder modules: JumpReLU (inference) and TopK.

Shapes follow SAELens: W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in],
threshold [d_sae] (JumpReLU only). Inputs are [..., d_in]; features are [..., d_sae].
"""

from __future__ import annotations

import torch
from torch import nn

from diagnostics.sae.config import SaeConfig


class SparseAutoencoder(nn.Module):
    """Shared encoder/decoder parameters; subclasses choose the activation rule in `encode`."""

    def __init__(self, cfg: SaeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations [..., d_sae] of x [..., d_in]."""
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [..., d_in] -> [..., d_sae]
        raise NotImplementedError

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction [..., d_in] from features [..., d_sae]."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class JumpReLUSAE(SparseAutoencoder):
    """f = pre * (pre > threshold): each latent fires only above its own threshold."""

    def __init__(self, cfg: SaeConfig) -> None:
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_acts(x)
        return torch.relu(pre) * (pre > self.threshold)


class TopKSAE(SparseAutoencoder):
    """Keep the k largest (positive) pre-activations of every token."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.pre_acts(x))
        top = pre.topk(int(self.cfg.k), dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)


def build_sae(cfg: SaeConfig) -> SparseAutoencoder:
    """An (all-zero) SAE module of the configured architecture."""
    return {"jumprelu": JumpReLUSAE, "topk": TopKSAE}[cfg.architecture](cfg)
