"""circuit-tracer's graph JSON rebuilt from a stored report's trace (its kept nodes and its
largest edges, `Trace.edges`), with the supernodes as the viewer's `qParams.supernodes`. The
CLI's `--graph-json` writes the whole pruned graph from the live graph instead."""

from __future__ import annotations

from diagnostics.report import DriftReport


def graph_json_of(report: DriftReport, slug: str) -> dict:
    """The graph JSON of `report.trace` (call only when it has one)."""
    from circuit_tracer.frontend.graph_models import Metadata, Model, Node, QParams

    t = report.trace
    assert t is not None
    token = {tok.index: tok for tok in report.model_path.tokens}
    n_layers = 1 + max((n.layer for n in t.nodes if n.layer is not None), default=0)
    nodes = []
    for n in t.nodes:
        if n.kind == "feature":
            node = Node.feature_node(n.layer, n.position, n.feature, n.influence, n.activation)
        elif n.kind == "error":
            node = Node.error_node(n.layer, n.position, n.influence)
        elif n.kind == "embedding":
            node = Node.token_node(n.position, token[n.position].token_id, n.influence)
        else:
            node = Node(
                node_id=n.node_id, feature=int(n.node_id.split("_")[1]), layer=str(n_layers + 1),
                ctx_idx=n.position, feature_type="logit", token_prob=1.0, is_target_logit=True,
                jsNodeId=f"L_{n.node_id.split('_')[1]}-{n.position}", clerp=t.target,
            )  # fmt: skip
        assert node.node_id == n.node_id, (node.node_id, n.node_id)
        nodes.append(node)
    by_feature = {
        (n.layer, n.position, n.feature): n.node_id for n in t.nodes if n.kind == "feature"
    }
    supernodes = [
        [s.label, *(by_feature[(m.layer, m.position, m.feature)] for m in s.members)]
        for s in t.supernodes
    ]
    positions = range(max(token) + 1 if token else 0)
    model = Model(
        metadata=Metadata(
            slug=slug,
            scan=t.transcoders,
            transcoder_list=[],
            prompt_tokens=[token[p].token if p in token else "" for p in positions][
                : t.cost.n_tokens
            ],
            prompt=report.prompt,
            node_threshold=t.node_threshold,
        ),
        qParams=QParams(
            pinnedIds=[], supernodes=supernodes, linkType="both", clickedId="", sg_pos=""
        ),  # fmt: skip
        nodes=nodes,
        links=[{"source": e.source, "target": e.target, "weight": e.weight} for e in t.edges],
    )
    return model.model_dump(mode="json")
