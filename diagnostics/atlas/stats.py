"""Streaming per-latent statistics over batches of SAE features (no [n_tokens, d_sae] is kept).

Per batch of text windows the caller hands the dense features [batch, seq, d_sae] (zero at masked
positions) and token ids; the accumulator keeps, per latent: firing count (and how many of them on
a window's first text token), activation sum and max, a fixed log-spaced histogram of non-zero
activations (for quantiles), the top-k windows by peak activation with the token window around the
peak, and sparse (latent, token) and (latent, bigram) firing counts plus background token and
bigram counts for the labels. Everything is vectorised torch; no per-token loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

HIST_LOG10_MIN, HIST_LOG10_MAX, HIST_BINS = -4.0, 4.0, 128
"""Histogram of log10(activation): 128 bins over [1e-4, 1e4] (about 15% wide each)."""

PAD_TOKEN = -1
"""Token id marking positions outside a context window."""


@dataclass
class TokenCounts:
    """Sparse (latent, token) firing counts, sorted by key = latent * vocab + token."""

    keys: torch.Tensor  # [n_pairs] int64
    counts: torch.Tensor  # [n_pairs] int64
    vocab_size: int

    def of_latent(self, latent: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [n] and firing counts [n] of one latent."""
        lo = int(torch.searchsorted(self.keys, latent * self.vocab_size))
        hi = int(torch.searchsorted(self.keys, (latent + 1) * self.vocab_size))
        return self.keys[lo:hi] % self.vocab_size, self.counts[lo:hi]


