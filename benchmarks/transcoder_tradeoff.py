"""Width and skip trade-off of per-layer transcoders on a short run, from one config.

Trains each variant (width x skip) on a few layers with the same stream and budget, then scores
each layer's transcoder on held-out tokens. Writes benchmarks/results/transcoder_tradeoff.json.

    .venv/bin/python benchmarks/transcoder_tradeoff.py --tokens 153600 --layers 2 8 14
"""

from __future__ import annotations

import argparse
import glob
import json
import shutil
import time
from pathlib import Path

import torch

from diagnostics.model_loading import load_model
from diagnostics.transcoders.config import TranscoderTrainConfig
from diagnostics.transcoders.evaluate import evaluate_layers, heldout_windows
from diagnostics.transcoders.trainer import cpu_seconds, train_transcoders

DATA = Path(__file__).resolve().parents[2] / "shared/datasets"
OUT = Path(__file__).resolve().parent / "results/transcoder_tradeoff.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=153_600)
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 8, 14])
    ap.add_argument("--widths", type=int, nargs="+", default=[1536, 2304])
    ap.add_argument("--eval-tokens", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources = sorted(glob.glob(str(args.data / "corpus/*.jsonl"))) + [
        str(args.data / "gsm8k/train.jsonl")
    ]
    train_lm = load_model(None, dtype=torch.bfloat16)
    eval_lm = load_model(None, dtype=torch.float32)
    windows = heldout_windows(eval_lm, sources, args.eval_tokens)
    rows = []
    for width in args.widths:
        for skip in (True, False):
            out_dir = Path(f"/tmp/transcoder-tradeoff-{width}-{int(skip)}")
            shutil.rmtree(out_dir, ignore_errors=True)
            cfg = TranscoderTrainConfig(
                sources=sources,
                out_dir=str(out_dir),
                layers=args.layers,
                d_transcoder=width,
                skip=skip,
                max_tokens=args.tokens,
                checkpoint_every_s=1e9,
            )
            wall, cpu = time.perf_counter(), cpu_seconds()
            result = train_transcoders(cfg, train_lm, progress=False)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            evals = evaluate_layers(eval_lm, result.tensors, windows)
            params = sum(t.numel() for lay in result.tensors.values() for t in lay.values())
            row = {
                "d_transcoder": width,
                "skip": skip,
                "tokens": result.tokens_seen,
                "train_wall_s": wall,
                "train_cpu_s": cpu,
                "fp16_mb_per_layer": params * 2 / len(result.tensors) / 1e6,
                "layers": [e.__dict__ for e in evals],
                "mean_ev": sum(e.explained_variance for e in evals) / len(evals),
            }
            rows.append(row)
            print(
                f"width {width} skip {skip}: mean held-out EV {row['mean_ev']:.3f} "
                f"({', '.join(f'L{e.layer} {e.explained_variance:.3f}' for e in evals)}), "
                f"{cpu:.0f} CPU-s",
                flush=True,
            )
    OUT.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "variants": rows}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
