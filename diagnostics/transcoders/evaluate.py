"""How well a transcoder set stands in for the model's MLPs, on held-out text.

Per layer: explained variance of the MLP output, L0, and the features that never fired. With every
MLP replaced by its transcoder at once (no error terms): how often the model still predicts the
same next token, and how much the cross-entropy on the text rises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diagnostics.documents import interleave_documents
from diagnostics.language_model import LanguageModel
from diagnostics.sae.harvest import pad_windows, token_windows
from diagnostics.transcoders.mlp_activations import hook_mlps, mlp_inputs_outputs

LayerTensors = dict[str, torch.Tensor]
"""One layer in circuit-tracer's layout (float32): W_enc, W_dec, b_enc, b_dec, threshold, W_skip."""


def encode(t: LayerTensors, x: torch.Tensor) -> torch.Tensor:
    """JumpReLU feature activations [..., d_tc] of MLP inputs x [..., d_model]."""
    pre = x @ t["W_enc"].T + t["b_enc"]
    return pre * (pre > t["activation_function.threshold"])


def decode(t: LayerTensors, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The MLP output [..., d_model] written by features f [..., d_tc] (plus the skip term of
    the MLP inputs x [..., d_model])."""
    y = f @ t["W_dec"] + t["b_dec"]
    return y + x @ t["W_skip"].T if "W_skip" in t else y


def transcode(t: LayerTensors, x: torch.Tensor) -> torch.Tensor:
    """The transcoder's MLP output [..., d_model] for MLP inputs x [..., d_model]."""
    return decode(t, encode(t, x), x)


@dataclass
class LayerEval:
    """One transcoder on held-out tokens."""

    layer: int
    explained_variance: float  # 1 - E||y - y_hat||^2 / E||y - E y||^2
    l0: float  # mean active features per token
    dead_fraction: float  # features that never fired on these tokens
    n_tokens: int


@dataclass
class ReplacementEval:
    """Every MLP replaced by its transcoder at once, no error terms."""

    next_token_agreement: float  # share of positions whose argmax matches the real model's
    ce_clean: float  # mean next-token cross-entropy of the real model (nats)
    ce_replaced: float  # the same with every MLP replaced
    ce_increase: float
    n_tokens: int


def heldout_windows(
    lm: LanguageModel, sources: list[str], max_tokens: int, ctx_len: int = 256
) -> list[list[int]]:
    """The first windows of the sources' held-out split (never trained on), up to max_tokens."""
    windows, total = [], 0
    for window in token_windows(lm.tokenizer, interleave_documents(sources, "heldout"), ctx_len):
        if total >= max_tokens:
            break
        windows.append(window)
        total += len(window) - 1
    return windows


def _batches(lm: LanguageModel, windows: list[list[int]], batch_size: int):
    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)))
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(windows), batch_size):
        yield pad_windows(windows[start : start + batch_size], int(pad), special)


@torch.no_grad()
def evaluate_layers(
    lm: LanguageModel,
    tensors: dict[int, LayerTensors],
    windows: list[list[int]],
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> list[LayerEval]:
    """Per-layer explained variance, L0 and dead fraction over the text tokens of `windows`."""
    layers = sorted(tensors)
    d_tc = {lay: tensors[lay]["W_enc"].shape[0] for lay in layers}
    sq_err = dict.fromkeys(layers, 0.0)
    sums = {lay: torch.zeros(lm.d_model, dtype=torch.float64) for lay in layers}
    sq_sums = dict.fromkeys(layers, 0.0)
    active = dict.fromkeys(layers, 0.0)
    fired = {lay: torch.zeros(d_tc[lay], dtype=torch.bool) for lay in layers}
    n = 0
    for ids, mask, keep in tqdm(
        list(_batches(lm, windows, batch_size)), disable=not progress, desc="eval transcoders"
    ):
        xs, ys = mlp_inputs_outputs(lm, ids.to(lm.device), layers, mask.to(lm.device))
        xs, ys = xs[:, keep].float().cpu(), ys[:, keep].float().cpu()  # [n_layers, n_keep, d]
        n += xs.shape[1]
        for i, lay in enumerate(layers):
            f = encode(tensors[lay], xs[i])  # [n_keep, d_tc]
            y_hat = decode(tensors[lay], f, xs[i])  # [n_keep, d_model]
            sq_err[lay] += float((ys[i] - y_hat).pow(2).sum())
            sums[lay] += ys[i].double().sum(0)
            sq_sums[lay] += float(ys[i].double().pow(2).sum())
            active[lay] += float((f > 0).sum())
            fired[lay] |= (f > 0).any(0)
    out = []
    for lay in layers:
        total_var = sq_sums[lay] - float(sums[lay].pow(2).sum()) / max(n, 1)
        out.append(
            LayerEval(
                layer=lay,
                explained_variance=1 - sq_err[lay] / max(total_var, 1e-12),
                l0=active[lay] / max(n, 1),
                dead_fraction=float((~fired[lay]).float().mean()),
                n_tokens=n,
            )
        )
    return out


@torch.no_grad()
def evaluate_replacement(
    lm: LanguageModel,
    tensors: dict[int, LayerTensors],
    windows: Iterable[list[int]],
    *,
    batch_size: int = 8,
) -> ReplacementEval:
    """Next-token agreement and CE increase with every MLP in `tensors` replaced at once."""
    agree = ce_clean = ce_rep = 0.0
    n = 0

    def replace(layer: int):
        def fn(x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
            return transcode(tensors[layer], x.float()).to(x.dtype)

        return fn

    for ids, mask, keep in _batches(lm, list(windows), batch_size):
        ids, mask = ids.to(lm.device), mask.to(lm.device)
        clean = lm.model(input_ids=ids, attention_mask=mask).logits.float().cpu()
        with hook_mlps(lm.model, {lay: replace(lay) for lay in tensors}):
            rep = lm.model(input_ids=ids, attention_mask=mask).logits.float().cpu()
        # predictions at position t are scored on token t+1, where t+1 is a text token
        target_ok = keep[:, 1:]  # [b, s-1]
        targets = ids[:, 1:].cpu()[target_ok]
        c, r = clean[:, :-1][target_ok], rep[:, :-1][target_ok]  # [m, vocab]
        agree += float((c.argmax(-1) == r.argmax(-1)).sum())
        ce_clean += float(F.cross_entropy(c, targets, reduction="sum"))
        ce_rep += float(F.cross_entropy(r, targets, reduction="sum"))
        n += len(targets)
    n = max(n, 1)
    return ReplacementEval(
        next_token_agreement=agree / n,
        ce_clean=ce_clean / n,
        ce_replaced=ce_rep / n,
        ce_increase=(ce_rep - ce_clean) / n,
        n_tokens=n,
    )
