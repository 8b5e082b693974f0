"""Our SAE trainer against EleutherAI sparsify on the same cached activations and token budget.

Both trainers see the same shuffled batches of one activation cache (same seed, same batch size,
same number of steps) at the same width and TopK k, and are judged on a second, held-out cache:
explained variance 1 - E||x - x_hat||^2 / E||x - E[x]||^2, L0, the fraction of latents that never
fire there, and training tokens/s (the training loop's wall clock only: no loading, calibration
or saving). Rows: ours (TopK, and BatchTopK as an extra), sparsify's SparseCoder with its default
recipe (SignSGD + schedule-free, "signum") and with its Adam recipe. Writes
benchmarks/results/sae_trainer_peer.json and prints a table.

    .venv/bin/python benchmarks/sae_trainer_peer.py --train-cache DIR --heldout-cache DIR \\
        [--tokens 1000000 --k 32 --expansion-factor 16 --batch-size 2048] [--ce]

sparsify is not a project dependency (its trainer runs the LLM itself, so its SparseCoder is
driven here on batches from our cache, following `sparsify/trainer.py` of eai-sparsify 1.3.3):

    .venv/bin/pip install --no-deps eai-sparsify==1.3.3 schedulefree einops natsort \\
        simple-parsing docstring-parser datasets dill multiprocess xxhash

`--ce` also splices every SAE into the model (`--model`, default the bundled one) and reports CE
loss recovered on the held-out cache's documents via `diagnostics.sae.evaluate.evaluate_sae`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from itertools import chain, count
from pathlib import Path
from typing import Any

import torch

from diagnostics.sae.activation_cache import ActivationCache, epoch_batches
from diagnostics.sae.convert import sparsify_to_sae
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.sae.trainer import input_scale, train
from diagnostics.sae.training_config import TrainConfig

RESULTS = Path(__file__).parent / "results" / "sae_trainer_peer.json"
RUNS = ("ours-topk", "ours-batchtopk", "sparsify-signum", "sparsify-adam")
SPARSIFY_INSTALL = (
    ".venv/bin/pip install --no-deps eai-sparsify==1.3.3 schedulefree einops natsort "
    "simple-parsing docstring-parser datasets dill multiprocess xxhash"
)


@dataclass
class RunResult:
    """One trained SAE (in original activation units) and how its training went."""

    name: str
    sae: SparseAutoencoder
    steps: int
    tokens: int
    seconds: float
    lr: float
    train_fvu_last50: float
    recipe: dict[str, Any] = field(default_factory=dict)


def batches(data: torch.Tensor, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """Exactly the fp32 batches our trainer draws: epoch e shuffled with seed * 1000 + e."""
    produced = 0
    for epoch in count():
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for batch in epoch_batches(data, batch_size, generator=gen):
            if produced == steps:
                return
            produced += 1
            yield batch


def run_ours(args: argparse.Namespace, architecture: str, steps: int, n_rows: int) -> RunResult:
    """Our trainer, unchanged, on the training cache (no checkpoints inside the timed loop)."""
    spe = n_rows // args.batch_size
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = TrainConfig(
            activations=str(args.train_cache),
            out_dir=out_dir,
            architecture=architecture,  # type: ignore[arg-type]
            expansion_factor=args.expansion_factor,
            k=args.k,
            batch_size=args.batch_size,
            epochs=(steps + 1e-6) / spe,  # int(epochs * spe) == steps
            checkpoint_every=steps + 1,
            seed=args.seed,
        )
        res = train(cfg, progress=False)
    if res.steps != steps:
        raise RuntimeError(f"our trainer ran {res.steps} steps, expected {steps}")
    d_sae = args.expansion_factor * res.sae.cfg.d_in
    recipe = {
        "optimizer": "torch.optim.Adam(betas=(0.9, 0.999))",
        "lr_schedule": f"linear warm-up {cfg.warmup_steps} steps, linear decay over the last "
        f"{cfg.decay_fraction:.0%}",
        "auxk_alpha": cfg.auxk_alpha,
        "dead_after_tokens": cfg.dead_after_tokens,
        "input_scaling": "x * s with E||x s|| = sqrt(d_in), folded back into the saved SAE",
        "b_dec_init": "mean of 20k sampled rows",
        "selection_dtype": cfg.selection_dtype,
    }
    return RunResult(
        name=f"ours-{architecture}",
        sae=res.sae,
        steps=res.steps,
        tokens=res.tokens_seen,
        seconds=res.seconds,
        lr=cfg.learning_rate(d_sae),
        train_fvu_last50=res.final_fvu,
        recipe=recipe,
    )


def run_sparsify(
    args: argparse.Namespace, optimizer: str, steps: int, data: torch.Tensor, scale: float
) -> RunResult:
    """sparsify's SparseCoder trained as `sparsify.Trainer.fit` does (loss_fn="fvu", no grad
    accumulation), on our batches times `scale`, then converted to our TopK SAE."""
    try:
        import sparsify
        from transformers import get_linear_schedule_with_warmup
    except ImportError as err:
        sys.exit(f"sparsify is not installed ({err}); install it with:\n  {SPARSIFY_INSTALL}")

    torch.manual_seed(args.seed)
    d_in = data.shape[1]
    sae_cfg = sparsify.SparseCoderConfig(expansion_factor=args.expansion_factor, k=args.k)
    coder = sparsify.SparseCoder(d_in, sae_cfg, "cpu", dtype=torch.float32)
    root = (coder.num_latents / 2**14) ** 0.5
    schedulers: list = []
    if optimizer == "signum":
        from schedulefree import ScheduleFreeWrapper
        from sparsify.sign_sgd import SignSGD

        lr = args.sparsify_lr or 5e-3 / root
        opt = ScheduleFreeWrapper(SignSGD(coder.parameters(), lr=lr), momentum=0.95)
        opt.train()
        sched_desc = "none (schedule-free, momentum 0.95)"
    else:
        lr = args.sparsify_lr or 2e-4 / root
        opt = torch.optim.Adam(coder.parameters(), lr=lr)
        schedulers = [get_linear_schedule_with_warmup(opt, args.sparsify_warmup, steps)]
        sched_desc = f"linear warm-up {args.sparsify_warmup} steps, then linear decay to 0"
    since_fired = torch.zeros(coder.num_latents, dtype=torch.long)
    recent_fvu: list[float] = []

    start = time.perf_counter()
    for step, batch in enumerate(batches(data, args.batch_size, steps, args.seed)):
        x = batch * scale
        if step == 0:  # b_dec starts at the first batch's mean
            coder.b_dec.data = x.mean(0)
        coder.set_decoder_norm_to_unit_norm()
        dead = since_fired > args.sparsify_dead_tokens if args.sparsify_auxk_alpha > 0 else None
        out = coder(x, dead_mask=dead, total_variance=(x - x.mean(0)).pow(2).sum())
        loss = out.fvu + args.sparsify_auxk_alpha * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        coder.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        for sched in schedulers:
            sched.step()
        since_fired += len(x)
        since_fired[out.latent_indices.flatten()] = 0
        recent_fvu = (recent_fvu + [float(out.fvu.detach())])[-50:]
    seconds = time.perf_counter() - start
    if optimizer == "signum":
        opt.eval()  # the averaged weights, as sparsify saves them
    sae = sparsify_to_sae(coder, input_scale=scale)
    with torch.no_grad():  # the converted SAE must reproduce sparsify's own forward
        x = data[:256].float()
        err = (coder(x * scale).sae_out / scale - sae(x)).norm(dim=1) / x.norm(dim=1)
    if float(err.max()) > 1e-4:
        raise RuntimeError(f"converted sparsify SAE deviates from sparsify: {float(err.max()):.2e}")

    recipe = {
        "optimizer": "ScheduleFreeWrapper(SignSGD)"
        if optimizer == "signum"
        else "torch.optim.Adam",
        "lr_rule": f"{'5e-3' if optimizer == 'signum' else '2e-4'} / sqrt(num_latents / 2**14)",
        "lr_schedule": sched_desc,
        "auxk_alpha": args.sparsify_auxk_alpha,
        "dead_feature_threshold": args.sparsify_dead_tokens,
        "input_scaling": "ours (x * s), folded back at conversion"
        if scale != 1.0
        else "none (raw activations, as sparsify)",
        "b_dec_init": "mean of the first batch",
        "init": "nn.Linear default encoder, W_dec = unit-norm copy, encoder bias 0",
        "decoder_norm": "renormalised before every forward; parallel grad removed",
    }
    return RunResult(
        name=f"sparsify-{optimizer}",
        sae=sae,
        steps=steps,
        tokens=steps * args.batch_size,
        seconds=seconds,
        lr=lr,
        train_fvu_last50=sum(recent_fvu) / max(len(recent_fvu), 1),
        recipe=recipe,
    )


@torch.no_grad()
def heldout_metrics(sae: SparseAutoencoder, x: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """Explained variance, L0, never-fired fraction and MSE of `sae` on rows x [n, d_in]."""
    mean = x.double().mean(0)
    sq_err = total_var = 0.0
    l0 = 0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for start in range(0, len(x), chunk):
        rows = x[start : start + chunk]
        f = sae.encode(rows)  # [n, d_sae]
        sq_err += float((rows - sae.decode(f)).double().pow(2).sum())
        total_var += float((rows.double() - mean).pow(2).sum())
        active = f > 0
        l0 += int(active.sum())
        fired |= active.any(0)
    return {
        "explained_variance": 1 - sq_err / total_var,
        "l0": l0 / len(x),
        "dead_fraction": float((~fired).float().mean()),
        "mse": sq_err / len(x),
    }


def ce_metrics(args: argparse.Namespace, saes: dict[str, SparseAutoencoder]) -> dict[str, dict]:
    """CE loss recovered (and friends) of every SAE spliced into the model on held-out text."""
    from diagnostics.documents import iter_documents
    from diagnostics.model_loading import load_model
    from diagnostics.sae.evaluate import evaluate_sae

    meta = ActivationCache(args.heldout_cache).meta
    lm = load_model(args.model)
    out = {}
    for name, sae in saes.items():
        docs = chain.from_iterable(iter_documents(src, meta.split) for src in meta.sources)
        result, _ = evaluate_sae(
            lm, sae, docs, max_tokens=args.ce_tokens, ctx_len=meta.ctx_len, progress=False
        )
        out[name] = {
            key: getattr(result, key)
            for key in ("ce_loss_recovered", "ce_increase", "kl_sae", "n_tokens")
        }
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-cache", type=Path, required=True)
    parser.add_argument("--heldout-cache", type=Path, required=True)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="training tokens per run")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion-factor", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {RUNS}")
    parser.add_argument("--eval-rows", type=int, default=65_536, help="held-out rows for EV")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--sparsify-raw-inputs",
        action="store_true",
        help="feed sparsify raw activations (its own recipe) instead of our input scaling",
    )
    parser.add_argument("--sparsify-lr", type=float, default=None, help="default: its LR rule")
    parser.add_argument("--sparsify-warmup", type=int, default=1000, help="Adam warm-up steps")
    parser.add_argument("--sparsify-auxk-alpha", type=float, default=0.0)
    parser.add_argument("--sparsify-dead-tokens", type=int, default=10_000_000)
    parser.add_argument("--ce", action="store_true", help="also CE loss recovered (runs the LLM)")
    parser.add_argument("--model", default="bundled", help="model for --ce")
    parser.add_argument("--ce-tokens", type=int, default=20_000, help="held-out tokens for --ce")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(args.runs) - set(RUNS)
    if unknown or not args.runs:
        parser.error(f"--runs takes names from {RUNS}, got {sorted(unknown) or 'none'}")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_cache, heldout = ActivationCache(args.train_cache), ActivationCache(args.heldout_cache)
    if train_cache.d_model != heldout.d_model:
        sys.exit(f"d_model differs: train {train_cache.d_model}, held-out {heldout.d_model}")
    n_rows = len(train_cache)
    steps = args.tokens // args.batch_size
    if steps < 1 or n_rows < args.batch_size:
        sys.exit("--tokens and the training cache must hold at least one batch")
    notes = [
        "same batches (our epoch shuffle, same seed), batch size, steps, width and k for all runs",
        "sparsify batches are tokens here (its Trainer counts sequences); no bf16 autocast and "
        "no TF32 on CPU; torch Adam instead of bitsandbytes Adam8bit",
    ]
    if args.heldout_cache.resolve() == args.train_cache.resolve():
        notes.append("held-out cache IS the training cache: EV is in-sample")
    if any(r == "sparsify-adam" for r in args.runs) and args.sparsify_warmup >= steps:
        notes.append(f"sparsify Adam warm-up ({args.sparsify_warmup}) >= steps ({steps})")
    if any(r.startswith("ours") for r in args.runs) and TrainConfig.warmup_steps >= steps:
        notes.append(f"our warm-up ({TrainConfig.warmup_steps}) >= steps ({steps})")
    if steps * args.batch_size > n_rows:
        notes.append(f"{steps * args.batch_size / n_rows:.2f} epochs over the training cache")

    our_scale = input_scale(train_cache)  # what our trainer multiplies its inputs by
    scale = 1.0 if args.sparsify_raw_inputs else our_scale
    data: torch.Tensor | None = None  # loaded when first needed (ours loads its own copy)
    eval_x = heldout.sample(args.eval_rows, seed=12_345)  # fp32 [n, d]
    results: list[RunResult] = []
    for name in args.runs:
        print(f"training {name} ({steps} steps of {args.batch_size})", file=sys.stderr, flush=True)
        if name.startswith("ours-"):
            results.append(run_ours(args, name.removeprefix("ours-"), steps, n_rows))
        else:
            data = train_cache.load() if data is None else data
            results.append(run_sparsify(args, name.removeprefix("sparsify-"), steps, data, scale))
        results[-1].sae.cfg.metadata.hook_name = train_cache.meta.hook_name
    ce = ce_metrics(args, {r.name: r.sae for r in results}) if args.ce else {}

    rows = []
    for r in results:
        rows.append(
            {
                "run": r.name,
                **heldout_metrics(r.sae, eval_x),
                "tokens_per_s": r.tokens / r.seconds,
                "train_seconds": r.seconds,
                "steps": r.steps,
                "tokens": r.tokens,
                "lr": r.lr,
                "train_fvu_last50": r.train_fvu_last50,
                **({"ce": ce[r.name]} if r.name in ce else {}),
                "recipe": r.recipe,
            }
        )
    result = {
        "train_cache": str(args.train_cache),
        "heldout_cache": str(args.heldout_cache),
        "train_rows": n_rows,
        "eval_rows": len(eval_x),
        "d_in": train_cache.d_model,
        "d_sae": args.expansion_factor * train_cache.d_model,
        "k": args.k,
        "batch_size": args.batch_size,
        "tokens": steps * args.batch_size,
        "seed": args.seed,
        "input_scale": our_scale,
        "sparsify_input_scale": scale,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sparsify": _version("eai-sparsify"),
        "notes": notes,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def print_table(result: dict) -> None:
    print(
        f"d_in={result['d_in']} d_sae={result['d_sae']} k={result['k']} "
        f"batch={result['batch_size']} tokens={result['tokens']:,} "
        f"eval_rows={result['eval_rows']:,} threads={result['torch_threads']}"
    )
    has_ce = any("ce" in row for row in result["rows"])
    head = f"{'run':<17}{'EV':>8}{'L0':>8}{'dead':>8}{'tok/s':>10}{'lr':>10}{'fvu(train)':>12}"
    print(head + (f"{'CE rec':>8}" if has_ce else ""))
    for row in result["rows"]:
        line = (
            f"{row['run']:<17}{row['explained_variance']:>8.4f}{row['l0']:>8.1f}"
            f"{row['dead_fraction']:>8.3f}{row['tokens_per_s']:>10,.0f}{row['lr']:>10.2e}"
            f"{row['train_fvu_last50']:>12.4f}"
        )
        if has_ce:
            rec = row.get("ce", {}).get("ce_loss_recovered", math.nan)
            line += f"{rec:>8.3f}"
        print(line)
    for note in result["notes"]:
        print(f"note: {note}")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