@dataclass
class BigramCounts:
    """Sparse (latent, previous token, token) firing counts and background bigram counts.

    Firing keys are (latent * vocab + previous) * vocab + token, sorted; background keys are
    previous * vocab + token, sorted. A bigram fires when the latent fires on its second token.
    """

    keys: torch.Tensor  # [n_triples] int64
    counts: torch.Tensor  # [n_triples] int64
    background_keys: torch.Tensor  # [n_bigrams] int64
    background_counts: torch.Tensor  # [n_bigrams] int64
    vocab_size: int

    def of_latent(self, latent: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bigrams [n, 2], firing counts [n] and background occurrences [n] of one latent."""
        v2 = self.vocab_size**2
        lo = int(torch.searchsorted(self.keys, latent * v2))
        hi = int(torch.searchsorted(self.keys, (latent + 1) * v2))
        pair = self.keys[lo:hi] % v2
        if len(self.background_keys) == 0:  # no bigram seen at all
            return torch.zeros(0, 2, dtype=torch.long), self.counts[lo:hi], torch.ones_like(pair)
        at = torch.searchsorted(self.background_keys, pair).clamp(max=len(self.background_keys) - 1)
        occurrences = torch.where(
            self.background_keys[at] == pair, self.background_counts[at], torch.ones(())
        ).long()
        grams = torch.stack([pair // self.vocab_size, pair % self.vocab_size], 1)
        return grams, self.counts[lo:hi], occurrences


HELD_CONTEXTS = 3
"""Max-activating contexts kept per latent from the scoring split (what a feature card shows)."""


@dataclass
class TopContexts:
    """The strongest windows of every latent: peak values and the tokens around each peak."""

    vals: torch.Tensor  # [d_sae, k], 0 = empty slot, strongest first
    tokens: torch.Tensor  # [d_sae, k, width] int32, PAD outside text
    acts: torch.Tensor  # [d_sae, k, width] fp16, the latent's activation at each token

    @classmethod
    def empty(cls, d_sae: int, k: int, width: int) -> TopContexts:
        return cls(
            torch.zeros(d_sae, k),
            torch.full((d_sae, k, width), PAD_TOKEN, dtype=torch.int32),
            torch.zeros(d_sae, k, width, dtype=torch.float16),
        )


class FeatureStatsAccumulator:
    """Running statistics of every latent; see the module docstring."""

    def __init__(
        self,
        d_sae: int,
        vocab_size: int,
        *,
        n_contexts: int = 16,
        held_contexts: int = HELD_CONTEXTS,
        before: int = 24,
        after: int = 7,
    ) -> None:
        self.d_sae, self.vocab_size, self.k = d_sae, vocab_size, n_contexts
        self.before, self.after = before, after
        width = before + 1 + after
        self.n_tokens = 0
        self.n_explain_tokens = 0
        self.count = torch.zeros(d_sae, dtype=torch.int64)
        self.first_count = torch.zeros(d_sae, dtype=torch.int64)  # firings on a window's 1st token
        self.total = torch.zeros(d_sae, dtype=torch.float64)
        self.max = torch.zeros(d_sae)
        self.hist = torch.zeros(d_sae * HIST_BINS, dtype=torch.int64)  # [d_sae * bins]
        self.background = torch.zeros(vocab_size, dtype=torch.int64)  # explain split only
        self.top = TopContexts.empty(d_sae, n_contexts, width)  # explain split
        self.held = TopContexts.empty(d_sae, held_contexts, width)  # scoring split (cards)
        # int32 keys sort about 5x faster; they fit while d_sae * vocab < 2**31
        self._key_dtype = torch.int32 if d_sae * vocab_size < 2**31 else torch.int64
        self._tokens = _SparseCounter(self._key_dtype)  # (latent, token) firings, explain split
        self._offsets = torch.arange(-before, after + 1)  # [width]
        self._bigrams = _SparseCounter()  # (latent, previous, token) firings, explain split
        self._background_bigrams = _SparseCounter()  # (previous, token), explain split

    @torch.no_grad()
    def update(
        self, feats: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor, explain: torch.Tensor
    ) -> None:
        """Add a batch.

        feats [b, s, d_sae] float (already zero where `keep` is False), ids [b, s] int64 token ids,
        keep [b, s] bool text-token mask, explain [b] bool: windows whose tokens may be used for
        labels and max-activating contexts (the others are kept apart for label scoring).
        """
        b, s, d = feats.shape
        nz = (feats > 0).nonzero()  # [nnz, 3] (window, pos, latent)
        win, pos, lat = nz[:, 0], nz[:, 1], nz[:, 2]
        vals = feats[win, pos, lat].float()  # [nnz]
        self.n_tokens += int(keep.sum())
        self.count += torch.bincount(lat, minlength=d)
        first = keep & (keep.cumsum(1) == 1)  # [b, s] the first text token of each window
        self.first_count += torch.bincount(lat[first[win, pos]], minlength=d)
        self.total += torch.bincount(lat, weights=vals.double(), minlength=d)
        self.max = torch.maximum(self.max, feats.amax((0, 1)).float())
        scaled = (vals.log10() - HIST_LOG10_MIN) / (HIST_LOG10_MAX - HIST_LOG10_MIN) * HIST_BINS
        bins = scaled.long().clamp_(0, HIST_BINS - 1)
        self.hist += torch.bincount(lat * HIST_BINS + bins, minlength=d * HIST_BINS)

        # sparse (latent, token) counts and background counts, explain windows only
        ex = explain[win]
        keys = lat[ex].to(self._key_dtype) * self.vocab_size + ids[win[ex], pos[ex]].to(
            self._key_dtype
        )
        self._tokens.add(keys)
        ex_keep = keep & explain[:, None]  # [b, s]
        self.n_explain_tokens += int(ex_keep.sum())
        self.background += torch.bincount(ids[ex_keep], minlength=self.vocab_size)
        # bigrams: the previous position must be a text token of the same window
        prev_keep = torch.zeros_like(keep)
        prev_keep[:, 1:] = keep[:, :-1]
        prev_ids = torch.zeros_like(ids)
        prev_ids[:, 1:] = ids[:, :-1]
        v = self.vocab_size
        fb = ex & prev_keep[win, pos]
        wb, pb = win[fb], pos[fb]
        self._bigrams.add((lat[fb] * v + prev_ids[wb, pb]) * v + ids[wb, pb])
        bg = ex_keep & prev_keep
        self._background_bigrams.add(prev_ids[bg] * v + ids[bg])

        # peak activation and its position per (window, latent), from the non-zero entries
        wkey = win * d + lat  # [nnz]
        peak_val = torch.zeros(b * d).scatter_reduce_(0, wkey, vals, "amax")  # [b * d]
        at_peak = vals == peak_val[wkey]
        peak_pos = torch.full((b * d,), s, dtype=torch.long).scatter_reduce_(
            0, wkey[at_peak], pos[at_peak], "amin"
        )
        peak_val = peak_val.view(b, d)  # [b, d]
        peak_pos = peak_pos.view(b, d)
        # explain windows go to the max-activating contexts; scoring windows (held out from label
        # writing) to the few contexts a feature card shows
        self._merge(self.top, peak_val * explain[:, None], peak_pos, feats, ids, keep)
        self._merge(self.held, peak_val * ~explain[:, None], peak_pos, feats, ids, keep)

    def _merge(
        self,
        top: TopContexts,
        peak_val: torch.Tensor,
        peak_pos: torch.Tensor,
        feats: torch.Tensor,
        ids: torch.Tensor,
        keep: torch.Tensor,
    ) -> None:
        """Merge windows whose peak (peak_val [b, d], 0: not a candidate) beats a latent's
        current last context into its top contexts."""
        b, s, _ = feats.shape
        k = top.vals.shape[1]
        enter = peak_val.T > top.vals[:, -1:]  # [d, b]
        rows = enter.any(1).nonzero().squeeze(1)  # latents with a new context
        if len(rows) == 0:
            return
        el, eb = enter[rows].nonzero().unbind(1)  # entering pairs: row index into rows, window
        lat_e = rows[el]
        where = peak_pos[eb, lat_e][:, None] + self._offsets  # [n_enter, width]
        inside = (where >= 0) & (where < s)
        where_c = where.clamp(0, s - 1)
        inside &= keep[eb[:, None], where_c]
        width = where.shape[1]
        cand_tok = torch.full((len(rows), b, width), PAD_TOKEN, dtype=torch.int32)
        cand_act = torch.zeros(len(rows), b, width, dtype=torch.float16)
        cand_tok[el, eb] = torch.where(inside, ids[eb[:, None], where_c].int(), PAD_TOKEN)
        cand_act[el, eb] = torch.where(
            inside, feats[eb[:, None], where_c, lat_e[:, None]], 0
        ).half()
        cand_val = torch.where(enter[rows], peak_val.T[rows], torch.zeros(()))  # [r, b]
        vals_all = torch.cat([top.vals[rows], cand_val], dim=1)  # [r, k + b]
        new_vals, idx = vals_all.topk(k, dim=1)  # [r, k]
        gather = idx[:, :, None].expand(-1, -1, width)
        top.vals[rows] = new_vals
        top.tokens[rows] = torch.cat([top.tokens[rows], cand_tok], 1).gather(1, gather)
        top.acts[rows] = torch.cat([top.acts[rows], cand_act], 1).gather(1, gather)

    def token_counts(self) -> TokenCounts:
        keys, counts = self._tokens.result()
        return TokenCounts(keys.long(), counts, self.vocab_size)

    def bigram_counts(self) -> BigramCounts:
        keys, counts = self._bigrams.result()
        bkeys, bcounts = self._background_bigrams.result()
        return BigramCounts(keys, counts, bkeys, bcounts, self.vocab_size)

    def quantiles(self, levels: list[float]) -> np.ndarray:
        """Approximate activation quantiles given firing [d_sae, n_levels] (histogram bin centres)."""
        hist = self.hist.view(self.d_sae, HIST_BINS)
        cum = hist.cumsum(1).double()  # [d, bins]
        total = cum[:, -1:].clamp(min=1)
        width = (HIST_LOG10_MAX - HIST_LOG10_MIN) / HIST_BINS
        out = np.zeros((self.d_sae, len(levels)), dtype=np.float32)
        for j, q in enumerate(levels):
            bin_ = torch.searchsorted(cum, (q * total).contiguous()).clamp(max=HIST_BINS - 1)
            centre = HIST_LOG10_MIN + (bin_.squeeze(1).double() + 0.5) * width
            value = torch.where(self.count > 0, 10**centre, torch.zeros(()))
            out[:, j] = torch.minimum(value, self.max.double()).numpy()
        return out


class _SparseCounter:
    """Counts of integer keys, merged in sorted runs so memory stays near the distinct keys."""

    def __init__(self, dtype: torch.dtype = torch.int64, merge_every: int = 16) -> None:
        self.dtype = dtype
        self.keys = torch.zeros(0, dtype=dtype)
        self.counts = torch.zeros(0, dtype=torch.int64)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._merge_every = merge_every

    def add(self, keys: torch.Tensor) -> None:
        self._pending.append(_run_lengths(keys.to(self.dtype), None))
        if len(self._pending) >= self._merge_every:
            self._merge()

    def _merge(self) -> None:
        if self._pending:
            keys = torch.cat([self.keys, *(k for k, _ in self._pending)])
            counts = torch.cat([self.counts, *(c for _, c in self._pending)])
            self.keys, self.counts = _run_lengths(keys, counts)
            self._pending = []

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted distinct keys [u] and their counts [u]."""
        self._merge()
        return self.keys, self.counts


def _run_lengths(
    keys: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique keys [u] and their summed weights [u] (counts when weights is None)."""
    if len(keys) == 0:
        return keys, torch.zeros(0, dtype=torch.int64)
    sorted_keys, order = keys.sort()
    new = torch.ones(len(keys), dtype=torch.bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group = new.cumsum(0) - 1  # [n] index of each key's run
    w = torch.ones(len(keys), dtype=torch.int64) if weights is None else weights[order]
    sums = torch.zeros(int(group[-1]) + 1, dtype=torch.int64).index_add_(0, group, w)
    return sorted_keys[new], sums
