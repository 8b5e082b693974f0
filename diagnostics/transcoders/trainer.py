"""Train a transcoder for every MLP of a model from one streaming forward pass.

Each forward of `windows_per_forward` text windows yields every layer's (MLP input, MLP output)
pairs; their tokens are shuffled and cut into batches, and each layer's transcoder takes its step
on its own pairs. Nothing is cached on disk but checkpoints (every layer's weights, Adam moments
and dead-feature counters, and how many windows were consumed), so an interrupted run resumes
where it stopped. The SAE trainer's module, learning-rate schedule and checkpoint files are reused.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diagnostics.documents import shuffled_documents
from diagnostics.language_model import LanguageModel
from diagnostics.sae.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from diagnostics.sae.harvest import pad_windows, token_windows
from diagnostics.sae.io import torch_dtype
from diagnostics.sae.trainer import lr_at
from diagnostics.sae.training_sae import TrainingPart
from diagnostics.transcoders.config import TranscoderTrainConfig
from diagnostics.transcoders.io import save_transcoder_set
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs
from diagnostics.transcoders.training_transcoder import TrainingTranscoder

CHECKPOINT_DIR = "checkpoint"
SET_DIR = "transcoders"


@dataclass
class LayerResult:
    """How one layer's transcoder ended training."""

    layer: int
    fvu: float  # mean over its last 20 steps, training batches
    l0: float  # mean active features per token over its last 20 steps
    dead_fraction: float  # features that had not fired for dead_after_tokens at the end
    threshold: float  # JumpReLU threshold in original units
    scale_in: float
    scale_out: float


@dataclass
class TranscoderTrainResult:
    """Every trained layer's tensors (circuit-tracer layout, float32) and how training went."""

    tensors: dict[int, dict[str, torch.Tensor]]
    layers: list[LayerResult]
    steps: int
    tokens_seen: int
    wall_seconds: float
    cpu_seconds: float
    set_dir: Path | None  # the saved set, when every layer of the model was trained
    history: list[dict] = field(default_factory=list)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def training_windows(lm: LanguageModel, cfg: TranscoderTrainConfig) -> Iterator[list[int]]:
    """The run's windows in a seeded order: the "train" split of the sources' documents shuffled
    together (every stretch of the stream holds every source in its share), then windows shuffled
    in pools of 4096 (the order is the same on resume)."""
    docs = shuffled_documents(cfg.sources, split="train", seed=cfg.seed)
    rng = random.Random(cfg.seed)
    pool: list[list[int]] = []
    for window in token_windows(lm.tokenizer, docs, cfg.ctx_len):
        pool.append(window)
        if len(pool) == 4096:
            rng.shuffle(pool)
            yield from pool
            pool = []
    rng.shuffle(pool)
    yield from pool


