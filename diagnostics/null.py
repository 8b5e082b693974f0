"""The selection-matched null: random latents put through the same selection as the flagged ones.

The flagged latents are the best of the screened candidates by their measured single-ablation
effect, so a control of unselected random latents is beaten partly by construction. The null
repeats the selection on random candidates: for each screened candidate, active latents that
were not screened, matched to it by peak activation (log scale), are ablated alone with the same
measurement; each draw takes one match per screened candidate (as many random candidates as
were screened), ranks and filters them exactly as the flagged ones were (`SpuriousSelection`),
keeps the top k, and ablates them together. The flagged set's gap change is placed among the
draws' as an empirical percentile.

Cost: the pool is ablated once (POOL_PER_CANDIDATE x the screen) and resampled into the draws,
so draws share latents; each draw's joint ablation is one more cropped upper-layer forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diagnostics.flagging import Flagging
from diagnostics.report import AblationResult, SelectionMatchedNull, SetAblation

POOL_PER_CANDIDATE = 2
"""Random matches ablated per screened candidate (the pool is this many times the screen)."""

NEAREST = 10
"""A screened candidate's matches come from the active latents this close in rank of log peak
activation."""

EVIDENCE_PERCENTILE = 90.0
"""The flagged set explains the failure only if its gap change beats this percentile of the null."""


@dataclass(frozen=True)
class NullDraws:
    """The null's latent sets and their joint-ablation gap changes."""

    sets: list[list[int]]  # per draw: the latents its selection kept (may be empty)
    changes: torch.Tensor  # [draws] gap change with the set ablated together
    pool: int  # random latents ablated alone
    candidates_per_draw: int  # random candidates each draw selected from (fewer than were
    # screened only when fewer active latents are left to draw from)


def draw_null(flagging: Flagging, draws: int, *, generator: torch.Generator) -> NullDraws:
    """`draws` selection-matched random sets and their joint gap changes."""
    attr = flagging.selection.attr
    peak = attr.features.max(0).values  # [d_sae]
    screened = flagging.screened
    active = torch.nonzero(peak > 0).squeeze(1)
    free = active[~torch.isin(active, torch.tensor(screened, dtype=torch.long))]
    if draws < 1 or not len(free):
        return NullDraws([], torch.zeros(0), 0, 0)
    log_free = peak[free].log()  # [n_free]
    matches: list[list[int]] = []
    for c in screened:
        target = peak[c].clamp_min(1e-6).log()
        nearest = free[torch.argsort((log_free - target).abs())[:NEAREST]]
        pick = torch.randperm(len(nearest), generator=generator)[:POOL_PER_CANDIDATE]
        matches.append([int(j) for j in nearest[pick]])
    pool = sorted({j for m in matches for j in m})
    effect = dict(zip(pool, flagging.ablations.effects(pool).tolist(), strict=True))
    sets = []
    for _ in range(draws):
        chosen: list[int] = []
        for options in matches:
            left = [j for j in options if j not in chosen] or options
            chosen.append(left[int(torch.randint(len(left), (1,), generator=generator))])
        chosen = list(dict.fromkeys(chosen))
        effects = torch.tensor([effect[j] for j in chosen])
        sets.append([chosen[r] for r, _ in flagging.selection.select(chosen, effects)])
    changes = flagging.ablations.set_effects(sets)
    return NullDraws(sets, changes, len(pool), min(len(screened), len(pool)))


def percentile_in(value: float, null: torch.Tensor) -> float:
    """The share of null values below `value` (ties count half), in percent."""
    if not len(null):
        return float("nan")
    below = float((null < value).sum()) + 0.5 * float((null == value).sum())
    return 100.0 * below / len(null)


def null_record(
    null: NullDraws,
    continued: dict[int, AblationResult],
    flagged_change: float,
    *,
    seconds: float,
) -> SelectionMatchedNull:
    """The report's record of the null; `continued` maps draw index -> its continuation run."""
    changes = null.changes
    draws = [
        SetAblation(
            features=s,
            metric_change=float(changes[d]),
            fixed=continued[d].fixed if d in continued else None,
            continuation=continued[d].continuation if d in continued else None,
        )
        for d, s in enumerate(null.sets)
    ]
    fixes = [r.fixed for r in continued.values()]
    return SelectionMatchedNull(
        candidates_per_draw=null.candidates_per_draw,
        pool=null.pool,
        draws=draws,
        median_metric_change=float(changes.median()),
        p90_metric_change=float(torch.quantile(changes, 0.9)),
        percentile=percentile_in(flagged_change, changes),
        fix_rate=sum(fixes) / len(fixes) if fixes else None,
        threshold_percentile=EVIDENCE_PERCENTILE,
        seconds=seconds,
    )
