"""Evaluate an SAE spliced into its model on held-out text (SAEBench / SAELens core formulas).

- L0: mean number of active latents per token.
- Explained variance: 1 - E||x - x_hat||^2 / E||x - E[x]||^2 (per-dimension mean removed).
- CE loss recovered: (CE_zero - CE_sae) / (CE_zero - CE_clean), where CE_sae replaces the residual
  by the reconstruction and CE_zero by zeros at the hook; plus the raw increase CE_sae - CE_clean
  and KL(clean || sae) per token, which the ratio can hide.
- Density: fraction of tokens on which each latent fires; dead = never fired on these tokens.

Special-token positions (the BOS-like first token, chat markers) keep their original residual in
every run: the SAE is not trained on them, and the attention sink they carry would otherwise
dominate the comparison (as SAEBench's option to exclude special tokens from reconstruction).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diagnostics.hooks import hook_resid_post
from diagnostics.language_model import LanguageModel, special_token_ids
from diagnostics.sae.harvest import pad_windows, token_windows
from diagnostics.sae.modules import SparseAutoencoder


@dataclass
class SaeEval:
    """Quality of an SAE on held-out text."""

    n_tokens: int
    l0: float
    explained_variance: float
    cosine_similarity: float  # mean cos(x, x_hat)
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_loss_recovered: float
    ce_increase: float  # nats/token, CE_sae - CE_clean
    kl_sae: float  # mean KL(clean || sae) per token, nats
    dead_fraction: float  # latents that never fired on these tokens
    dense_fraction: float  # latents firing on more than 10% of tokens
    seconds: float
    log10_density_histogram: dict = field(default_factory=dict)  # {"edges": [...], "counts": [...]}

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_sae(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    documents: Iterable[str],
    *,
    max_tokens: int = 50_000,
    ctx_len: int = 256,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[SaeEval, torch.Tensor]:
    """Evaluate on up to `max_tokens` text tokens; returns the numbers and the density [d_sae]."""
    layer = sae.cfg.hook_layer
    special = special_token_ids(lm.tokenizer)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    windows, total = [], 0
    for w in token_windows(lm.tokenizer, documents, ctx_len):
        windows.append(w)
        total += len(w) - 1
        if total >= max_tokens:
            break
    if not windows:
        raise ValueError("no evaluation text")

    sums = dict.fromkeys(("ce_clean", "ce_sae", "ce_zero", "kl", "n_pred"), 0.0)
    sq_err = x_sq = cos_sum = l0_sum = 0.0
    x_sum = torch.zeros(sae.cfg.d_in)
    n_tok = 0
    fired = torch.zeros(sae.cfg.d_sae)
    start = time.perf_counter()
    bar = tqdm(total=total, unit="tok", unit_scale=True, desc="eval sae", disable=not progress)
    for b in range(0, len(windows), batch_size):
        batch = windows[b : b + batch_size]
        ids, attn, text = pad_windows(batch, pad, special)  # [b, s]; text: judged positions
        ids, attn = ids.to(lm.device), attn.to(lm.device)

        clean, x = _clean_run(lm, layer, ids, attn)  # [b, s, V], [b, s, d]
        x = x[text].float()  # [n, d]
        f = sae.encode(x)  # [n, d_sae]
        x_hat = sae.decode(f)
        spliced = _replaced_run(lm, layer, ids, attn, text, lambda h: sae(h.float()))
        zeroed = _replaced_run(lm, layer, ids, attn, text, torch.zeros_like)

        # next-token predictions whose target is a text token
        pred_mask = text[:, 1:].to(ids.device)  # [b, s-1]
        target = ids[:, 1:][pred_mask]  # [n]
        logp = {
            name: logits[:, :-1][pred_mask].log_softmax(-1)  # [n, V]
            for name, logits in (("ce_clean", clean), ("ce_sae", spliced), ("ce_zero", zeroed))
        }
        for name, lp in logp.items():
            sums[name] -= float(lp.gather(1, target[:, None]).sum())
        lp_clean, lp_sae = logp["ce_clean"], logp["ce_sae"]
        sums["kl"] += float((lp_clean.exp() * (lp_clean - lp_sae)).sum())
        sums["n_pred"] += float(pred_mask.sum())

        sq_err += float((x - x_hat).pow(2).sum())
        x_sum += x.sum(0)
        x_sq += float(x.pow(2).sum())
        cos_sum += float(F.cosine_similarity(x, x_hat, dim=-1).sum())
        l0_sum += float((f > 0).sum())
        fired += (f > 0).sum(0).float()
        n_tok += len(x)
        bar.update(len(x))
    bar.close()

    n_pred = max(sums["n_pred"], 1.0)
    ce_clean, ce_sae, ce_zero = (sums[k] / n_pred for k in ("ce_clean", "ce_sae", "ce_zero"))
    total_var = x_sq - float(x_sum.pow(2).sum()) / n_tok  # sum ||x - mean||^2
    density = fired / n_tok
    live = density[density > 0]
    counts, edges = (
        torch.histogram(live.log10(), bins=40) if len(live) else (torch.zeros(0), torch.zeros(0))
    )
    result = SaeEval(
        n_tokens=n_tok,
        l0=l0_sum / n_tok,
        explained_variance=1 - sq_err / total_var,
        cosine_similarity=cos_sum / n_tok,
        ce_clean=ce_clean,
        ce_sae=ce_sae,
        ce_zero=ce_zero,
        ce_loss_recovered=(ce_zero - ce_sae) / (ce_zero - ce_clean),
        ce_increase=ce_sae - ce_clean,
        kl_sae=sums["kl"] / n_pred,
        dead_fraction=float((density == 0).float().mean()),
        dense_fraction=float((density > 0.1).float().mean()),
        seconds=time.perf_counter() - start,
        log10_density_histogram={"edges": edges.tolist(), "counts": counts.tolist()},
    )
    return result, density


def _clean_run(lm: LanguageModel, layer: int, ids: torch.Tensor, attn: torch.Tensor):
    """Logits [b, s, V] (float) and the residual at the hook [b, s, d] of an unmodified run."""
    captured: list[torch.Tensor] = []
    with hook_resid_post(lm, layer, captured.append):
        logits = lm.model(input_ids=ids, attention_mask=attn).logits.float()
    return logits, captured[0]


def _replaced_run(lm, layer, ids, attn, where: torch.Tensor, make) -> torch.Tensor:
    """Logits [b, s, V] with the residual replaced by make(residual) at positions `where` [b, s]."""

    def hook(x: torch.Tensor) -> torch.Tensor:
        return torch.where(where.to(x.device)[..., None], make(x).to(x.dtype), x)

    with hook_resid_post(lm, layer, hook):
        return lm.model(input_ids=ids, attention_mask=attn).logits.float()


def plot_log_density(density: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Histogram of log10 firing density of the live latents, with the dead count, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live = density[density > 0]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.hist(live.log10().numpy(), bins=50, color="#3b6ea8")
    ax.set_xlabel("log10 firing density (fraction of tokens)")
    ax.set_ylabel("latents")
    dead = int((density == 0).sum())
    ax.set_title(title or f"{len(live)} live latents, {dead} dead ({dead / len(density):.1%})")
    ax.axvline(math.log10(0.1), color="#b33", ls="--", lw=1, label="dense (10%)")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
