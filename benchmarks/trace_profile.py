"""circuit-tracer's cost on this CPU, to choose the trace defaults (max_feature_nodes,
batch_size) before the trained transcoders exist: a random, untrained 30-layer skip PLT set of
width 1536 (each feature's JumpReLU threshold set so ~32 features fire per token on the prompt
itself, as the trained set's k) on the bundled SmolLM2, a prompt of N tokens (the Natalia problem
repeated, chat template), one custom target (a logit difference), one torch thread.

    .venv/bin/python benchmarks/trace_profile.py N_TOKENS MAX_FEATURE_NODES BATCH_SIZE

Appends one JSON line to benchmarks/results/trace_profile.jsonl: attribution wall/CPU seconds,
pruning, peak RSS (ru_maxrss of this fresh process), active features. Random transcoders make
large error nodes; the cost depends on the sizes, not on what the features mean.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diagnostics.model_loading import bundled_model_dir  # noqa: E402
from diagnostics.transcoders.io import load_transcoder_set, save_transcoder_set  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "trace_profile.jsonl"
D_TC, K = 1536, 32
NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May? "
)


def random_set(model, ids: torch.Tensor, directory: Path) -> None:
    """A random skip PLT per layer, thresholds calibrated on ids' MLP inputs to ~K active."""
    inputs = {}
    hooks = [
        layer.post_attention_layernorm.register_forward_hook(
            lambda m, i, o, k=k: inputs.__setitem__(k, o[0].detach())
        )
        for k, layer in enumerate(model.model.layers)
    ]
    with torch.no_grad():
        model(ids[None])
    for h in hooks:
        h.remove()
    gen, d = torch.Generator().manual_seed(0), model.config.hidden_size
    layers = {}
    for k in range(model.config.num_hidden_layers):
        w_enc = torch.randn(D_TC, d, generator=gen) / d**0.5  # [d_tc, d_model]
        pre = inputs[k][1:] @ w_enc.T  # [seq - 1, d_tc]
        layers[k] = {
            "W_enc": w_enc,
            "W_dec": torch.randn(D_TC, d, generator=gen) / d**0.5 * 0.1,
            "b_enc": torch.zeros(D_TC),
            "b_dec": torch.zeros(d),
            "activation_function.threshold": pre.quantile(1 - K / D_TC, dim=0).clamp(min=1e-3),
            "W_skip": torch.randn(d, d, generator=gen) * 0.01,
        }
    save_transcoder_set(layers, directory, scan="random-profile", dtype="float16")


def main() -> None:
    n_tok, max_nodes, batch = (int(x) for x in sys.argv[1:4])
    torch.set_num_threads(1)
    from circuit_tracer import attribute
    from circuit_tracer.attribution.targets import CustomTarget
    from circuit_tracer.graph import compute_graph_scores, prune_graph
    from circuit_tracer.replacement_model.replacement_model_nnsight import (
        NNSightReplacementModel,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mdir = bundled_model_dir()
    tok = AutoTokenizer.from_pretrained(mdir)
    model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": NATALIA * 20}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")[0]
    ids = ids[:n_tok]
    set_dir = Path(tempfile.mkdtemp(prefix="trace-profile-"))
    random_set(model, ids, set_dir)
    del model
    c0 = time.process_time()
    rm = NNSightReplacementModel.from_pretrained_and_transcoders(
        str(mdir), load_transcoder_set(set_dir), device="cpu", dtype=torch.float32
    )
    w1, c1 = time.time(), time.process_time()
    u = rm.unembed_weight
    two, one = (tok.encode(d, add_special_tokens=False)[0] for d in ("2", "1"))
    vec = (u[two] - u[one]).detach()  # logit('2') - logit('1'), Natalia's turn
    graph = attribute(ids, rm, attribution_targets=[CustomTarget("gap", 1.0, vec)],
                      batch_size=batch, max_feature_nodes=max_nodes)  # fmt: skip
    w2, c2 = time.time(), time.process_time()
    pruned = prune_graph(graph, 0.8, 0.98)
    compute_graph_scores(graph)
    c3 = time.process_time()
    row = {
        "n_tokens": len(ids), "max_feature_nodes": max_nodes, "batch_size": batch,
        "active_features": int(graph.active_features.shape[0]),
        "load_cpu_s": c1 - c0, "attribution_wall_s": w2 - w1, "attribution_cpu_s": c2 - c1,
        "prune_cpu_s": c3 - c2, "kept_nodes": int(pruned.node_mask.sum()),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }  # fmt: skip
    print(json.dumps(row))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
