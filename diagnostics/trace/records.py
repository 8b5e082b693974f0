"""The report's `trace`: typed records of one attribution graph of a failure (pydantic only, so
the report schema imports it without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TokenInfluence(BaseModel):
    """One token's embedding-node influence on the target in the pruned graph."""

    start: int  # [start, end) characters of the token in its text (prompt or model output)
    end: int
    token: str
    influence: float  # circuit-tracer's node influence (non-negative, from |edge| shares)


class FeatureRef(BaseModel):
    """A transcoder feature active at one position of the traced sequence."""

    layer: int
    position: int  # index in the traced sequence (prompt + output before the divergence)
    feature: int


class TraceNode(BaseModel):
    """A node of the pruned graph under circuit-tracer's node id, as in its graph JSON
    (`{layer}_{feature}_{pos}` for a feature, `0_{layer}_{pos}` for an error node,
    `E_{token id}_{pos}` for an embedding)."""

    node_id: str  # circuit-tracer's id, as in its graph JSON
    kind: Literal["feature", "error", "embedding", "logit"]
    layer: int | None = None  # transcoder layer (None for embeddings and the target)
    position: int
    feature: int | None = None
    activation: float | None = None
    influence: float  # on the target, pruned graph (circuit-tracer's normalised influence)
    supernode: int | None = None  # index into Trace.supernodes


class TraceEdge(BaseModel):
    """A kept edge: the direct (linear) effect of `source` on `target`."""

    source: str
    target: str
    weight: float


class Supernode(BaseModel):
    """Feature nodes grouped by position, layer band and decoder direction."""

    label: str
    label_source: Literal["atlas", "feature_id"]  # feature_id: no atlas label; built from ids
    position: int
    token: str  # the token at `position`
    layers: tuple[int, int]  # lowest and highest member layer
    members: list[FeatureRef]
    influence: float  # sum of the members' node influence


class TraceIntervention(BaseModel):
    """Features of some supernodes set on the real model (circuit-tracer's feature
    intervention: the MLP output changes by (value - activation) x decoder, downstream features
    recomputed), then the gap, the next token and the continued answer read again."""

    supernodes: list[int]  # indices into Trace.supernodes
    mode: Literal["zero", "steer"]  # zero: value 0; steer: value = steer_factor x activation
    gap_before: float
    gap_after: float
    gap_change: float  # > 0: toward the corrected token
    flipped: bool  # the model now takes the corrected token at the divergence
    continuation: str | None = None  # greedy continuation from the divergence (None: not run)
    fixed: bool | None = None  # that continuation reaches the expected answer


class TraceNullDraw(BaseModel):
    """One null draw: random attributed features, grouped and ranked like the graph's."""

    members: int  # features in the draw's selected supernodes (0: the draw kept none)
    gap_change: float
    flipped: bool


class TraceNull(BaseModel):
    """Selection-matched null: each draw takes as many random attributed features as the pruning
    kept, groups them into supernodes by the same rule, ranks them by the same influence, and
    zeroes its top ones together on the real model, like the graph's top supernodes."""

    draws: list[TraceNullDraw]
    median_gap_change: float
    p90_gap_change: float
    flip_rate: float
    percentile: float  # of the graph's top supernodes' gap change among the draws' (0-100)


class TraceCost(BaseModel):
    """What the graph cost in this process."""

    wall_s: float  # the whole trace: graph, supernodes, interventions, null
    cpu_s: float
    graph_wall_s: float  # circuit-tracer's attribution and pruning alone
    graph_cpu_s: float
    peak_rss_mb: float  # the process's peak resident set (includes what ran before)
    n_tokens: int
    active_features: int
    feature_nodes: int  # attributed (circuit-tracer's max_feature_nodes, capped by the active)
    batch_size: int
    device: str


class Trace(BaseModel):
    """The attribution graph of the failure at the divergence."""

    transcoders: str  # the transcoder set's scan id
    target: str  # e.g. "logit(' 8') - logit(' 7')": corrected minus the model's token
    gap: float  # the real model's gap at the divergence (the report's)
    graph_gap: float  # sum of the direct effects into the target (the graph's linear account)
    node_threshold: float  # circuit-tracer's prune_graph: nodes kept to this influence share
    edge_threshold: float  # and edges
    prompt_influence: list[TokenInfluence] = Field(default_factory=list)
    output_influence: list[TokenInfluence] = Field(default_factory=list)
    nodes: list[TraceNode] = Field(default_factory=list)
    edges: list[TraceEdge] = Field(default_factory=list)
    supernodes: list[Supernode] = Field(default_factory=list)  # by influence, largest first
    replacement_score: float
    completeness_score: float
    interventions: list[TraceIntervention] = Field(default_factory=list)
    null: TraceNull | None = None
    evidence: Literal["supported", "weak", "none"] = "none"
    """supported: zeroing the top supernodes together moves the gap toward the corrected token
    by more than the null's 90th percentile; weak: it does not; none: no null was drawn."""
    cost: TraceCost


def evidence_intervention(interventions: list[TraceIntervention]) -> TraceIntervention | None:
    """The intervention the evidence rests on: the top supernodes zeroed together (the top one
    alone when the graph has only one)."""
    zeros = [i for i in interventions if i.mode == "zero"]
    return max(zeros, key=lambda i: len(i.supernodes)) if zeros else None
