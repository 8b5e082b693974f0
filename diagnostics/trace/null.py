"""The selection-matched null of a trace.

The graph's supernodes come from a selection: pruning keeps the attributed features that carry
most of the influence, grouping makes supernodes of them, ranking takes the top ones. Each null
draw replaces the pruning's choice by as many attributed features drawn at random, then runs the
same steps: influence on the target in the graph restricted to those features (plus every error
and token node), grouping by the same rule, ranking, and zeroing its top supernodes together on
the real model. Its gap changes and flips are what the graph's top supernodes must beat."""

from __future__ import annotations

import torch

from diagnostics.null import percentile_in
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.graph import PrunedGraph, restricted_influence
from diagnostics.trace.records import TraceNull, TraceNullDraw
from diagnostics.trace.steps import Intervener, decoder_of
from diagnostics.trace.supernodes import Candidate, group_supernodes


def selection_matched_null(
    pg: PrunedGraph,
    groups: list[list[Candidate]],
    n_top: int,
    intervener: Intervener,
    cfg: TraceConfig,
) -> list[TraceNullDraw]:
    """cfg.null_draws draws, each as many random attributed features as the graph's supernodes
    hold, through the same grouping and ranking; its top n_top supernodes zeroed together."""
    n_kept = sum(len(g) for g in groups)
    gen = torch.Generator().manual_seed(cfg.seed)
    decoder = decoder_of(intervener.transcoders)
    draws = []
    for _ in range(cfg.null_draws):
        chosen = torch.randperm(pg.n_features, generator=gen)[:n_kept]
        influence = restricted_influence(pg, chosen)
        candidates = []
        for node in chosen.tolist():
            if influence[node] <= 0:
                continue
            layer, pos, feat = pg.feature(node)
            candidates.append(
                Candidate(node, layer, pos, feat, float(influence[node]), pg.activation(node))
            )
        ranked = group_supernodes(
            candidates,
            decoder,
            layer_band=cfg.layer_band,
            min_cosine=cfg.min_decoder_cosine,
        )[:n_top]
        members = [c for g in ranked for c in g]
        if not members:
            draws.append(TraceNullDraw(members=0, gap_change=0.0, flipped=False))
            continue
        gap, flipped = intervener.gap([(c.ref, 0.0) for c in members])
        draws.append(
            TraceNullDraw(
                members=len(members), gap_change=gap - intervener.gap_before, flipped=flipped
            )
        )
    return draws


def null_record(draws: list[TraceNullDraw], graph_change: float) -> TraceNull:
    changes = torch.tensor([d.gap_change for d in draws])
    return TraceNull(
        draws=draws,
        median_gap_change=float(changes.median()),
        p90_gap_change=float(torch.quantile(changes, 0.9)),
        flip_rate=sum(d.flipped for d in draws) / len(draws),
        percentile=percentile_in(graph_change, changes),
    )
