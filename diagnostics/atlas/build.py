"""Build a feature atlas: stream held-out text through the model (up to the hook layer) and the SAE.

Text windows (`token_windows`: a BOS-like first token, special tokens masked) are split by index:
every `score_every`-th window goes to the scoring split (cut into short contexts and used only to
score labels and descriptions, and the contexts of the causal output test), the others to the
explain split (labels, descriptions, max-activating contexts; the scoring split keeps the few
strongest contexts a feature card shows). Firing density, activation sums, maxima and quantile
histograms are over all text tokens of both splits. The pass is `diagnostics.atlas.collect`; this
module turns it into labels, scores, generic marks and the causal output test.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diagnostics.atlas.checkpoint import CHECKPOINT_EVERY, BuildCheckpoint
from diagnostics.atlas.collect import Collected, collect, vocab_size_of
from diagnostics.atlas.describe import describe, marks_word_starts, readable_label, sub_rule
from diagnostics.atlas.generic import (
    format_share,
    format_tokens,
    generic_mask,
    peak_format_share,
)
from diagnostics.atlas.labels import derive_rule, vocab_strings
from diagnostics.atlas.logit_effects import logit_effects
from diagnostics.atlas.records import AtlasMeta, LabelRule
from diagnostics.atlas.scoring import score_labels
from diagnostics.atlas.stats import PAD_TOKEN
from diagnostics.atlas.store import ATLAS_VERSION, U16_PAD, FeatureAtlas, sae_fingerprint
from diagnostics.atlas.token_change import N_CONTEXTS, TokenChange, edited_contexts, token_change
from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder

QUANTILE_LEVELS = (0.1, 0.5, 0.9, 0.99)
DENSE_THRESHOLD = 0.1
OUTPUT_CLAMP = 2.0  # the causal output test clamps a latent to this multiple of its max activation


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
    output_contexts: int = N_CONTEXTS,
    output_clamp: float = OUTPUT_CLAMP,
    sources: list[str] | None = None,
    split: str = "",
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> FeatureAtlas:
    """Compute statistics, contexts, logit effects, scored labels and descriptions, and the
    causal output test (`output_contexts` held-out contexts; 0 skips it) of every latent.

    With `checkpoint_dir` the build saves its progress there (the pass every `checkpoint_every`
    batches, the output test per block) and resumes from it when it holds a checkpoint of a build
    with the same settings (`diagnostics.atlas.checkpoint`); the caller removes it once the atlas
    is saved."""
    checkpoint = None
    if checkpoint_dir is not None:
        settings = {
            "model": lm.model_id, "sae": sae_fingerprint(sae.W_dec),
            "hook": sae.cfg.metadata.hook_name, "max_tokens": max_tokens, "ctx_len": ctx_len,
            "batch_size": batch_size, "n_contexts": n_contexts, "score_every": score_every,
            "score_context_len": score_context_len, "max_score_contexts": max_score_contexts,
            "output_contexts": output_contexts, "output_clamp": output_clamp,
            "sources": sources or [], "split": split, "seed": seed,
        }  # fmt: skip
        checkpoint = BuildCheckpoint(checkpoint_dir, settings, every=checkpoint_every)
    (collected,) = collect(
        lm, [sae], documents, max_tokens=max_tokens, ctx_len=ctx_len, batch_size=batch_size,
        n_contexts=n_contexts, progress=progress, score_every=score_every,
        score_context_len=score_context_len, max_score_contexts=max_score_contexts,
        checkpoint=checkpoint,
    )  # fmt: skip
    return finish_atlas(
        lm, sae, collected, ctx_len=ctx_len, progress=progress,
        score_context_len=score_context_len, n_logit_tokens=n_logit_tokens,
        output_contexts=output_contexts, output_clamp=output_clamp, sources=sources, split=split,
        seed=seed, checkpoint=checkpoint,
    )  # fmt: skip


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
    checkpoint: BuildCheckpoint | None = None,
) -> FeatureAtlas:
    """Labels, descriptions, scores, generic marks and the causal output test from a pass."""
    start = time.perf_counter() - collected.seconds
    tok = lm.tokenizer
    vocab_size = vocab_size_of(lm)
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
    ctx_rows = acc.top.tokens.numpy()  # [d_sae, k, width], PAD outside
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

    fmt_mask = format_tokens(strings, tok.all_special_ids)  # [vocab]
    fmt = format_share(keys // vocab_size, keys % vocab_size, fires, fmt_mask, sae.cfg.d_sae)
    peak_fmt = peak_format_share(
        acc.top.tokens.numpy(), acc.top.vals.numpy(), acc.before, np.append(fmt_mask, False),
        PAD_TOKEN,
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
            lm, sae, contexts, max_act * output_clamp, seed=seed, progress=progress,
            checkpoint=checkpoint,
        )  # fmt: skip
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
    ctx_tokens = _context_tokens(acc.top.tokens.numpy(), vocab_size)
    held_tokens = _context_tokens(acc.held.tokens.numpy(), vocab_size)
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
        "peak_format_share": peak_fmt,
        "ctx_tokens": ctx_tokens,
        "ctx_acts": acc.top.acts.numpy(),
        "ctx_vals": acc.top.vals.numpy().astype(np.float32),
        "held_ctx_tokens": held_tokens,
        "held_ctx_acts": acc.held.acts.numpy(),
        "held_ctx_vals": acc.held.vals.numpy().astype(np.float32),
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


def _context_tokens(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Context token ids as stored: uint16 with PAD U16_PAD when the vocabulary fits."""
    if vocab_size < U16_PAD:
        return np.where(tokens == PAD_TOKEN, U16_PAD, tokens).astype(np.uint16)
    return tokens


def _pad_rows(rows: list[list[int]], width: int, vocab_size: int) -> np.ndarray:
    """Token-id rows [n, width], uint16 (PAD U16_PAD) when the vocabulary fits, else int32 (-1)."""
    small = vocab_size < U16_PAD
    out = np.full((len(rows), width), U16_PAD if small else PAD_TOKEN, dtype=np.int64)
    for k, row in enumerate(rows):
        out[k, : len(row)] = row[:width]
    return out.astype(np.uint16 if small else np.int32)


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
    generic = live & generic_mask(
        arrays["density"], arrays["format_share"], arrays["first_share"],
        arrays["peak_format_share"],
    )  # fmt: skip
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