class StreamingPairs:
    """(MLP input, MLP output) pairs of every trained layer, batch by batch, from the window stream."""

    def __init__(self, lm: LanguageModel, cfg: TranscoderTrainConfig, layers: list[int]) -> None:
        self.lm, self.cfg, self.layers = lm, cfg, layers
        self.windows = training_windows(lm, cfg)
        self.windows_done = 0
        self.special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)))
        pad = lm.tokenizer.pad_token_id
        self.pad = int(pad) if pad is not None else 0
        self._x = self._y = None  # leftover rows [n_layers, n, d_model] (float32)

    def skip(self, n: int) -> None:
        """Skip the first n windows (those consumed before a resume)."""
        for _ in range(n):
            next(self.windows)
        self.windows_done = n

    def leftover(self) -> dict[str, torch.Tensor]:
        """Rows drawn from the stream but not yet trained on, to checkpoint."""
        if self._x is None:
            return {}
        return {"stream.x": self._x, "stream.y": self._y}

    def restore(self, saved: dict[str, torch.Tensor]) -> None:
        if "stream.x" in saved:
            self._x, self._y = saved["stream.x"], saved["stream.y"]

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = [w for _, w in zip(range(self.cfg.windows_per_forward), self.windows, strict=False)]
        if not batch:
            raise StopIteration("the sources ran out of training windows")
        self.windows_done += len(batch)
        ids, mask, keep = pad_windows(batch, self.pad, self.special)  # [b, s] each
        x, y = mlp_inputs_outputs(self.lm, ids.to(self.lm.device), self.layers, mask)
        return x[:, keep].float().cpu(), y[:, keep].float().cpu()  # [n_layers, n_keep, d_model]

    def next_rows(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh pairs per layer, shuffled across the windows of a forward: [n_layers, n, d]."""
        while self._x is None or self._x.shape[1] < n:
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.windows_done)
            x, y = self._forward()
            perm = torch.randperm(x.shape[1], generator=gen)
            x, y = x[:, perm], y[:, perm]
            self._x = x if self._x is None else torch.cat([self._x, x], 1)
            self._y = y if self._y is None else torch.cat([self._y, y], 1)
        x, y = self._x[:, :n], self._y[:, :n]
        self._x, self._y = self._x[:, n:], self._y[:, n:]
        return x, y


def train_transcoders(
    cfg: TranscoderTrainConfig, lm: LanguageModel, *, progress: bool = True
) -> TranscoderTrainResult:
    """Run (or resume) the training described by `cfg` on `lm` (loaded in cfg.model_dtype)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    layers = list(cfg.layers) if cfg.layers is not None else list(range(lm.n_layers))
    d_model, total = lm.d_model, cfg.total_steps
    out_dir = Path(cfg.out_dir).expanduser()
    ckpt = out_dir / CHECKPOINT_DIR
    models = {
        lay: TrainingTranscoder(
            d_model,
            cfg.d_transcoder,
            skip=cfg.skip,
            generator=torch.Generator().manual_seed(cfg.seed * 1000 + lay),
        )
        for lay in layers
    }
    optims = {
        lay: torch.optim.Adam(m.parameters(), lr=cfg.learning_rate(), betas=(0.9, 0.999))
        for lay, m in models.items()
    }
    since_fired = {lay: torch.zeros(cfg.d_transcoder, dtype=torch.long) for lay in layers}
    state: dict = {"step": 0, "windows_done": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0}
    parts = {f"L{lay}.": TrainingPart(models[lay], optims[lay], since_fired[lay]) for lay in layers}
    saved_rows: dict[str, torch.Tensor] = {}
    if has_checkpoint(ckpt):
        state, saved_rows = load_checkpoint(ckpt, parts)
    stream = StreamingPairs(lm, cfg, layers)
    stream.skip(int(state["windows_done"]))
    stream.restore(saved_rows)
    k_aux = cfg.k_aux or d_model // 2
    sel_dtype = torch_dtype(cfg.selection_dtype)

    step = int(state["step"])
    if step == 0:  # scales and starting biases from the first batch
        x, y = stream.next_rows(4 * cfg.batch_size)
        state["scales"] = {}
        for i, lay in enumerate(layers):
            s_in = d_model**0.5 / float(x[i].norm(dim=-1).mean())
            s_out = d_model**0.5 / float(y[i].norm(dim=-1).mean())
            state["scales"][str(lay)] = [s_in, s_out]
            models[lay].init_from(x[i] * s_in, y[i] * s_out)
    scales = {lay: state["scales"][str(lay)] for lay in layers}

    recent: dict[int, list[tuple[float, float]]] = {lay: [] for lay in layers}
    history: list[dict] = []
    wall0, cpu0, last_ckpt = time.perf_counter(), cpu_seconds(), time.perf_counter()
    bar = tqdm(
        total=total, initial=step, disable=not progress, desc="train transcoders", unit="step"
    )
    while step < total:
        x, y = stream.next_rows(cfg.batch_size)  # [n_layers, batch, d_model]
        lr = lr_at(step, total, cfg.learning_rate(), cfg.warmup_steps, cfg.decay_fraction)
        for i, lay in enumerate(layers):
            model, s_in, s_out = models[lay], *scales[lay]
            out = model.step(
                x[i] * s_in,
                target=y[i] * s_out,
                k=cfg.k,
                batch_topk=True,
                dead=since_fired[lay] >= cfg.dead_after_tokens,
                k_aux=k_aux,
                aux_rows=cfg.aux_rows,
                auxk_alpha=cfg.auxk_alpha,
                selection_dtype=sel_dtype,
            )
            parts[f"L{lay}."].update(out, lr, cfg.batch_size)
            recent[lay] = (recent[lay] + [(float(out.fvu), out.l0)])[-20:]
        step += 1
        bar.update(1)
        if step % 10 == 0 or step == total:
            row = _history_row(
                step, stream.windows_done, recent, since_fired, cfg, state, wall0, cpu0
            )
            history.append(row)
            bar.set_postfix(fvu=f"{row['mean_fvu']:.3f}", dead=f"{row['mean_dead']:.3f}")
        if time.perf_counter() - last_ckpt > cfg.checkpoint_every_s and step < total:
            state.update(step=step, windows_done=stream.windows_done)
            _accumulate_time(state, wall0, cpu0)
            wall0, cpu0, last_ckpt = time.perf_counter(), cpu_seconds(), time.perf_counter()
            save_checkpoint(ckpt, parts, state, extra=stream.leftover())
    bar.close()
    state.update(step=step, windows_done=stream.windows_done)
    _accumulate_time(state, wall0, cpu0)

    # thresholds on the stream's first windows (its most mixed part: later windows come from the
    # larger sources only, once the small ones ran out), so the saved JumpReLU fires k features
    # per token on average on text like the whole mix; calibrated on the stream's end instead,
    # late layers fired 3-4x k on held-out text and lost most of their explained variance
    x, _ = StreamingPairs(lm, cfg, layers).next_rows(cfg.threshold_tokens)
    tensors, results = {}, []
    for i, lay in enumerate(layers):
        model, (s_in, s_out) = models[lay], scales[lay]
        threshold = model.batch_topk_threshold(x[i] * s_in, cfg.k)
        tensors[lay] = model.export(scale_in=s_in, scale_out=s_out, threshold=threshold)
        fvus, l0s = zip(*recent[lay], strict=True) if recent[lay] else ((float("nan"),), (0.0,))
        results.append(
            LayerResult(
                layer=lay,
                fvu=sum(fvus) / len(fvus),
                l0=sum(l0s) / len(l0s),
                dead_fraction=float((since_fired[lay] >= cfg.dead_after_tokens).float().mean()),
                threshold=threshold / s_out,
                scale_in=s_in,
                scale_out=s_out,
            )
        )
    tokens = total * cfg.batch_size
    set_dir = None
    if layers == list(range(lm.n_layers)):
        record = {
            "model": lm.model_id,
            "training": cfg.to_dict(),
            "tokens": tokens,
            "steps": total,
            "wall_seconds": state["wall_seconds"],
            "cpu_seconds": state["cpu_seconds"],
            "layers": [r.__dict__ for r in results],
        }
        set_dir = save_transcoder_set(
            tensors,
            out_dir / SET_DIR,
            scan=f"driftscope/{lm.model_id.split('@')[0]}-plt-{cfg.d_transcoder}",
            dtype=cfg.save_dtype,
            record=record,
            mean_inputs={lay: models[lay].x_mean / scales[lay][0] for lay in layers},
        )
    return TranscoderTrainResult(
        tensors=tensors,
        layers=results,
        steps=total,
        tokens_seen=tokens,
        wall_seconds=state["wall_seconds"],
        cpu_seconds=state["cpu_seconds"],
        set_dir=set_dir,
        history=history,
    )


def _history_row(step, windows_done, recent, since_fired, cfg, state, wall0, cpu0) -> dict:
    fvus = [r[-1][0] for r in recent.values() if r]
    dead = [float((s >= cfg.dead_after_tokens).float().mean()) for s in since_fired.values()]
    return {
        "step": step,
        "windows_done": windows_done,
        "mean_fvu": sum(fvus) / max(len(fvus), 1),
        "max_fvu": max(fvus, default=float("nan")),
        "mean_dead": sum(dead) / max(len(dead), 1),
        "wall_seconds": state["wall_seconds"] + time.perf_counter() - wall0,
        "cpu_seconds": state["cpu_seconds"] + cpu_seconds() - cpu0,
    }


def _accumulate_time(state: dict, wall0: float, cpu0: float) -> None:
    state["wall_seconds"] += time.perf_counter() - wall0
    state["cpu_seconds"] += cpu_seconds() - cpu0
