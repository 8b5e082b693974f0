"""Knobs of one attribution graph (defaults chosen from the CPU profile in docs/diagnosis.md)."""

from __future__ import annotations

from dataclasses import dataclass

NODE_THRESHOLD = 0.8
"""circuit-tracer's prune_graph default: keep the nodes that carry 80% of the influence."""
EDGE_THRESHOLD = 0.98
"""circuit-tracer's prune_graph default: keep the edges that carry 98% of the influence."""


@dataclass(frozen=True)
class TraceConfig:
    """How a failure's graph is built, pruned, grouped and verified."""

    max_feature_nodes: int = 200
    """Feature nodes circuit-tracer attributes (its max_feature_nodes), most influential first."""
    batch_size: int = 8
    """Source nodes per backward pass (circuit-tracer's batch_size; memory grows with it)."""
    max_tokens: int = 320
    """Longest traced sequence (prompt + output before the divergence); a longer one is not
    traced and the report says why: on CPU the graph's memory grows with the square of its
    length (3.9 GiB at 200 tokens, 8.5 GiB at 400, docs/diagnosis.md)."""
    node_threshold: float = NODE_THRESHOLD
    """Pruning: the share of node influence kept."""
    edge_threshold: float = EDGE_THRESHOLD
    """Pruning: the share of edge influence kept."""
    layer_band: int = 4
    """Supernodes group features whose layers fall in the same band of this many layers."""
    min_decoder_cosine: float = 0.3
    """... and whose decoder directions have at least this cosine with the group's first one."""
    top_supernodes: int = 3
    """Supernodes intervened on one at a time and together."""
    steer_factor: float = -1.0
    """Steering sets each member to this multiple of its activation (-1: reverse it)."""
    null_draws: int = 20
    """Draws of the selection-matched null (0: none; the evidence is then "none")."""
    max_edges: int = 400
    """Edges kept in the report (the largest |weight| of the pruned graph)."""
    seed: int = 0
    """Seed of the null's draws."""
    device: str = "cpu"
    """Where the replacement model runs ("cpu", "cuda", ...)."""
