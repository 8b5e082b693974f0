"""Flag the spurious latents at a divergence: those that push the logit gap toward the model's
token, are off the correct path, and whose own ablation moves the gap toward the correct one.

Candidates are screened (`screen_candidates`: the most negative attributions and the largest
excess activations over the atlas's usual level), each is zero-ablated alone (batched), and those
whose ablation helps are ranked by `spuriousness_order` (effect x excess activation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from diagnostics.attribution import AttributionResult, LogitGap
from diagnostics.feature_card import FeatureCard
from diagnostics.language_model import LanguageModel
from diagnostics.report import FlaggedFeature, TokenActivation
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.verification import AblationScreen

SCREEN = 16
"""Candidates per screen: the most negative attributions, and the largest excess activations."""


class Atlas(Protocol):
    """What the diagnosis needs from a feature atlas (diagnostics.atlas.FeatureAtlas)."""

    version: str
    density: np.ndarray  # [d_sae] fraction of tokens each latent fires on
    mean_activation: np.ndarray  # [d_sae] mean activation where it fires
    description_auroc: np.ndarray  # [d_sae] score of the shown label, NaN where unscored
    generic: np.ndarray  # [d_sae] bool: dense, or firing on formatting or positions

    def label(self, i: int) -> str: ...

    def generic_reason(self, i: int) -> str: ...

    def card(self, i: int) -> FeatureCard | None: ...


@dataclass(frozen=True)
class PathFeatures:
    """SAE features along both paths."""

    model: torch.Tensor  # [prompt + output, d_sae] on the model's path
    corrected: torch.Tensor  # [prompt + corrected, d_sae] on the corrected path
    prompt_len: int


def screen_candidates(
    attribution: torch.Tensor, features: torch.Tensor, usual: torch.Tensor, n: int = SCREEN
) -> list[int]:
    """Latents worth ablating: the n most negative attributions [d_sae], then the n with the
    largest excess activation, peak over positions (features [seq, d_sae]) minus their usual
    activation [d_sae]; without duplicates, and only latents that push the wrong way or fire.

    The excess half catches what attribution misses: a latent firing far above its usual level
    can saturate its own gradient, so its attribution understates it."""
    peak = features.max(0).values  # [d_sae]
    negative = torch.argsort(attribution)[:n]
    unusual = torch.argsort(peak - usual, descending=True)[:n]
    return [
        j
        for j in dict.fromkeys([*negative.tolist(), *unusual.tolist()])
        if attribution[j] < 0 or peak[j] > 0
    ]


def spuriousness_order(effects: torch.Tensor, excess: torch.Tensor) -> list[int]:
    """Indices of the confirmed candidates, most spurious first.

    effects [m]: the logit-gap change when each candidate alone is zero-ablated (> 0: toward the
    expected token; only those are confirmed). excess [m]: its peak activation minus its usual
    activation (decoder rows have unit norm, so how far its write into the residual exceeds the
    usual). Ranked by effect x excess (excess floored at 0), ties by effect: a spurious latent
    must score on both; a big effect from an ordinary latent doing its usual job, or an anomaly
    that does not move the answer, is not the explanation sought.
    """
    score = effects * excess.clamp_min(0)  # [m]
    confirmed = torch.nonzero(effects > 0).squeeze(1).tolist()
    return sorted(confirmed, key=lambda r: (float(score[r]), float(effects[r])), reverse=True)


@dataclass(frozen=True)
class SpuriousSelection:
    """The selection procedure: confirmed by their own ablation, ranked by effect x excess,
    kept when off the correct path, at most top_k. The selection-matched null puts random
    candidates through exactly this."""

    attr: AttributionResult
    paths: PathFeatures
    usual: torch.Tensor  # [d_sae] each latent's usual activation (0 without an atlas)
    atlas: Atlas | None
    top_k: int

    def select(self, latents: list[int], effects: torch.Tensor) -> list[tuple[int, str]]:
        """(index into `latents`, why it is off the path) of the selected, most spurious first;
        effects [m] are the latents' single-ablation effects. Generic latents (atlas) come
        after every specific one: they may be reported, never as the headline."""
        if not latents:
            return []
        excess = self.attr.features[:, latents].max(0).values - self.usual[latents]  # [m]
        order = spuriousness_order(effects, excess)
        if self.atlas is not None:
            order = sorted(order, key=lambda r: bool(self.atlas.generic[latents[r]]))  # stable
        chosen: list[tuple[int, str]] = []
        for r in order:
            if len(chosen) >= self.top_k:
                break
            j = latents[r]
            reason = _off_path_reason(
                j,
                float(self.paths.model[:, j].max()),
                float(self.paths.corrected[:, j].max()),
                float(self.attr.features[:, j].max()),
                self.atlas,
            )
            if reason is not None:
                chosen.append((r, reason))
        return chosen


@dataclass(frozen=True)
class Flagging:
    """The flagged latents and what produced them (for the null, which repeats the procedure)."""

    flagged: list[FlaggedFeature]
    screened: list[int]  # the candidates ablated alone
    effects: torch.Tensor  # [m] their single-ablation effects
    selection: SpuriousSelection
    ablations: AblationScreen


def flag_latents(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    gap: LogitGap,
    attr: AttributionResult,
    paths: PathFeatures,
    *,
    top_k: int,
    atlas: Atlas | None,
) -> Flagging:
    """Latents that push the gap toward the wrong token and fire off the correct path, most
    spurious first.

    A latent is on the correct path, and never flagged, when it is more active on the corrected
    path than on the model's own. Otherwise it is off the path when it is more active on the
    model's path, or (with an atlas) fires here above its usual activation or is rare (density
    < 1%); without an atlas there is no baseline, and every latent not on the correct path counts.
    """
    per_feature = attr.per_feature  # [d_sae]
    usual_all = usual_activation(atlas, per_feature)  # [d_sae]
    screen = screen_candidates(per_feature, attr.features, usual_all)
    ablations = AblationScreen(lm, sae, gap, attr.residual, attr.features, before=attr.metric)
    effects = ablations.effects(screen)  # [m]
    selection = SpuriousSelection(attr, paths, usual_all, atlas, top_k)
    flagged = [
        _flagged_record(lm, gap, attr, paths, atlas, screen[r], float(effects[r]), reason)
        for r, reason in selection.select(screen, effects)
    ]
    return Flagging(flagged, screen, effects, selection, ablations)


def _flagged_record(
    lm: LanguageModel,
    gap: LogitGap,
    attr: AttributionResult,
    paths: PathFeatures,
    atlas: Atlas | None,
    j: int,
    effect: float,
    reason: str,
) -> FlaggedFeature:
    here = attr.features[:, j]  # [seq] activation at the attributed positions
    fires = torch.nonzero(here > 0).squeeze(1)
    strongest = fires[torch.argsort(here[fires], descending=True)][:8]
    return FlaggedFeature(
        feature=j,
        label=atlas.label(j) if atlas is not None else "",
        label_score=label_score(atlas, j),
        attribution=float(attr.per_feature[j]),
        ablation_effect=effect,
        activation_failing=float(paths.model[:, j].max()),
        activation_expected=float(paths.corrected[:, j].max()),
        atlas_mean_activation=float(atlas.mean_activation[j]) if atlas is not None else None,
        atlas_density=float(atlas.density[j]) if atlas is not None else None,
        generic=bool(atlas.generic[j]) if atlas is not None else False,
        generic_reason=atlas.generic_reason(j) if atlas is not None else "",
        off_path_reason=reason,
        fires_at=[
            TokenActivation(
                position=int(p),
                token=lm.tokenizer.decode([int(gap.input_ids[p])]),
                activation=float(here[p]),
            )
            for p in strongest
        ],
        in_prompt=bool((fires < paths.prompt_len).any()),
        card=atlas.card(j) if atlas is not None else None,
    )


def _off_path_reason(
    j: int, act_fail: float, act_exp: float, peak_here: float, atlas: Atlas | None
) -> str | None:
    """Why latent j is off the correct path, or None when it is on it (more active on the
    corrected path than on the model's own, by any margin)."""
    if act_exp > act_fail:
        return None
    if act_fail > act_exp * 1.05:
        return "more active on the model's path than on the corrected one"
    if atlas is None:
        return "not more active on the corrected path (no atlas baseline)"
    usual = float(atlas.mean_activation[j])
    if peak_here > usual:
        return f"fires at {peak_here:.2f}, above its usual {usual:.2f}"
    density = float(atlas.density[j])
    if density < 0.01:
        return f"rare latent (fires on {density:.2%} of tokens)"
    return None


def usual_activation(atlas: Atlas | None, like: torch.Tensor) -> torch.Tensor:
    """Each latent's mean activation where it fires [d_sae], from the atlas; without one there
    is no baseline, and it is 0 for all (the excess is then the activation itself)."""
    if atlas is None:
        return torch.zeros_like(like)
    return torch.as_tensor(atlas.mean_activation, dtype=like.dtype)


def label_score(atlas: Atlas | None, j: int) -> float | None:
    if atlas is None:
        return None
    score = float(atlas.description_auroc[j])
    return None if math.isnan(score) else score
