"""Check a diagnosis by intervention: zero-ablate latents (error term kept), measure the logit gap
and the greedy continuation from the divergence, and compare with random active latents matched
by activation, so an effect is measured against a control."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diagnostics.attribution import LogitGap
from diagnostics.hooks import hook_resid_post
from diagnostics.language_model import LanguageModel, StopRule
from diagnostics.report import AblationResult, ControlResult, SetAblation
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.splice import FeatureEdit, splice_sae
from diagnostics.upper_layers import UpperLayers


def zero_ablation(features: list[int]) -> FeatureEdit:
    """An edit that sets the given latents to 0 at every position."""
    index = torch.tensor(features, dtype=torch.long)

    def edit(f: torch.Tensor) -> torch.Tensor:  # [batch, seq, d_sae]
        return f.index_fill(-1, index.to(f.device), 0.0)

    return edit


@dataclass
class AblationScreen:
    """Measures single-latent zero-ablations at a logit gap: the change of the gap when each
    latent alone is set to 0 at every position (error term kept).

    Zero-ablating latent j moves the residual the SAE read by -f_j W_dec[j] at every position,
    so the edited residual is formed directly and only the layers above the SAE run, with the
    unembedding at the gap's position alone (`UpperLayers`), many latents per batch. When that
    path does not reproduce the model's forward, full spliced forwards are used instead."""

    lm: LanguageModel
    sae: SparseAutoencoder
    gap: LogitGap
    residual: torch.Tensor  # [seq, d_model] at the SAE's layer, over gap.prefix
    features: torch.Tensor  # [seq, d_sae] the SAE's features there (0 at special tokens)
    before: float  # the unedited gap
    batch_size: int = 32
    _upper: UpperLayers | None = None

    @torch.no_grad()
    def effects(self, latents: list[int]) -> torch.Tensor:
        """The gap change [m] for each latent of `latents` ablated alone."""
        return self.set_effects([[j] for j in latents])

    @torch.no_grad()
    def set_effects(self, sets: list[list[int]]) -> torch.Tensor:
        """The gap change [n] for each set of latents ablated together.

        Sets are batched in order of the first position they fire at, and each batch runs from
        the earliest of those (the positions before it are unchanged); a set that does not fire
        has no effect and costs nothing."""
        if self._upper is None:
            self._upper = UpperLayers(self.lm, self.sae.cfg.hook_layer)
            self._upper.check(self.residual[None], self._full_logits([])[0])
        out = torch.zeros(len(sets))
        first = torch.tensor([self._first_firing(s) for s in sets], dtype=torch.long)  # [n]
        order = [r for r in torch.argsort(first).tolist() if first[r] >= 0]
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = [sets[r] for r in rows]
            if self._upper.exact:
                logits = self._upper.last_logits(self._ablated(batch), start=int(first[rows[0]]))
            else:
                logits = self._full_logits(batch)
            out[rows] = logits[:, self.gap.target] - logits[:, self.gap.other] - self.before
        return out

    @torch.no_grad()
    def baseline(self) -> float:
        """The gap with every node at the SAE's layer off (features and error term zero: the
        residual is the decoder bias at every position), the zero point of the attributions."""
        bias = self.sae.b_dec.to(self.residual.dtype).expand_as(self.residual)[None]
        if self._upper is not None and self._upper.exact:
            logits = self._upper.last_logits(bias)[0]
        else:
            layer = self.sae.cfg.hook_layer
            ids = self.gap.prefix[None].to(self.lm.device)
            with hook_resid_post(self.lm, layer, lambda x: bias.to(x.dtype).expand_as(x)):
                logits = self.lm.model(ids).logits[0, self.gap.position].float().cpu()
        return float(logits[self.gap.target] - logits[self.gap.other])

    def _first_firing(self, latents: list[int]) -> int:
        """The first position any of `latents` fires at, -1 if none fires."""
        fires = (self.features[:, latents] > 0).any(1) if latents else torch.zeros(0, dtype=bool)
        return int(fires.float().argmax()) if fires.any() else -1

    def _ablated(self, sets: list[list[int]]) -> torch.Tensor:
        """Residuals [b, seq, d_model] with the latents of sets[r] zero-ablated in row r."""
        out = self.residual[None].repeat(len(sets), 1, 1)
        for r, latents in enumerate(sets):
            index = torch.tensor(latents, dtype=torch.long)
            w = self.sae.W_dec[index].to(out.dtype)  # [k, d_model]
            f = self.features[:, index].to(out.dtype)  # [seq, k]
            out[r] -= f @ w
        return out

    def _full_logits(self, sets: list[list[int]]) -> torch.Tensor:
        """Logits [b, vocab] at the gap's position from full spliced forwards ([] unedited)."""
        ids = self.gap.prefix[None].to(self.lm.device)
        if not sets:
            with splice_sae(self.lm, self.sae):
                return self.lm.model(ids).logits[:, self.gap.position].float().cpu()
        with splice_sae(self.lm, self.sae, edit=row_ablation(sets)):
            out = self.lm.model(ids.expand(len(sets), -1)).logits[:, self.gap.position]
        return out.float().cpu()


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


