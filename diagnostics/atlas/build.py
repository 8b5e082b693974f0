"""Build a feature atlas: stream held-out text through the model (up to the hook layer) and the SAE.

Text windows (`token_windows`: a BOS-like first token, special tokens masked) are split by index:
every `score_every`-th window goes to the scoring split (cut into short contexts and used only to
score labels and descriptions, and the contexts of the causal output test), the others to the
explain split (labels, descriptions, max-activating contexts). Firing density, activation sums,
maxima and quantile histograms are over all text tokens of both splits.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from diagnostics.atlas.describe import describe, marks_word_starts, readable_label, sub_rule
from diagnostics.atlas.generic import format_share, format_tokens, generic_mask
from diagnostics.atlas.labels import derive_rule, vocab_strings
from diagnostics.atlas.logit_effects import logit_effects
from diagnostics.atlas.records import AtlasMeta, LabelRule
from diagnostics.atlas.scoring import score_labels
from diagnostics.atlas.stats import PAD_TOKEN, FeatureStatsAccumulator
from diagnostics.atlas.store import ATLAS_VERSION, U16_PAD, FeatureAtlas, sae_fingerprint
from diagnostics.atlas.token_change import TokenChange, edited_contexts, token_change
from diagnostics.hooks import residuals_at
from diagnostics.language_model import LanguageModel
from diagnostics.sae.harvest import pad_windows, token_windows
from diagnostics.sae.modules import SparseAutoencoder

QUANTILE_LEVELS = (0.1, 0.5, 0.9, 0.99)
DENSE_THRESHOLD = 0.1
OUTPUT_CLAMP = 2.0  # the causal output test clamps a latent to this multiple of its max activation


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
def build_atlas(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    documents: Iterable[str],
    *,
    max_tokens: int = 1_000_000,
    ctx_len: int = 256,
    batch_size: int = 16,
    n_contexts: int = 16,
    progress: bool = True,
    score_every: int = 5,
    score_context_len: int = 32,
    max_score_contexts: int = 8192,
    n_logit_tokens: int = 10,
    output_contexts: int = 32,
    output_clamp: float = OUTPUT_CLAMP,
    sources: list[str] | None = None,
    split: str = "",
    seed: int = 0,
) -> FeatureAtlas:
    """Compute statistics, contexts, logit effects, scored labels and descriptions, and the
    causal output test (`output_contexts` held-out contexts; 0 skips it) of every latent."""
    collected = collect(
        lm, sae, documents, max_tokens=max_tokens, ctx_len=ctx_len, batch_size=batch_size,
        n_contexts=n_contexts, progress=progress, score_every=score_every,
        score_context_len=score_context_len, max_score_contexts=max_score_contexts,
    )  # fmt: skip
    return finish_atlas(
        lm, sae, collected, ctx_len=ctx_len, progress=progress,
        score_context_len=score_context_len, n_logit_tokens=n_logit_tokens,
        output_contexts=output_contexts, output_clamp=output_clamp, sources=sources, split=split,
        seed=seed,
    )  # fmt: skip


@torch.no_grad()
def collect(
    lm: LanguageModel,
    sae: SparseAutoencoder,
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
) -> Collected:
    """The streaming pass: text windows through the model (to the hook layer) and the SAE."""
    start = time.perf_counter()
    layer = sae.cfg.hook_layer
    tok = lm.tokenizer
    vocab_size = _vocab_size(lm)
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    acc = FeatureStatsAccumulator(sae.cfg.d_sae, vocab_size, n_contexts=n_contexts)
    chunk_ids: list[torch.Tensor] = []  # [n, L] each
    chunk_acts: list[torch.Tensor] = []  # [n, d_sae] fp16 each
    score_windows: list[list[int]] = []  # the scoring split's windows (BOS first)
    n_chunks, n_windows = 0, 0
    bar = tqdm(total=max_tokens, unit="tok", unit_scale=True, desc="atlas", disable=not progress)
    for batch in _batches(token_windows(tok, documents, ctx_len), batch_size):
        ids, mask, keep = pad_windows(batch, pad, special)  # [b, s] each
        index = torch.arange(n_windows, n_windows + len(batch))
        explain = (index % score_every) != (score_every - 1)  # [b]
        if n_chunks >= max_score_contexts:
            explain[:] = True
        n_windows += len(batch)
        resid = residuals_at(lm, ids.to(lm.device), layer, mask.to(lm.device))  # [b, s, d]
        feats = sae.encode(resid.cpu()).float() * keep[..., None]  # [b, s, d_sae]
        acc.update(feats, ids, keep, explain)
        if (~explain).any():
            ids_s, acts_s = score_chunks(feats[~explain], ids, keep, ~explain, score_context_len)
            chunk_ids.append(ids_s)
            chunk_acts.append(acts_s)
            n_chunks += len(ids_s)
            score_windows += [w for w, e in zip(batch, explain.tolist(), strict=True) if not e]
        bar.update(int(keep.sum()))
        bar.set_postfix(tok_s=f"{acc.n_tokens / (time.perf_counter() - start):.0f}")
        if acc.n_tokens >= max_tokens:
            break
    bar.close()
    if acc.n_tokens == 0:
        raise ValueError("no text tokens: the sources are empty for this split")
    d = sae.cfg.d_sae
    return Collected(
        acc=acc,
        chunks=torch.cat(chunk_ids) if chunk_ids else torch.zeros(0, score_context_len).long(),
        chunk_acts=torch.cat(chunk_acts) if chunk_acts else torch.zeros(0, d).half(),
        score_windows=score_windows,
        n_windows=n_windows,
        seconds=time.perf_counter() - start,
    )


def _vocab_size(lm: LanguageModel) -> int:
    return max(len(lm.tokenizer), int(lm.model.get_output_embeddings().weight.shape[0]))


@torch.no_grad()
def finish_atlas(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    collected: Collected,
    *,
    ctx_len: int,
    progress: bool,
    score_context_len: int,
    n_logit_tokens: int,
    output_contexts: int,
    output_clamp: float,
    sources: list[str] | None,
    split: str,
    seed: int,
) -> FeatureAtlas:
    """Labels, descriptions, scores, generic marks and the causal output test from a pass."""
    start = time.perf_counter() - collected.seconds
    tok = lm.tokenizer
    vocab_size = _vocab_size(lm)
    acc, score_windows, n_windows = collected.acc, collected.score_windows, collected.n_windows
    strings = vocab_strings(tok, vocab_size)
    count = acc.count.numpy()
    density = (count / acc.n_tokens).astype(np.float32)
    mean = (acc.total.numpy() / np.maximum(count, 1)).astype(np.float32)
    prom_ids, prom_vals, supp_ids, supp_vals = logit_effects(lm, sae, k=n_logit_tokens)

    counts = acc.token_counts()
    keys, fires = counts.keys.numpy(), counts.counts.numpy()
    bounds = np.searchsorted(keys, np.arange(sae.cfg.d_sae + 1) * vocab_size)  # [d_sae + 1]
    background = acc.background.numpy()
    bigrams = acc.bigram_counts()
    rules: list[LabelRule] = []
    descriptions: list[str] = []
    ctx_rows = acc.top_tokens.numpy()  # [d_sae, k, width], PAD outside
    join_pieces = marks_word_starts(strings)
    unigram = np.zeros(sae.cfg.d_sae, dtype=bool)
    labels_iter = range(sae.cfg.d_sae)
    if progress:
        labels_iter = tqdm(labels_iter, desc="labels", unit="feat")
    for i in labels_iter:
        lo, hi = bounds[i], bounds[i + 1]
        rule = LabelRule()
        if count[i] > 0 and hi > lo:
            tok_ids = keys[lo:hi] % vocab_size
            rule, unigram[i] = derive_rule(
                tok_ids,
                fires[lo:hi],
                background[tok_ids],
                *bigrams.of_latent(i),
                acc.n_explain_tokens,
                strings,
                context_len=score_context_len,
            )
        rule.ngrams = [tok.decode(g) for g in rule.ngram_ids]
        contexts = [r[r != PAD_TOKEN].tolist() for r in ctx_rows[i]] if join_pieces else []
        desc = describe(rule, strings, contexts)
        rule.described = desc.elements
        rules.append(rule)
        descriptions.append(desc.text)

    chunks, cacts = collected.chunks, collected.chunk_acts
    scores = score_labels(rules, chunks, cacts, seed=seed, progress=progress)
    described = [sub_rule(r, r.described) for r in rules]
    desc_scores = score_labels(described, chunks, cacts, seed=seed, progress=progress)

    fmt = format_share(
        keys // vocab_size, keys % vocab_size, fires, format_tokens(strings, tok.all_special_ids),
        sae.cfg.d_sae,
    )  # fmt: skip
    first_share = (acc.first_count.numpy() / np.maximum(count, 1)).astype(np.float32)
    max_act = acc.max.numpy().astype(np.float32)
    outputs, output_meta = None, {}
    if output_contexts > 0 and score_windows:
        t0, c0 = time.perf_counter(), time.process_time()
        step = max(1, len(score_windows) // output_contexts)
        special_ids = set(tok.all_special_ids)
        contexts = edited_contexts(
            score_windows[::step],
            output_contexts,
            seed=seed,
            is_text=lambda t: t not in special_ids,
        )
        outputs = token_change(
            lm, sae, contexts, max_act * output_clamp, seed=seed, progress=progress
        )
        output_meta = {
            "n_contexts": outputs.n_contexts,
            "clamp": f"{output_clamp:g}x its max activation",
            "alpha": outputs.alpha,
            "n_null_per_level": int(outputs.null_max_lifts.shape[1]),
            "n_levels": len(outputs.null_norms),
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
        }
    labels = [
        readable_label(descriptions[i], _shown_outputs(outputs, strings, i))
        if count[i] > 0
        else "(dead)"
        for i in range(sae.cfg.d_sae)
    ]

    is_dense = density > DENSE_THRESHOLD
    ctx_tokens = acc.top_tokens.numpy()
    if vocab_size < U16_PAD:
        ctx_tokens = np.where(ctx_tokens == PAD_TOKEN, U16_PAD, ctx_tokens).astype(np.uint16)
    arrays = {
        "count": count.astype(np.int64),
        "density": density,
        "mean_activation": mean,
        "max_activation": acc.max.numpy().astype(np.float32),
        "quantiles": acc.quantiles(list(QUANTILE_LEVELS)),
        "histogram": acc.hist.view(sae.cfg.d_sae, -1).numpy().astype(np.uint32),
        "detection_auroc": scores.detection_auroc,
        "random_label_auroc": scores.random_label_auroc,
        "easy_auroc": scores.easy_auroc,
        "n_positive": scores.n_positive,
        "n_negative": scores.n_negative,
        "description_auroc": desc_scores.detection_auroc,
        "description_random_auroc": desc_scores.random_label_auroc,
        "description_n_positive": desc_scores.n_positive,
        "is_dense": is_dense.astype(np.uint8),
        "is_unigram": unigram.astype(np.uint8),
        "first_count": acc.first_count.numpy().astype(np.int64),
        "format_share": fmt,
        "first_share": first_share,
        "ctx_tokens": ctx_tokens,
        "ctx_acts": acc.top_acts.numpy(),
        "ctx_vals": acc.top_vals.numpy().astype(np.float32),
        "promoted_ids": prom_ids.numpy().astype(np.int32),
        "promoted_vals": prom_vals.numpy().astype(np.float32),
        "suppressed_ids": supp_ids.numpy().astype(np.int32),
        "suppressed_vals": supp_vals.numpy().astype(np.float32),
        "score_windows": _pad_rows(score_windows, ctx_len, vocab_size),
    }
    if outputs is not None:
        arrays |= {
            "output_ids": outputs.token_ids,
            "output_lifts": outputs.lifts,
            "output_threshold": outputs.threshold,
            "output_p_value": outputs.p_value,
            "output_edit_norm": outputs.edit_norm,
            "output_null_norms": outputs.null_norms,
            "output_null_max_lifts": outputs.null_max_lifts,
        }
    meta = AtlasMeta(
        version=ATLAS_VERSION,
        model_id=lm.model_id,
        hook_name=sae.cfg.metadata.hook_name,
        d_sae=sae.cfg.d_sae,
        sae_fingerprint=sae_fingerprint(sae.W_dec),
        n_tokens=acc.n_tokens,
        n_windows=n_windows,
        n_explain_tokens=acc.n_explain_tokens,
        n_score_contexts=len(chunks),
        score_context_len=score_context_len,
        ctx_len=ctx_len,
        sources=sources or [],
        split=split,
        quantile_levels=list(QUANTILE_LEVELS),
        dense_threshold=DENSE_THRESHOLD,
        build_seconds=round(time.perf_counter() - start, 1),
        output_test=output_meta,
    )
    meta.summary = summarize(arrays, rules)
    return FeatureAtlas(
        meta=meta,
        arrays=arrays,
        labels=labels,
        descriptions=descriptions,
        label_sources=["ngram" if not r.empty else "none" for r in rules],
        rules=[r.model_dump() for r in rules],
        vocab=strings,
        context_peak=acc.before,
    )


def _shown_outputs(outputs: TokenChange | None, strings: list[str], i: int) -> list[str]:
    """The output tokens of latent i that passed the causal test (none without the test)."""
    if outputs is None:
        return []
    passed = outputs.lifts[i] > outputs.threshold[i]
    return [strings[int(t)] for t, ok in zip(outputs.token_ids[i], passed, strict=True) if ok]


def _pad_rows(rows: list[list[int]], width: int, vocab_size: int) -> np.ndarray:
    """Token-id rows [n, width], uint16 (PAD U16_PAD) when the vocabulary fits, else int32 (-1)."""
    small = vocab_size < U16_PAD
    out = np.full((len(rows), width), U16_PAD if small else PAD_TOKEN, dtype=np.int64)
    for k, row in enumerate(rows):
        out[k, : len(row)] = row[:width]
    return out.astype(np.uint16 if small else np.int32)


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


def summarize(arrays: dict[str, np.ndarray], rules: list[LabelRule]) -> dict:
    """Headline numbers: live/dead/dense/unigram/generic counts, median label and description
    scores, and how many latents have a causal output side."""
    live = arrays["count"] > 0
    labelled = live & np.array([not r.empty for r in rules])
    det, rnd, easy = arrays["detection_auroc"], arrays["random_label_auroc"], arrays["easy_auroc"]
    scored = labelled & ~np.isnan(det)
    non_uni = scored & (arrays["is_unigram"] == 0)
    desc = arrays["description_auroc"]
    desc_scored = labelled & ~np.isnan(desc)
    generic = live & generic_mask(arrays["density"], arrays["format_share"], arrays["first_share"])
    causal = None
    if "output_lifts" in arrays:
        causal = int((live & (arrays["output_lifts"][:, 0] > arrays["output_threshold"])).sum())

    def med(x: np.ndarray, m: np.ndarray) -> float | None:
        v = x[m & ~np.isnan(x)]
        return round(float(statistics.median(v.tolist())), 4) if len(v) else None

    return {
        "n_latents": int(len(live)),
        "n_live": int(live.sum()),
        "n_dead": int((~live).sum()),
        "n_dense": int(arrays["is_dense"].sum()),
        "n_unigram": int(arrays["is_unigram"].sum()),
        "n_labelled": int(labelled.sum()),
        "n_scored": int(scored.sum()),
        "median_detection_auroc": med(det, scored),
        "median_random_label_auroc": med(rnd, scored),
        "median_easy_auroc": med(easy, scored),
        "median_detection_auroc_non_unigram": med(det, non_uni),
        "share_auroc_ge_0.75": round(float((det[scored] >= 0.75).mean()), 4)
        if scored.any()
        else None,
        "n_description_scored": int(desc_scored.sum()),
        "median_description_auroc": med(desc, desc_scored),
        "median_description_random_auroc": med(arrays["description_random_auroc"], desc_scored),
        "n_generic": int(generic.sum()),
        "n_causal_output": causal,
    }
