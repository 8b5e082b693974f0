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
from diagnostics.language_model import LanguageModel, special_token_ids
from diagnostics.sae.modules import SparseAutoencoder

FeatureEdit = Callable[[torch.Tensor], torch.Tensor]
"""Maps features [batch, seq, d_sae] to edited features of the same shape."""


@dataclass
class SpliceRecord:
    """What the last forward through the splice saw."""

    features: torch.Tensor | None = None  # [batch, seq, d_sae]; a grad-tracking leaf if track_grad
    error: torch.Tensor | None = (
        None  # [batch, seq, d_model], x - decode(features); a leaf if track_grad
    )
    included: torch.Tensor | None = None  # [batch, seq] bool, positions the SAE was applied to
    residual: torch.Tensor | None = None  # [batch, seq, d_model] the residual the SAE read


@contextmanager
def splice_sae(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    *,
    edit: FeatureEdit | None = None,
    keep_error: bool = True,
    track_grad: bool = False,
    layer: int | None = None,
    skip_special: bool = True,
) -> Iterator[SpliceRecord]:
    """Run `lm` with `sae` at its hook layer during the block; yields the latest features/error.

    keep_error=False replaces the residual by the SAE reconstruction alone (for CE-loss evals).
    track_grad=True makes the features and the error term leaves that receive gradients (for
    attribution); the error is a separate node, so it does not pass gradient to the features.
    skip_special=True leaves special-token positions (BOS, chat markers) out of the SAE: their
    features are zero and the error term carries their residual. The SAE never trained on them.
    """
    record = SpliceRecord()
    at = sae.cfg.hook_layer if layer is None else layer
    special = special_token_ids(lm.tokenizer)

    def see_ids(_module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        record.included = (
            ~torch.isin(ids, special.to(ids.device)) if skip_special and ids is not None else None
        )

    def hook(x: torch.Tensor) -> torch.Tensor:  # x: [batch, seq, d_model]
        leaf = sae.encode(x)  # [batch, seq, d_sae]
        if track_grad:
            leaf = leaf.detach().requires_grad_(True)
        f = leaf
        if record.included is not None and record.included.shape == x.shape[:2]:
            f = leaf * record.included[..., None].to(leaf.dtype)
        x_hat = sae.decode(f)  # [batch, seq, d_model]
        error = x.to(x_hat.dtype) - x_hat
        if track_grad:
            error = error.detach().requires_grad_(True)
        record.features, record.error = (leaf if track_grad else f), error
        record.residual = x.detach()
        out = sae.decode(edit(f)) if edit is not None else x_hat
        if keep_error:
            out = out + error
        return out.to(x.dtype)

    pre = lm.model.register_forward_pre_hook(see_ids, with_kwargs=True)
    try:
        with hook_resid_post(lm, at, hook):
            yield record
    finally:
        pre.remove()
