"""Train a BatchTopK/TopK SAE on an activation cache, with checkpoints and resume.

Learning rate: linear warm-up, constant, linear decay to 0 over the last `decay_fraction`.
Checkpoints are safetensors (weights, Adam moments, dead-latent counters) plus a JSON of the
scalars; nothing is pickled. The result is saved for inference in the SAELens layout.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diagnostics.sae.activation_cache import ActivationCache, epoch_batches
from diagnostics.sae.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from diagnostics.sae.config import SaeMetadata
from diagnostics.sae.io import save_sae
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.sae.training_config import TrainConfig
from diagnostics.sae.training_sae import TrainingPart, TrainingSae

CHECKPOINT_DIR = "checkpoint"
SAE_DIR = "sae"


@dataclass
class TrainResult:
    """The trained inference SAE and how training went."""

    sae: SparseAutoencoder
    sae_dir: Path
    steps: int
    tokens_seen: int
    seconds: float
    tokens_per_second: float
    final_fvu: float  # mean over the last 50 steps
    dead_fraction: float  # latents that had not fired for dead_after_tokens at the end
    history: list[dict]  # sparse log of step metrics


def lr_at(step: int, total: int, base: float, warmup: int, decay_fraction: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    decay_start = int(total * (1 - decay_fraction))
    if step >= decay_start and total > decay_start:
        return base * max(0.0, (total - step) / (total - decay_start))
    return base


def input_scale(cache: ActivationCache, n: int = 20_000) -> float:
    """s such that E||x * s||^2 = d_in (SAELens `expected_average_only_in`)."""
    sample = cache.sample(n)
    return math.sqrt(cache.d_model) / float(sample.norm(dim=1).mean())


def train(cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Run (or resume) the training described by `cfg`; returns the saved inference SAE."""
    torch.manual_seed(cfg.seed)
    cache = ActivationCache(cfg.activations)
    data = cache.load(cfg.max_tokens, seed=cfg.seed)  # [n, d_in] fp16 in RAM
    d_in, n_rows = cache.d_model, len(data)
    d_sae = cfg.expansion_factor * d_in
    steps_per_epoch = n_rows // cfg.batch_size
    total_steps = max(1, int(cfg.epochs * steps_per_epoch))
    k_aux = cfg.k_aux or d_in // 2
    out_dir = Path(cfg.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    gen = torch.Generator().manual_seed(cfg.seed)
    model = TrainingSae(d_in, d_sae, generator=gen)
    optim = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate(d_sae), betas=(0.9, 0.999))
    since_fired = torch.zeros(d_sae, dtype=torch.long)  # tokens since each latent last fired
    state = {"step": 0, "scale": None, "seconds": 0.0}
    ckpt = out_dir / CHECKPOINT_DIR
    parts = {"": TrainingPart(model, optim, since_fired)}
    if has_checkpoint(ckpt):
        state, _ = load_checkpoint(ckpt, parts)
    else:
        state["scale"] = input_scale(cache) if cfg.normalize_inputs else 1.0
        with torch.no_grad():  # start b_dec at the mean input (sparsify)
            model.b_dec.copy_(cache.sample(20_000, seed=cfg.seed + 1).mean(0) * state["scale"])
    scale = float(state["scale"])
    sel_dtype = getattr(torch, cfg.selection_dtype)
    base_lr = cfg.learning_rate(d_sae)

    history: list[dict] = []
    recent_fvu: list[float] = []
    step = int(state["step"])
    start_time, start_step = time.perf_counter(), step
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="train sae", unit="step")
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        batches = epoch_batches(
            data, cfg.batch_size, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        )
        for i, batch in enumerate(batches):
            if i < offset:
                continue
            if step >= total_steps:
                break
            out = model.step(
                batch * scale,
                k=cfg.k,
                batch_topk=cfg.architecture == "batchtopk",
                dead=since_fired >= cfg.dead_after_tokens,
                k_aux=k_aux,
                aux_rows=cfg.aux_rows,
                auxk_alpha=cfg.auxk_alpha,
                selection_dtype=sel_dtype,
            )
            lr = lr_at(step, total_steps, base_lr, cfg.warmup_steps, cfg.decay_fraction)
            parts[""].update(out, lr, cfg.batch_size)
            step += 1
            recent_fvu = (recent_fvu + [float(out.fvu)])[-50:]
            if step % 25 == 0 or step == total_steps:
                elapsed = state["seconds"] + time.perf_counter() - start_time
                row = {
                    "step": step,
                    "fvu": float(out.fvu),
                    "auxk": float(out.auxk),
                    "l0": out.l0,
                    "dead_fraction": float((since_fired >= cfg.dead_after_tokens).float().mean()),
                    "lr": optim.param_groups[0]["lr"],
                    "tokens_per_s": (step - start_step)
                    * cfg.batch_size
                    / max(time.perf_counter() - start_time, 1e-9),
                    "elapsed_s": elapsed,
                }
                history.append(row)
                bar.set_postfix(
                    fvu=f"{row['fvu']:.3f}",
                    l0=f"{row['l0']:.1f}",
                    dead=f"{row['dead_fraction']:.3f}",
                    tok_s=f"{row['tokens_per_s']:.0f}",
                )
            bar.update(1)
            if step % cfg.checkpoint_every == 0 and step < total_steps:
                state["step"] = step
                state["seconds"] += time.perf_counter() - start_time
                start_time, start_step = time.perf_counter(), step
                save_checkpoint(ckpt, parts, state)
    bar.close()

    seconds = state["seconds"] + time.perf_counter() - start_time
    tokens_seen = total_steps * cfg.batch_size
    metadata = SaeMetadata(
        model_name=cache.meta.model_id,
        hook_name=cache.meta.hook_name,
        dataset=cfg.dataset or ", ".join(cache.meta.sources),
        training_tokens=tokens_seen,
        context_size=cache.meta.ctx_len,
        prepend_bos=True,
        extra={
            "distinct_training_tokens": n_rows,
            "training": cfg.to_dict(),
            "input_scale": scale,
            "train_seconds": seconds,
            "harvest_model_dtype": cache.meta.model_dtype,
            "dead_fraction_training": float((since_fired >= cfg.dead_after_tokens).float().mean()),
            "dead_after_tokens": cfg.dead_after_tokens,
        },
    )
    threshold = 0.0
    if cfg.architecture == "batchtopk":  # calibrated so the inference L0 on training data is k
        sample = cache.sample(cfg.threshold_tokens, seed=cfg.seed + 2) * scale
        threshold = model.batch_topk_threshold(sample, cfg.k)
    metadata.extra["threshold_scaled"] = threshold
    sae = model.to_inference(
        scale=scale, architecture=cfg.architecture, k=cfg.k, threshold=threshold, metadata=metadata
    )
    sae_dir = save_sae(sae, out_dir / SAE_DIR, dtype=cfg.save_dtype)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    return TrainResult(
        sae=sae,
        sae_dir=sae_dir,
        steps=total_steps,
        tokens_seen=tokens_seen,
        seconds=seconds,
        tokens_per_second=tokens_seen / max(seconds, 1e-9),
        final_fvu=sum(recent_fvu) / max(len(recent_fvu), 1),
        dead_fraction=float((since_fired >= cfg.dead_after_tokens).float().mean()),
        history=history,
    )
