"""Check a diagnosis by intervention: zero-ablate latents (error term kept), measure the logit gap
and the greedy continuation from the divergence, and compare with random active latents matched
by activation, so an effect is measured against a control."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diagnostics.attribution import LogitGap, logit_difference
from diagnostics.language_model import LanguageModel
from diagnostics.report import AblationResult, ControlResult
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
    gap: LogitGap,
    features: list[int],
    *,
    before: float,
    batch_size: int = 16,
) -> torch.Tensor:
    """Change [m] of the gap when each of `features` alone is zero-ablated at every position
    (error term kept), against the unablated gap `before`; one batched forward per batch."""
    ids = gap.prefix[None].to(lm.device)  # [1, seq]
    changes = []
    for start in range(0, len(features), batch_size):
        index = torch.tensor(features[start : start + batch_size], dtype=torch.long)
        rows = torch.arange(len(index))

        def edit(f: torch.Tensor, index=index, rows=rows) -> torch.Tensor:  # [b, seq, d_sae]
            f = f.clone()
            f[rows, :, index.to(f.device)] = 0.0  # row r loses latent index[r]
            return f

        with splice_sae(lm, sae, edit=edit):
            logits = lm.model(ids.expand(len(index), -1)).logits[:, gap.position]  # [b, vocab]
        changes.append((logits[:, gap.target] - logits[:, gap.other]).float().cpu() - before)
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


@dataclass(frozen=True)
class Verifier:
    """Ablates a set of latents at a divergence: the gap, and the greedy continuation from the
    shared prefix judged for the expected answer."""

    lm: LanguageModel
    sae: SparseAutoencoder
    gap: LogitGap
    before: float  # the unedited gap
    prefix_text: str  # the model's own continuation text before the divergence
    judge_fn: Callable[[str], bool]  # is the whole continuation text correct?
    max_new_tokens: int

    def run(self, features: list[int]) -> AblationResult:
        edit = zero_ablation(features)
        after = logit_difference(self.lm, self.sae, self.gap, edit=edit)
        new = continue_with_edit(self.lm, self.sae, self.gap.prefix, edit, self.max_new_tokens)
        text = self.lm.tokenizer.decode(new, skip_special_tokens=True)
        return AblationResult(
            features=features,
            metric_before=self.before,
            metric_after=after,
            metric_change=after - self.before,
            continuation=text,
            fixed=self.judge_fn(self.prefix_text + text),
            takes_correction=bool(len(new)) and int(new[0]) == self.gap.target,
        )

    def control(self, draws: list[list[int]]) -> ControlResult | None:
        results = [self.run(d) for d in draws]
        if not results:
            return None
        changes = torch.tensor([r.metric_change for r in results])
        return ControlResult(
            draws=results,
            median_metric_change=float(changes.median()),
            fix_rate=sum(r.fixed for r in results) / len(results),
        )