def row_ablation(sets: list[list[int]]) -> FeatureEdit:
    """An edit that zero-ablates latent set r in batch row r, at every position."""

    def edit(f: torch.Tensor) -> torch.Tensor:  # [rows, seq, d_sae]
        keep = torch.ones(len(sets), f.shape[-1], dtype=f.dtype, device=f.device)  # [rows, d_sae]
        for r, latents in enumerate(sets):
            keep[r, latents] = 0.0
        return f * keep[:, None, :]

    return edit


@dataclass(frozen=True)
class Verifier:
    """Ablates sets of latents at a divergence, all in one batch: the gap with each set ablated
    (the first step of its continuation), and the greedy continuation from the shared prefix,
    each row stopping when its answer is final, judged for the expected answer."""

    lm: LanguageModel
    sae: SparseAutoencoder
    gap: LogitGap
    before: float  # the unedited gap
    prefix_text: str  # the model's own continuation text before the divergence
    judge_fn: Callable[[str], bool]  # is the whole continuation text correct?
    stop: StopRule  # is a continuation's answer final?
    max_new_tokens: int

    def run(self, sets: list[list[int]]) -> list[AblationResult]:
        if not sets:
            return []
        prefix = self.gap.prefix
        with splice_sae(self.lm, self.sae, edit=row_ablation(sets)):
            rows = self.lm.generate_rows(
                [prefix] * len(sets),
                max_new_tokens=self.max_new_tokens,
                stop=lambda text: self.stop(self.prefix_text + text),
                first_logits=True,
            )
        results = []
        for r, latents in enumerate(sets):
            first = rows.first_logits[r]  # [vocab] at the gap's position, set r ablated
            after = float(first[self.gap.target] - first[self.gap.other])
            new = rows.ids[r]
            text = self.lm.tokenizer.decode(new, skip_special_tokens=True)
            results.append(
                AblationResult(
                    features=latents,
                    metric_before=self.before,
                    metric_after=after,
                    metric_change=after - self.before,
                    continuation=text,
                    fixed=self.judge_fn(self.prefix_text + text),
                    takes_correction=bool(len(new)) and int(new[0]) == self.gap.target,
                )
            )
        return results


def control_summary(sets: list[list[int]], changes: torch.Tensor) -> ControlResult | None:
    """The plain matched-random baseline: its sets and gap changes [n], and their median."""
    if not sets:
        return None
    return ControlResult(
        draws=[
            SetAblation(features=s, metric_change=float(c))
            for s, c in zip(sets, changes, strict=True)
        ],
        median_metric_change=float(changes.median()),
    )
