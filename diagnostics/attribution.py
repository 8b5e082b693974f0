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


@dataclass(frozen=True)
class LogitGap:
    """The metric a diagnosis explains: logit(target) - logit(other) at `position`, reading
    input_ids[: position + 1] (the token at `position + 1` is the one being chosen)."""

    input_ids: torch.Tensor  # [seq] int64
    position: int
    target: int  # the token the correct path takes
    other: int  # the token the model takes

    @property
    def prefix(self) -> torch.Tensor:
        """The ids that are read [position + 1]."""
        return self.input_ids[: self.position + 1]


@dataclass
class AttributionResult:
    """Attribution of `metric` at one position."""

    metric: float
    features: torch.Tensor  # [seq, d_sae] activations (zero at special tokens)
    attribution: torch.Tensor  # [seq, d_sae] activation x gradient
    error_attribution: torch.Tensor  # [seq] error-term x gradient, summed over d_model
    logits: torch.Tensor  # [vocab] at the position
    residual: torch.Tensor  # [seq, d_model] the residual stream the SAE read (its layer's output)

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
    lm: LanguageModel, sae: SparseAutoencoder, gap: LogitGap, *, edit: FeatureEdit | None = None
) -> float:
    """The gap with the SAE spliced in (error kept), optionally with a feature edit."""
    with torch.no_grad(), splice_sae(lm, sae, edit=edit):
        logits = lm.model(gap.prefix[None].to(lm.device)).logits[0, gap.position]
    return float(logits[gap.target] - logits[gap.other])


def attribute(lm: LanguageModel, sae: SparseAutoencoder, gap: LogitGap) -> AttributionResult:
    """One forward + one backward over the gap's prefix. Its `metric` is the unedited gap."""
    ids = gap.prefix[None].to(lm.device)  # [1, seq]
    params = [p for p in lm.model.parameters() if p.requires_grad]
    for p in params:  # only the splice leaves need gradients
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), splice_sae(lm, sae, track_grad=True) as rec:
            logits = lm.model(ids).logits[0, gap.position]  # [vocab]
            metric = logits[gap.target] - logits[gap.other]
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
        residual=rec.residual[0],
    )
