"""Measure the cost of a transcoder set's atlas (one pass for every layer) on a short run and
write benchmarks/results/transcoder_atlas_cost.json: wall and CPU seconds of the pass and of the
per-layer finishing stage, the pass state's size, the stored atlas's size, and how long a reader
takes to label graph nodes. The real build's cost scales from these (docs/transcoders.md).

Without --set it measures a random set of the bundled model's shape made with the project's own
io (30 layers x 1536 features, each feature's bias set so it fires on ~`--l0`/1536 of tokens, as
the trained set's L0 ~ 32-38), so it runs before the trained set exists.

    PYTHONPATH=. .venv/bin/python benchmarks/transcoder_atlas_cost.py --tokens 5000
"""

from __future__ import annotations

import argparse
import glob
import json
import resource
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from diagnostics.atlas.transcoder_atlas import TranscoderAtlas
from diagnostics.atlas.transcoder_build import build_transcoder_atlas
from diagnostics.documents import interleave_documents
from diagnostics.model_loading import load_model
from diagnostics.sae.harvest import token_windows
from diagnostics.transcoders.io import save_transcoder_set
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs

DATA = Path(__file__).resolve().parents[2] / "shared/datasets"
OUT = Path(__file__).resolve().parent / "results/transcoder_atlas_cost.json"


def random_set(lm, documents: list[str], directory: Path, width: int, l0: float) -> None:
    """A random set of the model's shape whose features each fire on ~l0/width of tokens."""
    windows = list(islice(token_windows(lm.tokenizer, documents, 128), 8))
    n_layers = len(lm.decoder_layers)
    ins, _ = mlp_inputs_outputs(lm, torch.tensor([w[:128] for w in windows if len(w) >= 128]),
                                list(range(n_layers)))  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    layers = {}
    for layer in range(n_layers):
        x = ins[layer, :, 1:].reshape(-1, lm.d_model).float()  # [n, d_model]
        w_enc = torch.randn(width, lm.d_model, generator=gen) / lm.d_model**0.5
        w_dec = torch.randn(width, lm.d_model, generator=gen)
        layers[layer] = {
            "W_enc": w_enc,
            "W_dec": w_dec / w_dec.norm(dim=1, keepdim=True),
            "b_enc": -(x @ w_enc.T).quantile(1 - l0 / width, dim=0),
            "b_dec": torch.zeros(lm.d_model),
            "activation_function.threshold": torch.full((width,), 1e-4),
        }
    save_transcoder_set(layers, directory, scan="random", dtype="float16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", type=Path, default=None, help="a set directory (default: random)")
    ap.add_argument("--tokens", type=int, default=5000)
    ap.add_argument("--width", type=int, default=1536)
    ap.add_argument("--l0", type=float, default=32.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources = sorted(glob.glob(str(args.data / "corpus/*.jsonl"))) + [
        str(args.data / "gsm8k/train.jsonl")
    ]
    docs = list(islice(interleave_documents(sources, "heldout"), 600))  # every source
    lm = load_model(None, dtype=torch.bfloat16)
    work = Path(tempfile.mkdtemp(prefix="tc_atlas_cost_"))
    set_dir = args.set
    if set_dir is None:
        set_dir = work / "set"
        random_set(lm, docs[-50:], set_dir, args.width, args.l0)
    else:  # the atlas goes into a copy, never next to the real set
        shutil.copytree(set_dir, work / "set", ignore=shutil.ignore_patterns("atlas*"))
        set_dir = work / "set"
    wall, cpu = time.perf_counter(), time.process_time()
    path = build_transcoder_atlas(
        lm, set_dir, docs[:-50], checkpoint_dir=work / "ck", max_tokens=args.tokens,
        output_contexts=0,
    )  # fmt: skip
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pass_bytes = (work / "ck" / "pass.pt").stat().st_size
    atlas_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    t0 = time.perf_counter()
    atlas = TranscoderAtlas.load(set_dir)
    nodes = [(layer, f) for layer in range(0, 30, 2) for f in (5, 900, 1400)][:45]
    labels = [atlas.node_label(layer, f) for layer, f in nodes]
    label_s = time.perf_counter() - t0
    meta = atlas.meta
    n_live = meta["summary"]["n_live"]
    labelled = sum(
        bool(atlas.layer(layer).labels[i]) and atlas.layer(layer).live[i]
        for layer in atlas.layers
        for i in range(atlas.d_tc)
    )
    result = {
        "set": str(args.set or f"random {args.width} wide, l0 {args.l0}"),
        "tokens": meta["n_tokens"],
        "threads": args.threads,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cost": meta["cost"],
        "pass_state_mb": round(pass_bytes / 2**20, 1),
        "atlas_mb": round(atlas_bytes / 2**20, 2),
        "label_45_nodes_cold_s": round(label_s, 3),
        "n_labelled_nodes": sum(bool(x) for x in labels),
        "summary": meta["summary"],
        "live_with_label": f"{labelled} of {n_live}",
        "label_sources": {
            s: sum(x == s for layer in atlas.layers for x in atlas.layer(layer).label_sources)
            for s in ("ngram", "peaks", "none")
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
