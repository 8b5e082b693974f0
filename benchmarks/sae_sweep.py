"""Sweep SAE sparsity (k) on one activation cache and evaluate each SAE on held-out text.

Each run trains with the same recipe and token budget and differs only in k; every SAE is then
spliced into the model and evaluated on held-out documents (L0, explained variance, CE loss
recovered, CE increase, KL, dead fraction). Writes benchmarks/results/sae_sweep.json and prints
a markdown table (the one in docs/sae.md).

    .venv/bin/python benchmarks/sae_sweep.py --cache ~/.cache/driftscope/acts/l15-train \\
        --ks 32 48 60 --tokens 1500000 --eval-tokens 20000 --out-dir /tmp/sweep
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diagnostics.documents import interleave_documents
from diagnostics.model_loading import load_model
from diagnostics.sae.evaluate import evaluate_sae
from diagnostics.sae.trainer import train
from diagnostics.sae.training_config import TrainConfig

RESULTS = Path(__file__).parent / "results" / "sae_sweep.json"
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
HELDOUT_SOURCES = sorted((DATA / "corpus").glob("*.jsonl")) + [DATA / "gsm8k" / "train.jsonl"]
COLUMNS = (
    "k",
    "l0",
    "explained_variance",
    "ce_loss_recovered",
    "ce_increase",
    "kl_sae",
    "dead_fraction",
    "tokens_per_second",
)


def heldout_documents():
    """Held-out documents of the training sources, interleaved across sources."""
    return interleave_documents(HELDOUT_SOURCES, "heldout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 48, 60])
    parser.add_argument("--tokens", type=int, default=1_500_000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--eval-tokens", type=int, default=20_000)
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/driftscope-sweep"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    lm = load_model()
    rows = []
    for k in args.ks:
        cfg = TrainConfig(
            activations=args.cache,
            out_dir=str(args.out_dir / f"k{k}"),
            k=k,
            max_tokens=args.tokens,
            epochs=args.epochs,
        )
        result = train(cfg)
        ev, _ = evaluate_sae(lm, result.sae, heldout_documents(), max_tokens=args.eval_tokens)
        row = {"k": k, "tokens_per_second": result.tokens_per_second, "train_fvu": result.final_fvu}
        row |= {
            key: value for key, value in ev.to_dict().items() if key != "log10_density_histogram"
        }
        rows.append(row)
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"tokens": args.tokens, "epochs": args.epochs, "runs": rows}, indent=2) + "\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value > 100 else f"{value:.3f}"
    return str(value)


if __name__ == "__main__":
    main()
