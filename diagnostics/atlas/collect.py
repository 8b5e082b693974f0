"""The streaming pass of an atlas build: text windows through the model (up to the dictionaries'
last layer) and the dictionaries, into running statistics, max-activating contexts and the scoring
contexts; checkpointed and resumed (`diagnostics.atlas.checkpoint`).

One pass serves any number of dictionaries: every layer of a transcoder set reads its MLP input
from the same forward (`diagnostics.atlas.dictionary.encoder_inputs`), and each dictionary gets
its own accumulator. The text, its split and the scoring contexts' token ids are shared."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from diagnostics.atlas.checkpoint import BuildCheckpoint
from diagnostics.atlas.dictionary import encoder_inputs
from diagnostics.atlas.stats import PAD_TOKEN, FeatureStatsAccumulator
from diagnostics.language_model import LanguageModel
from diagnostics.sae.harvest import pad_windows, token_windows
from diagnostics.sae.modules import SparseAutoencoder


def _batches(windows: Iterator[list[int]], size: int) -> Iterator[list[list[int]]]:
    batch: list[list[int]] = []
    for w in windows:
        batch.append(w)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Collected:
    """What the streaming pass over the text gathers (everything after it is per latent)."""

    acc: FeatureStatsAccumulator
    chunks: torch.Tensor  # [C, score_context_len] scoring contexts, PAD outside text
    chunk_acts: torch.Tensor  # [C, d_sae] fp16, each latent's max activation in each
    score_windows: list[list[int]]  # the scoring split's windows (BOS first)
    n_windows: int
    seconds: float


@torch.no_grad()
def collect(
    lm: LanguageModel,
    dictionaries: Sequence[SparseAutoencoder],
    documents: Iterable[str],
    *,
    max_tokens: int,
    ctx_len: int,
    batch_size: int,
    n_contexts: int,
    progress: bool,
    score_every: int,
    score_context_len: int,
    max_score_contexts: int,
    checkpoint: BuildCheckpoint | None = None,
) -> list[Collected]:
    """The streaming pass: text windows through the model (to the last hook layer) and every
    dictionary, one `Collected` each; resumed from `checkpoint` when it holds a saved state,
    saved there every `checkpoint.every` batches."""
    start = time.perf_counter()
    tok = lm.tokenizer
    vocab_size = vocab_size_of(lm)
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    accs = [
        FeatureStatsAccumulator(d.cfg.d_sae, vocab_size, n_contexts=n_contexts)
        for d in dictionaries
    ]
    chunk_ids: list[torch.Tensor] = []  # [n, L] each
    chunk_acts: list[list[torch.Tensor]] = [[] for _ in dictionaries]  # [n, d_sae] fp16 each
    score_windows: list[list[int]] = []  # the scoring split's windows (BOS first)
    n_chunks, n_windows, n_batches, done, before = 0, 0, 0, False, 0.0
    saved = checkpoint.load_pass() if checkpoint is not None else None
    if saved is not None:
        accs, chunk_ids, chunk_acts = saved["accs"], saved["chunk_ids"], saved["chunk_acts"]
        score_windows, n_chunks, n_windows = (
            saved["score_windows"],
            saved["n_chunks"],
            saved["n_windows"],
        )
        n_batches, done, before = saved["n_batches"], saved["done"], saved["seconds"]

    def save(finished: bool) -> None:
        checkpoint.save_pass({
            "accs": accs, "chunk_ids": chunk_ids, "chunk_acts": chunk_acts,
            "score_windows": score_windows, "n_chunks": n_chunks, "n_windows": n_windows,
            "n_batches": n_batches, "done": finished,
            "seconds": before + time.perf_counter() - start,
        })  # fmt: skip

    n_tokens = accs[0].n_tokens
    bar = tqdm(total=max_tokens, unit="tok", unit_scale=True, desc="atlas", disable=not progress)
    bar.update(n_tokens)
    batches = _batches(token_windows(tok, documents, ctx_len), batch_size) if not done else ()
    for k, batch in enumerate(batches):
        if k < n_batches:  # consumed before the checkpoint: only the text is read again
            continue
        if n_tokens >= max_tokens:
            break
        ids, mask, keep = pad_windows(batch, pad, special)  # [b, s] each
        index = torch.arange(n_windows, n_windows + len(batch))
        explain = (index % score_every) != (score_every - 1)  # [b]
        if n_chunks >= max_score_contexts:
            explain[:] = True
        n_windows += len(batch)
        inputs = encoder_inputs(lm, dictionaries, ids.to(lm.device), mask.to(lm.device))
        for d, (dictionary, acc) in enumerate(zip(dictionaries, accs, strict=True)):
            feats = dictionary.encode(inputs[d].cpu()).float() * keep[..., None]  # [b, s, d_sae]
            acc.update(feats, ids, keep, explain)
            if (~explain).any():
                ids_s, acts_s = score_chunks(
                    feats[~explain], ids, keep, ~explain, score_context_len
                )
                chunk_acts[d].append(acts_s)
                if d == 0:
                    chunk_ids.append(ids_s)
                    n_chunks += len(ids_s)
        if (~explain).any():
            score_windows += [w for w, e in zip(batch, explain.tolist(), strict=True) if not e]
        n_tokens = accs[0].n_tokens
        bar.update(int(keep.sum()))
        bar.set_postfix(tok_s=f"{n_tokens / (time.perf_counter() - start):.0f}")
        n_batches = k + 1
        if checkpoint is not None and n_batches % checkpoint.every == 0:
            save(False)
    if checkpoint is not None and not done:
        save(True)
    bar.close()
    if n_tokens == 0:
        raise ValueError("no text tokens: the sources are empty for this split")
    chunks = torch.cat(chunk_ids) if chunk_ids else torch.zeros(0, score_context_len).long()
    seconds = before + time.perf_counter() - start
    return [
        Collected(
            acc=acc,
            chunks=chunks,
            chunk_acts=torch.cat(acts) if acts else torch.zeros(0, acc.d_sae).half(),
            score_windows=score_windows,
            n_windows=n_windows,
            seconds=seconds,
        )
        for acc, acts in zip(accs, chunk_acts, strict=True)
    ]


def vocab_size_of(lm: LanguageModel) -> int:
    return max(len(lm.tokenizer), int(lm.model.get_output_embeddings().weight.shape[0]))


def score_chunks(
    feats: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut scoring windows into contexts of `length` tokens after the BOS.

    feats [n, s, d_sae] of the scoring windows, ids/keep [b, s] of the batch, rows [b] bool which.
    Returns token ids [m, length] (PAD outside text) and max activations [m, d_sae] fp16.
    """
    n, s, d = feats.shape
    n_c = (s - 1) // length
    if n_c == 0:
        return torch.zeros(0, length, dtype=torch.long), torch.zeros(0, d, dtype=torch.float16)
    span = slice(1, 1 + n_c * length)
    tok = torch.where(keep[rows], ids[rows], PAD_TOKEN)[:, span].reshape(n * n_c, length)
    acts = feats[:, span].reshape(n, n_c, length, d).amax(2).reshape(n * n_c, d)
    full = (tok != PAD_TOKEN).sum(1) >= length // 2  # drop mostly-empty tail contexts
    return tok[full], acts[full].half()
