"""Harvest residual-stream activations from text into a memory-mapped cache.

The model runs only up to the hook layer. Each window starts with the tokenizer's BOS-like token
(`<|endoftext|>` for SmolLM2) so position 0 is never a real text token; that token and every other
special token are masked out and not stored. The cache holds fp16 activations [n_tokens, d_model]
(`activations.npy`), the token id of every row (`token_ids.npy`) and the first row of every window
(`window_starts.npy`), so several training epochs cost no model passes and contexts can be rebuilt.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diagnostics.hooks import resid_post_name, residuals_at
from diagnostics.language_model import LanguageModel, bos_like_id

ACTS_FILE = "activations.npy"
TOKENS_FILE = "token_ids.npy"
WINDOWS_FILE = "window_starts.npy"
META_FILE = "meta.json"


@dataclass
class CacheMeta:
    """What an activation cache holds and how it was made."""

    model_id: str
    hook_name: str
    d_model: int
    n_tokens: int
    ctx_len: int
    sources: list[str]
    split: str
    model_dtype: str
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def token_windows(tokenizer, documents: Iterable[str], ctx_len: int, min_tokens: int = 8):
    """Yield windows of token ids: [bos] + up to ctx_len - 1 text tokens; short tails are dropped."""
    bos = bos_like_id(tokenizer)
    body = ctx_len - 1
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), body):
            chunk = ids[start : start + body]
            if len(chunk) >= min(min_tokens, body):
                yield [bos, *chunk]


def pad_windows(
    batch: list[list[int]], pad: int, special: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad windows: ids [b, s], attention mask [b, s], and text [b, s] (real, non-special)."""
    width = max(len(w) for w in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, w in enumerate(batch):
        ids[i, : len(w)] = torch.tensor(w)
        mask[i, : len(w)] = 1
    return ids, mask, mask.bool() & ~torch.isin(ids, special)


def harvest(
    lm: LanguageModel,
    documents: Iterable[str],
    out_dir: str | Path,
    *,
    layer: int,
    ctx_len: int = 256,
    batch_size: int = 32,
    max_tokens: int | None = None,
    sources: list[str] | None = None,
    split: str = "all",
    seed: int = 0,
) -> CacheMeta:
    """Write the activations of `documents` at `blocks.{layer}.hook_resid_post` to `out_dir`."""
    out_dir = Path(out_dir)
    windows = list(token_windows(lm.tokenizer, documents, ctx_len))
    random.Random(seed).shuffle(windows)  # rows of a window stay together; any prefix is a sample
    special_ids = set(lm.tokenizer.all_special_ids)
    special = torch.tensor(sorted(special_ids))
    counts = [sum(1 for t in w if t not in special_ids) for w in windows]
    if max_tokens is not None:
        keep, total = 0, 0
        while keep < len(windows) and total < max_tokens:
            total += counts[keep]
            keep += 1
        windows, counts = windows[:keep], counts[:keep]
    n_tokens = int(sum(counts))
    if n_tokens == 0:
        raise ValueError("no text tokens to harvest: the sources are empty for this split")

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    acts = np.lib.format.open_memmap(tmp / ACTS_FILE, "w+", np.float16, (n_tokens, lm.d_model))
    tok_ids = np.lib.format.open_memmap(tmp / TOKENS_FILE, "w+", np.int32, (n_tokens,))
    # row where each window's stored tokens begin, so contexts can be rebuilt from token_ids
    np.save(tmp / WINDOWS_FILE, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    start, row = time.perf_counter(), 0
    bar = tqdm(
        total=n_tokens, unit="tok", unit_scale=True, desc=f"harvest {resid_post_name(layer)}"
    )
    for b in range(0, len(windows), batch_size):
        batch = windows[b : b + batch_size]
        ids, mask, keep = pad_windows(batch, pad, special)  # [batch, width] each
        resid = residuals_at(lm, ids.to(lm.device), layer, mask.to(lm.device))  # [batch, width, d]
        flat = resid.float().cpu()[keep]  # [n_keep, d]
        acts[row : row + len(flat)] = flat.numpy().astype(np.float16)
        tok_ids[row : row + len(flat)] = ids[keep].numpy()
        row += len(flat)
        bar.update(len(flat))
        bar.set_postfix(tok_s=f"{row / (time.perf_counter() - start):.0f}")
    bar.close()
    acts.flush()
    tok_ids.flush()
    meta = CacheMeta(
        model_id=lm.model_id,
        hook_name=resid_post_name(layer),
        d_model=lm.d_model,
        n_tokens=n_tokens,
        ctx_len=ctx_len,
        sources=sources or [],
        split=split,
        model_dtype=str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        seconds=time.perf_counter() - start,
    )
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return meta
