"""Evaluate a transcoder set on held-out text and write benchmarks/results/transcoders.json.

Per layer: explained variance of the MLP output, L0, dead fraction, pooled over the held-out
text and per source (a dictionary can hold on news and fail on chat logs). With all MLPs
replaced by their transcoders (no error terms): next-token agreement with the real model and the
CE increase.
`--record` also stores the numbers in the set's record.json (the integration test checks one
layer's EV against it).

    .venv/bin/python benchmarks/transcoders.py --eval-tokens 30000 --replacement-tokens 10000 \
        --source-tokens 2500 --record
"""

from __future__ import annotations

import argparse
import glob
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from diagnostics.model_loading import load_model
from diagnostics.transcoders.evaluate import evaluate_layers, evaluate_replacement, heldout_windows
from diagnostics.transcoders.io import RECORD_FILE, load_layer, read_config, read_record
from diagnostics.transcoders.shipped import shipped_transcoders_dir
from diagnostics.transcoders.trainer import cpu_seconds

DATA = Path(__file__).resolve().parents[2] / "shared/datasets"
OUT = Path(__file__).resolve().parent / "results/transcoders.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", type=Path, default=None, help="set directory (default: shipped)")
    ap.add_argument("--eval-tokens", type=int, default=50_000)
    ap.add_argument("--replacement-tokens", type=int, default=20_000)
    ap.add_argument("--source-tokens", type=int, default=2_500, help="per source (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--record", action="store_true", help="store the numbers in record.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    set_dir = args.set or shipped_transcoders_dir()
    n_layers = len(read_config(set_dir)["transcoders"])
    tensors = {layer: load_layer(set_dir, layer) for layer in range(n_layers)}
    sources = sorted(glob.glob(str(args.data / "corpus/*.jsonl"))) + [
        str(args.data / "gsm8k/train.jsonl")
    ]
    lm = load_model(None, dtype=torch.float32)
    wall, cpu = time.perf_counter(), cpu_seconds()
    layers = evaluate_layers(
        lm, tensors, heldout_windows(lm, sources, args.eval_tokens), progress=True
    )
    replacement = evaluate_replacement(
        lm, tensors, heldout_windows(lm, sources, args.replacement_tokens)
    )
    by_source = {
        Path(source).stem: _summary(
            evaluate_layers(lm, tensors, heldout_windows(lm, [source], args.source_tokens))
        )
        for source in (sources if args.source_tokens else [])
    }
    evs = [e.explained_variance for e in layers]
    result = {
        "set": str(set_dir),
        "layers": [e.__dict__ for e in layers],
        "median_ev": statistics.median(evs),
        "min_ev": min(evs),
        "max_dead_fraction": max(e.dead_fraction for e in layers),
        "mean_l0": statistics.mean(e.l0 for e in layers),
        "replacement": replacement.__dict__,
        "by_source": by_source,
        "eval_wall_s": time.perf_counter() - wall,
        "eval_cpu_s": cpu_seconds() - cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"median EV {result['median_ev']:.3f} (min {result['min_ev']:.3f}), "
        f"max dead {result['max_dead_fraction']:.3f}, mean L0 {result['mean_l0']:.1f}; "
        f"all MLPs replaced: next-token agreement {replacement.next_token_agreement:.3f}, "
        f"CE +{replacement.ce_increase:.3f} nats"
    )
    for name, row in by_source.items():
        print(f"  {name}: median EV {row['median_ev']:.3f}, min {row['min_ev']:.3f} "
              f"(layer {row['min_layer']}), mean L0 {row['mean_l0']:.1f}")  # fmt: skip
    if args.record:
        record = read_record(set_dir)
        record["eval"] = {k: v for k, v in result.items() if k != "set"}
        (set_dir / RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def _summary(layers) -> dict:
    """Median and lowest EV (with its layer) and mean L0 of one evaluation."""
    worst = min(layers, key=lambda e: e.explained_variance)
    return {
        "median_ev": statistics.median(e.explained_variance for e in layers),
        "min_ev": worst.explained_variance,
        "min_layer": worst.layer,
        "mean_l0": statistics.mean(e.l0 for e in layers),
        "n_tokens": layers[0].n_tokens,
    }


if __name__ == "__main__":
    main()
