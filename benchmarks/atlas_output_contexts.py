"""How many held-out contexts the causal output test needs to pass or fail a latent with
confidence (issue 26). Writes benchmarks/results/atlas_output_contexts.json.

On the default SAE and model: the latents of one edit-norm level of the shipped atlas's test
(all that passed it there, plus random live ones), and `--null` random directions of that level's
norm, are clamped in `--contexts` held-out contexts (the atlas's scoring split, cut as the build
cuts them). Each keeps its per-context lifts of its 50 tokens of largest mean lift. Then, for
H = 2 .. --contexts, contexts are resampled with replacement (`--boot` times): each resample gives
the null's threshold (the 1 - alpha quantile of the random directions' largest mean lift) and each
latent's largest mean lift, so each latent's pass rate over resamples is the probability that the
test passes it on H fresh contexts. A latent is decided with confidence at H when that rate is
>= 0.95 or <= 0.05. Also the per-context coefficient of variation of each latent's top token.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/atlas_output_contexts.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diagnostics.atlas import FeatureAtlas
from diagnostics.atlas.build import OUTPUT_CLAMP
from diagnostics.atlas.store import U16_PAD
from diagnostics.atlas.token_change import ALPHA, LayerTail, context_state, edited_contexts
from diagnostics.model_loading import load_model
from diagnostics.sae import load_sae

RESULTS = Path(__file__).parent / "results" / "atlas_output_contexts.json"
KEEP = (
    50  # tokens of largest mean lift kept per edit (the maximum over them stands for the vocab's)
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", type=int, default=256)
    ap.add_argument("--null", type=int, default=100)
    ap.add_argument("--random-latents", type=int, default=40)
    ap.add_argument("--level", type=int, default=11, help="edit-norm level of the shipped test")
    ap.add_argument("--boot", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    lm = load_model("bundled", dtype=torch.float32)
    sae = load_sae("default")
    atlas = FeatureAtlas.for_sae(sae, "default")
    a = atlas.arrays
    levels = a["output_null_norms"]
    norm = a["output_edit_norm"]
    level = np.searchsorted(levels, norm * (1 - 1e-6))
    band = atlas.live & (level == args.level)
    passed = band & (a["output_lifts"][:, 0] > a["output_threshold"])
    rng = np.random.default_rng(args.seed)
    others = rng.choice(np.nonzero(band & ~passed)[0], args.random_latents, replace=False)
    latents = np.concatenate([np.nonzero(passed)[0], others])
    windows = [[int(t) for t in row if t != U16_PAD] for row in a["score_windows"]]
    step = max(1, len(windows) // args.contexts)
    special = set(lm.tokenizer.all_special_ids)
    contexts = edited_contexts(
        windows[::step], args.contexts, seed=args.seed, is_text=lambda t: t not in special
    )
    tail = LayerTail(lm, sae.cfg.hook_layer)
    states = [context_state(lm, sae, tail, c) for c in contexts]
    W_dec = sae.W_dec.detach().float()
    clamp = torch.as_tensor(a["max_activation"][latents] * OUTPUT_CLAMP)
    gen = torch.Generator().manual_seed(args.seed)
    units = torch.randn(args.null, W_dec.shape[1], generator=gen)
    units = units / units.norm(dim=1, keepdim=True) * float(levels[args.level])
    n_lat = len(latents)
    rows = torch.as_tensor(latents)

    def lift(state) -> torch.Tensor:  # [n_lat + null, vocab]
        deltas = torch.cat([(clamp - state.features[rows])[:, None] * W_dec[rows], units])
        return tail.logits(state, state.hidden[None] + deltas).softmax(-1) - state.probs

    with torch.no_grad():  # two passes: the mean picks the tokens, then per-context lifts of them
        top = (sum(lift(s) for s in states) / len(states)).topk(KEEP, dim=1).indices  # [n, KEEP]
        per_ctx = torch.stack([lift(s).gather(1, top) for s in states]).numpy()  # [H, n, KEEP]
    h_max = len(states)
    x = per_ctx[:, :n_lat, 0]  # [H, n_lat] each latent's top token, per context
    cv = x.std(0, ddof=1) / np.maximum(x.mean(0), 1e-12)
    out = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/atlas_output_contexts.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "level_norm": float(levels[args.level]),
        "n_latents": n_lat,
        "n_passed_in_shipped_atlas": int(passed.sum()),
        "n_null": args.null,
        "n_contexts_run": h_max,
        "alpha": ALPHA,
        "median_cv_top_token_passed": float(np.median(cv[: int(passed.sum())])),
        "median_cv_top_token_random": float(np.median(cv[int(passed.sum()) :])),
        "by_contexts": {},
    }
    boot_rng = np.random.default_rng(args.seed + 1)
    for h in (2, 4, 8, 16, 32, 64, 96, 128, 192, 256):
        if h > h_max:  # a resample larger than the contexts run would understate the spread
            break
        passes = np.zeros(n_lat)
        for _ in range(args.boot):
            pick = boot_rng.integers(0, h_max, h)
            best = per_ctx[pick].mean(0).max(1)  # [n_edits] largest mean lift over kept tokens
            threshold = np.quantile(best[n_lat:], 1 - ALPHA)
            passes += best[:n_lat] > threshold
        rate = passes / args.boot
        out["by_contexts"][str(h)] = {
            "decided_with_confidence": round(float(((rate >= 0.95) | (rate <= 0.05)).mean()), 4),
            "mean_pass_rate": round(float(rate.mean()), 4),
            "pass_rate_of_latents_passed_in_shipped_atlas": round(
                float(rate[: int(passed.sum())].mean()), 4
            ),
            "pass_rate_of_random_latents": round(float(rate[int(passed.sum()) :].mean()), 4),
        }
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out["cpu_seconds"] = round(time.process_time() - c0, 1)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
