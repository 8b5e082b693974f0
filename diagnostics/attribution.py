"""Attribute a logit difference to SAE latents and to the SAE error term.

metric = logit(target) - logit(other) at one position. With the SAE spliced in (error kept, both
features and error as gradient leaves), one forward and one backward give, for every latent at
every position, activation x gradient: the linear estimate of how much the metric would drop if
that latent were switched off there (zero baseline, as in Scaling Monosemanticity). Positive
attribution pushes toward `target`, negative toward `other`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.splice import FeatureEdit, splice_sae


@dataclass
class AttributionResult:
    """Attribution of `metric` at one position."""

    metric: float
    features: torch.Tensor  # [seq, d_sae] activations (zero at special tokens)
    attribution: torch.Tensor  # [seq, d_sae] activation x gradient
    error_attribution: torch.Tensor  # [seq] error-term x gradient, summed over d_model
    logits: torch.Tensor  # [vocab] at the position

    @property
    def per_feature(self) -> torch.Tensor:
        """Attribution summed over positions [d_sae]."""
        return self.attribution.sum(0)

    @property
    def error_share(self) -> float:
        """|error| / (|error| + sum over latents of |attribution|), summed over positions."""
        err = float(self.error_attribution.sum().abs())
        feats = float(self.per_feature.abs().sum())
        return err / max(err + feats, 1e-12)


def logit_difference(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    input_ids: torch.Tensor,
    position: int,
    target: int,
    other: int,
    *,
    edit: FeatureEdit | None = None,
) -> float:
    """logit(target) - logit(other) at `position` of input_ids [seq], SAE spliced (optionally edited)."""
    with torch.no_grad(), splice_sae(lm, sae, edit=edit):
        logits = lm.model(input_ids[None, : position + 1].to(lm.device)).logits[0, position]
    return float(logits[target] - logits[other])


def attribute(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    input_ids: torch.Tensor,
    position: int,
    target: int,
    other: int,
) -> AttributionResult:
    """One forward + one backward over input_ids[: position + 1] ([seq] int64)."""
    ids = input_ids[None, : position + 1].to(lm.device)  # [1, seq]
    params = [p for p in lm.model.parameters() if p.requires_grad]
    for p in params:  # only the splice leaves need gradients
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), splice_sae(lm, sae, track_grad=True) as rec:
            logits = lm.model(ids).logits[0, position]  # [vocab]
            metric = logits[target] - logits[other]
            metric.backward()
    finally:
        for p in params:
            p.requires_grad_(True)
    f, g = rec.features[0].detach(), rec.features.grad[0]  # [seq, d_sae]
    if rec.included is not None:  # special-token positions are outside the SAE
        f = f * rec.included[0, :, None].to(f.dtype)
    err, err_g = rec.error[0].detach(), rec.error.grad[0]  # [seq, d_model]
    return AttributionResult(
        metric=float(metric.detach()),
        features=f,
        attribution=f * g,
        error_attribution=(err * err_g).sum(-1),
        logits=logits.detach(),
    )
