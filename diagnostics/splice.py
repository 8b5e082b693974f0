"""Splice an SAE into the residual stream, keeping the error term.

With the error term kept, the hook returns x_hat + (x - x_hat), so the model computes what it
computed before (up to float rounding) unless a feature is edited; an edit `f -> f'` adds
decode(f') - decode(f) to the residual. This is the SAELens `use_error_term=True` convention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from diagnostics.hooks import hook_resid_post
from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder

FeatureEdit = Callable[[torch.Tensor], torch.Tensor]
"""Maps features [batch, seq, d_sae] to edited features of the same shape."""


@dataclass
class SpliceRecord:
    """What the last forward through the splice saw."""

    features: torch.Tensor | None = None  # [batch, seq, d_sae]; a grad-tracking leaf if track_grad
    error: torch.Tensor | None = None  # [batch, seq, d_model], x - decode(features)


@contextmanager
def splice_sae(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    *,
    edit: FeatureEdit | None = None,
    keep_error: bool = True,
    track_grad: bool = False,
    layer: int | None = None,
) -> Iterator[SpliceRecord]:
    """Run `lm` with `sae` at its hook layer during the block; yields the latest features/error.

    keep_error=False replaces the residual by the SAE reconstruction alone (for CE-loss evals).
    track_grad=True makes the features a leaf that receives gradients (for attribution); the error
    term is detached so it does not absorb them.
    """
    record = SpliceRecord()
    at = sae.cfg.hook_layer if layer is None else layer

    def hook(x: torch.Tensor) -> torch.Tensor:  # x: [batch, seq, d_model]
        f = sae.encode(x)  # [batch, seq, d_sae]
        if track_grad:
            f = f.detach().requires_grad_(True)
        x_hat = sae.decode(f)  # [batch, seq, d_model]
        error = (x.to(x_hat.dtype) - x_hat).detach() if track_grad else x.to(x_hat.dtype) - x_hat
        record.features, record.error = f, error
        out = sae.decode(edit(f)) if edit is not None else x_hat
        if keep_error:
            out = out + error
        return out.to(x.dtype)

    with hook_resid_post(lm, at, hook):
        yield record
