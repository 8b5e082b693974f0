"""The attribution graph at the divergence: circuit-tracer's `attribute` with one custom target,
the unembedding direction of the gap, then its `prune_graph` and graph scores.

Node order in the adjacency matrix (circuit-tracer's): [selected features, error nodes
(layer-major, then position), token embeddings, the target]. Rows are targets, columns sources.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diagnostics.trace.config import TraceConfig


@dataclass
class PrunedGraph:
    """circuit-tracer's graph with the pruning masks and node influences of the pruned graph."""

    graph: object  # circuit_tracer.graph.Graph
    node_mask: torch.Tensor  # [n_nodes] bool, kept by prune_graph
    edge_mask: torch.Tensor  # [n_nodes, n_nodes] bool
    influence: torch.Tensor  # [n_nodes] node influence on the target in the pruned graph
    replacement_score: float
    completeness_score: float
    target: str
    node_threshold: float

    @property
    def n_features(self) -> int:
        return len(self.graph.selected_features)

    @property
    def n_pos(self) -> int:
        return int(self.graph.n_pos)

    @property
    def n_layers(self) -> int:
        return int(self.graph.cfg.n_layers)

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def target_index(self) -> int:
        return self.token_start + self.n_pos

    def feature(self, node: int) -> tuple[int, int, int]:
        """(layer, position, feature) of feature node `node` (< n_features)."""
        g = self.graph
        layer, pos, feat = g.active_features[g.selected_features[node]].tolist()
        return int(layer), int(pos), int(feat)

    def activation(self, node: int) -> float:
        g = self.graph
        return float(g.activation_values[g.selected_features[node]])

    @property
    def graph_gap(self) -> float:
        """Sum of the direct effects into the target: the graph's linear account of the gap."""
        return float(self.graph.adjacency_matrix[self.target_index].sum())


def gap_direction(unembed: torch.Tensor, corrected_id: int, model_id: int) -> torch.Tensor:
    """unembed(corrected) - unembed(model's token) [d_model] from unembed [vocab, d_model]."""
    return (unembed[corrected_id] - unembed[model_id]).detach().clone()


def build_graph(
    replacement_model,
    ids: torch.Tensor,
    corrected_id: int,
    model_id: int,
    target: str,
    cfg: TraceConfig,
) -> PrunedGraph:
    """The pruned graph of the gap logit(corrected) - logit(model's token) predicted after ids
    [seq] (the prompt and the output before the divergence)."""
    from circuit_tracer import attribute
    from circuit_tracer.attribution.targets import CustomTarget
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    vec = gap_direction(replacement_model.unembed_weight, corrected_id, model_id)
    graph = attribute(
        ids,
        replacement_model,
        attribution_targets=[CustomTarget(target, 1.0, vec)],
        batch_size=cfg.batch_size,
        max_feature_nodes=cfg.max_feature_nodes,
    )
    graph.to("cpu")
    node_mask, edge_mask, _ = prune_graph(graph, cfg.node_threshold, cfg.edge_threshold)
    replacement_score, completeness_score = compute_graph_scores(graph)
    return PrunedGraph(
        graph=graph,
        node_mask=node_mask,
        edge_mask=edge_mask,
        influence=pruned_influence(graph, edge_mask),
        replacement_score=replacement_score,
        completeness_score=completeness_score,
        target=target,
        node_threshold=cfg.node_threshold,
    )


def pruned_influence(graph, edge_mask: torch.Tensor) -> torch.Tensor:
    """[n_nodes] circuit-tracer's node influence on the target computed on the pruned graph
    (only kept edges), so a pruned node's influence is 0."""
    from circuit_tracer.graph import compute_node_influence

    pruned = graph.adjacency_matrix * edge_mask  # [n_nodes, n_nodes]
    weights = torch.zeros(pruned.shape[0])
    weights[-len(graph.logit_targets) :] = graph.logit_probabilities
    return compute_node_influence(pruned, weights)


def restricted_influence(pg: PrunedGraph, features: torch.Tensor) -> torch.Tensor:
    """[n_features] influence on the target of each attributed feature in the graph with only
    `features` (node indices) kept among the feature nodes (every error and token node kept);
    the others get 0. Supernodes of the graph and of the null are ranked by it alike."""
    from circuit_tracer.graph import compute_node_influence

    g = pg.graph
    keep = torch.ones(g.adjacency_matrix.shape[0], dtype=torch.bool)
    keep[: pg.n_features] = False
    keep[features] = True
    adjacency = g.adjacency_matrix * keep[:, None] * keep[None, :]
    weights = torch.zeros(adjacency.shape[0])
    weights[-len(g.logit_targets) :] = g.logit_probabilities
    return compute_node_influence(adjacency, weights)[: pg.n_features]
