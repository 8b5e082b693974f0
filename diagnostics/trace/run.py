"""Trace one failure: the pruned graph at the divergence, its supernodes, the prompt's and the
output's token influences, interventions on the real model and the selection-matched null."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diagnostics.language_model import LanguageModel, StopRule
from diagnostics.paths import token_char_spans
from diagnostics.report import Divergence
from diagnostics.stage_clock import now
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.cost import peak_rss_mb
from diagnostics.trace.graph import PrunedGraph, build_graph
from diagnostics.trace.graph_json import node_ids
from diagnostics.trace.null import null_record, selection_matched_null
from diagnostics.trace.records import (
    Trace,
    TraceCost,
    TraceEdge,
    TraceNode,
    evidence_intervention,
)
from diagnostics.trace.replacement import Replacement
from diagnostics.trace.steps import (
    Intervener,
    decoder_of,
    supernode_candidates,
    top_interventions,
)
from diagnostics.trace.supernodes import LabelFn, group_supernodes, supernode_record
from diagnostics.trace.token_influence import prompt_token_spans, token_influences


@dataclass(frozen=True)
class FailureCase:
    """What the trace needs of a diagnosed failure."""

    prompt: str
    prompt_ids: torch.Tensor  # [P] the prompt as the model saw it (chat template included)
    out_ids: torch.Tensor  # [G] the model's output tokens
    output: str  # their decoding (special tokens dropped)
    divergence: Divergence
    judge_fn: Callable[[str], bool]  # is this output (prefix + continuation) right?
    stop: StopRule | None
    max_new_tokens: int


def trace_failure(
    lm: LanguageModel,
    replacement: Replacement,
    case: FailureCase,
    cfg: TraceConfig,
    *,
    labels: LabelFn | None = None,
) -> tuple[Trace, PrunedGraph]:
    """The trace record of `case` and the pruned graph behind it (for the graph JSON export)."""
    w0, c0 = now()
    d = case.divergence
    ids = torch.cat([case.prompt_ids, case.out_ids[: d.path_index]])  # [seq]
    target = f"logit({d.expected_token!r}) - logit({d.model_token!r})"
    pg = build_graph(replacement.model, ids, d.expected_token_id, d.model_token_id, target, cfg)
    w1, c1 = now()
    tok = lm.tokenizer
    groups = group_supernodes(
        supernode_candidates(pg),
        decoder_of(replacement.transcoders),
        layer_band=cfg.layer_band,
        min_cosine=cfg.min_decoder_cosine,
        labels=labels,
    )
    supernodes = [
        supernode_record(g, tok.decode([int(ids[g[0].position])]), labels) for g in groups
    ]
    member_of = {c.node: k for k, g in enumerate(groups) for c in g}
    embed = pg.influence[pg.token_start : pg.token_start + pg.n_pos]  # [seq]
    P = len(case.prompt_ids)
    out_spans = [  # special tokens decode to nothing: no characters to colour
        span if span[1] > span[0] else None
        for span in token_char_spans(tok, case.out_ids)[: d.path_index]
    ]
    intervener = Intervener(lm, replacement.transcoders, case, ids)
    activations = {(c.layer, c.position, c.feature): c.activation for g in groups for c in g}
    interventions = top_interventions(intervener, supernodes, activations, cfg)
    null = None
    evidence = "none"
    together = evidence_intervention(interventions)
    if cfg.null_draws and together is not None:
        draws = selection_matched_null(pg, groups, len(together.supernodes), intervener, cfg)
        null = null_record(draws, together.gap_change)
        beats = together.gap_change > max(0.0, null.p90_gap_change)
        evidence = "supported" if beats else "weak"
    w2, c2 = now()
    trace = Trace(
        transcoders=replacement.scan,
        target=target,
        gap=d.metric,
        graph_gap=pg.graph_gap,
        node_threshold=cfg.node_threshold,
        edge_threshold=cfg.edge_threshold,
        prompt_influence=token_influences(
            embed, prompt_token_spans(tok, case.prompt_ids, case.prompt), case.prompt, 0
        ),
        output_influence=token_influences(embed, out_spans, case.output, P),
        nodes=_nodes(pg, member_of),
        edges=_edges(pg, cfg.max_edges),
        supernodes=supernodes,
        replacement_score=pg.replacement_score,
        completeness_score=pg.completeness_score,
        interventions=interventions,
        null=null,
        evidence=evidence,
        cost=TraceCost(
            wall_s=w2 - w0,
            cpu_s=c2 - c0,
            graph_wall_s=w1 - w0,
            graph_cpu_s=c1 - c0,
            peak_rss_mb=peak_rss_mb(),
            n_tokens=len(ids),
            active_features=int(pg.graph.active_features.shape[0]),
            feature_nodes=pg.n_features,
            batch_size=cfg.batch_size,
            device=cfg.device,
        ),
    )
    return trace, pg


def _nodes(pg: PrunedGraph, member_of: dict[int, int]) -> list[TraceNode]:
    ids = node_ids(pg)
    out = []
    for node in pg.node_mask.nonzero().flatten().tolist():
        influence = float(pg.influence[node])
        if node < pg.n_features:
            layer, pos, feat = pg.feature(node)
            out.append(TraceNode(
                node_id=ids[node], kind="feature", layer=layer, position=pos, feature=feat,
                activation=pg.activation(node), influence=influence,
                supernode=member_of.get(node),
            ))  # fmt: skip
        elif node < pg.token_start:
            layer, pos = divmod(node - pg.error_start, pg.n_pos)
            out.append(TraceNode(
                node_id=ids[node], kind="error", layer=layer, position=pos, influence=influence
            ))  # fmt: skip
        elif node < pg.target_index:
            pos = node - pg.token_start
            out.append(
                TraceNode(node_id=ids[node], kind="embedding", position=pos, influence=influence)
            )
        else:
            out.append(TraceNode(
                node_id=ids[node], kind="logit", position=pg.n_pos - 1, influence=influence
            ))  # fmt: skip
    return out


def _edges(pg: PrunedGraph, max_edges: int) -> list[TraceEdge]:
    """The kept edges with the largest |weight| (at most max_edges), between kept nodes."""
    ids = node_ids(pg)
    keep = pg.edge_mask & pg.node_mask[:, None] & pg.node_mask[None, :]  # [target, source]
    dst, src = keep.nonzero(as_tuple=True)
    weights = pg.graph.adjacency_matrix[dst, src]
    order = weights.abs().argsort(descending=True)[:max_edges]
    return [
        TraceEdge(source=ids[int(src[k])], target=ids[int(dst[k])], weight=float(weights[k]))
        for k in order.tolist()
    ]
