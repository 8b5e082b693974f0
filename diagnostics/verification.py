"""Check a diagnosis by intervention: zero-ablate latents (error term kept) and compare with
random active latents matched by activation, so an effect is measured against a control."""

from __future__ import annotations

from collections.abc import Callable

import torch

from diagnostics.language_model import LanguageModel
from diagnostics.report import AblationResult
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.splice import FeatureEdit, splice_sae


def zero_ablation(features: list[int]) -> FeatureEdit:
    """An edit that sets the given latents to 0 at every position."""
    index = torch.tensor(features, dtype=torch.long)

    def edit(f: torch.Tensor) -> torch.Tensor:  # [batch, seq, d_sae]
        return f.index_fill(-1, index.to(f.device), 0.0)

    return edit


@torch.no_grad()
def single_ablation_effects(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    input_ids: torch.Tensor,
    position: int,
    target: int,
    other: int,
    features: list[int],
    *,
    before: float,
    batch_size: int = 16,
) -> torch.Tensor:
    """Change [m] of logit(target) - logit(other) at `position` when each of `features` alone is
    zero-ablated at every position (error term kept), against the unablated value `before`
    (`logit_difference` without an edit); one batched forward per `batch_size`."""
    ids = input_ids[None, : position + 1].to(lm.device)  # [1, seq]
    changes = []
    for start in range(0, len(features), batch_size):
        index = torch.tensor(features[start : start + batch_size], dtype=torch.long)
        rows = torch.arange(len(index))

        def edit(f: torch.Tensor, index=index, rows=rows) -> torch.Tensor:  # [b, seq, d_sae]
            f = f.clone()
            f[rows, :, index.to(f.device)] = 0.0  # row r loses latent index[r]
            return f

        with splice_sae(lm, sae, edit=edit):
            logits = lm.model(ids.expand(len(index), -1)).logits[:, position]  # [b, vocab]
        changes.append((logits[:, target] - logits[:, other]).float().cpu() - before)
    return torch.cat(changes) if changes else torch.zeros(0)


def continue_with_edit(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    prefix_ids: torch.Tensor,
    edit: FeatureEdit | None,
    max_new_tokens: int,
) -> torch.Tensor:
    """Greedy continuation [n_new] of prefix_ids [seq] with the edit active at every position."""
    with splice_sae(lm, sae, edit=edit):
        return lm.generate_ids(prefix_ids, max_new_tokens=max_new_tokens)


def matched_random_features(
    activation: torch.Tensor,
    flagged: list[int],
    draws: int,
    *,
    generator: torch.Generator,
    pool: int = 10,
) -> list[list[int]]:
    """For each draw, one random active latent per flagged latent, matched by activation.

    activation [d_sae] is each latent's summed activation over the attributed positions. For a
    flagged latent with activation a, the match is drawn from the `pool` active, unflagged latents
    whose log-activation is closest to log a (each latent at most once per draw).
    """
    active = torch.nonzero(activation > 0).squeeze(1)
    candidates = active[~torch.isin(active, torch.tensor(flagged, dtype=torch.long))]
    if len(candidates) < len(flagged):
        return []
    log_act = activation[candidates].log()
    out = []
    for _ in range(draws):
        chosen: list[int] = []
        for feature in flagged:
            target = activation[feature].clamp_min(1e-6).log()
            order = torch.argsort((log_act - target).abs())
            free = [int(candidates[i]) for i in order if int(candidates[i]) not in chosen][:pool]
            chosen.append(free[int(torch.randint(len(free), (1,), generator=generator))])
        out.append(chosen)
    return out


def run_ablation(
    features: list[int],
    metric_before: float,
    metric_fn: Callable[[FeatureEdit], float],
    continuation_fn: Callable[[FeatureEdit], tuple[str, bool]],
) -> AblationResult:
    """Metric change and greedy continuation with `features` zero-ablated."""
    edit = zero_ablation(features)
    after = metric_fn(edit)
    text, fixed = continuation_fn(edit)
    return AblationResult(
        features=features,
        metric_before=metric_before,
        metric_after=after,
        metric_change=after - metric_before,
        continuation=text,
        fixed=fixed,
    )
