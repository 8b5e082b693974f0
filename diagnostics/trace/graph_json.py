"""The pruned graph as circuit-tracer's graph JSON (what its local viewer and Neuronpedia-style
tools open), and circuit-tracer's node ids for the report's nodes and edges."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.trace.graph import PrunedGraph


def _nodes(pg: PrunedGraph, tokenizer=None) -> dict:
    from circuit_tracer.utils.create_graph_files import create_nodes

    return create_nodes(pg.graph, pg.node_mask, tokenizer, pg.influence)


def node_ids(pg: PrunedGraph) -> dict[int, str]:
    """circuit-tracer's node id of each kept node, by adjacency index."""
    return {k: node.node_id for k, node in _nodes(pg).items()}


def export_graph_json(pg: PrunedGraph, tokenizer, path: str | Path) -> Path:
    """Write `path` (`<slug>.json`): circuit-tracer's graph model of the pruned graph (metadata,
    nodes, links), with the pruned-graph influence as each node's influence, and list it in
    `graph-metadata.json` beside it, so `circuit_tracer.frontend.serve(path.parent)` shows it."""
    from circuit_tracer.frontend.utils import add_graph_metadata
    from circuit_tracer.utils.create_graph_files import build_model, create_used_nodes_and_edges

    path = Path(path)
    nodes = _nodes(pg, tokenizer)
    used_nodes, used_edges = create_used_nodes_and_edges(pg.graph, nodes, pg.edge_mask)
    model = build_model(
        pg.graph, used_nodes, used_edges, path.stem, pg.graph.scan, pg.node_threshold, tokenizer
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.model_dump_json(indent=1))
    json.loads(path.read_text())  # a written file that does not parse is a bug, not an export
    add_graph_metadata(model.metadata.model_dump(), str(path.parent))
    return path
