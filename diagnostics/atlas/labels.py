"""Offline labels: the tokens and bigrams a latent fires on, chosen for precision, plus outputs.

Candidates are the tokens and bigrams (previous token, token) on which latent i fires in the
explain split, counted as `fires` out of `occurrences`. A candidate must be over-represented among
the firings: log-odds z >= 3 against its background frequency, with an informative Dirichlet prior
(Monroe et al. 2008); for n firings, a_t on t, background count b_t among N tokens, α_t = α0 b_t/N,

    delta_t = log((a_t+α_t)/(n+α0-a_t-α_t)) - log((b_t+α_t)/(N+α0-b_t-α_t)),
    z_t = delta_t / sqrt(1/(a_t+α_t) + 1/(b_t+α_t)).

Candidates are then taken in order of the Wilson lower bound (95%) of their precision
(fires / occurrences), so a well-supported 40-of-50 comes before a lucky 3-of-3. After each,
the rule's expected separation on scoring contexts of `context_len` tokens is estimated as Youden's
J = TPR - FPR, with TPR the rule's precision and FPR the chance that the latent fires elsewhere in
a context without a match. The rule is the longest prefix whose J is within 30% of the best one:
a label that says where the latent fires reliably (what detection AUROC scores), widened as far as
that stays true. A bigram is dropped once its second token is in the rule on its own. Each element
keeps its firing count and occurrences, from which `diagnostics.atlas.describe` writes the short
description.
"""

from __future__ import annotations

import numpy as np

from diagnostics.atlas.records import LabelRule
from diagnostics.atlas.surface import show_token

PRIOR = 100.0
MIN_Z = 3.0
MIN_FIRES = 5  # firings below which a latent gets no label
MIN_CANDIDATE_FIRES = 2
MIN_OCCURRENCES = 3
MAX_CANDIDATES = 64
MAX_ELEMENTS = 10
J_TOLERANCE = 0.3  # keep widening the rule while J stays within this share of the best J
UNIGRAM_COVERAGE = 0.8  # is_unigram: one token holds >= 80% of firings ...
UNIGRAM_PRECISION = 0.5  # ... and the latent fires on >= 50% of that token's occurrences


def vocab_strings(tokenizer, vocab_size: int) -> list[str]:
    """The decoded text of every token id (special tokens included); decoded once per tokenizer
    (a transcoder set's atlas finishes 30 layers with it; do not modify the list)."""
    if _VOCAB[0] is not tokenizer or _VOCAB[1] != vocab_size:
        strings = tokenizer.batch_decode([[i] for i in range(vocab_size)])
        _VOCAB[:] = [tokenizer, vocab_size, [str(s) for s in strings]]
    return _VOCAB[2]


_VOCAB: list = [None, 0, []]  # the last tokenizer (held, so never another's), size, strings


def log_odds(a, n: int, b, total: int, prior: float = PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """(delta [m], z [m]) of firing counts `a` [m] against background counts `b` [m]."""
    a = np.asarray(a, dtype=np.float64)
    b = np.maximum(np.asarray(b, dtype=np.float64), 1.0)
    alpha = prior * b / max(total, 1)
    delta = np.log((a + alpha) / np.maximum(n + prior - a - alpha, 1e-9)) - np.log(
        (b + alpha) / np.maximum(total + prior - b - alpha, 1e-9)
    )
    z = delta / np.sqrt(1 / (a + alpha) + 1 / (b + alpha))
    return delta, z


def wilson_lower_bound(hits, trials, z: float = 1.96) -> np.ndarray:
    """Lower end of the Wilson score interval of hits/trials (elementwise)."""
    n = np.maximum(np.asarray(trials, dtype=np.float64), 1.0)
    p = np.asarray(hits, dtype=np.float64) / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def derive_rule(
    tok_ids,
    tok_fires,
    tok_occurrences,
    bigrams,
    bigram_fires,
    bigram_occurrences,
    n_background: int,
    strings: list[str],
    *,
    context_len: int = 32,
) -> tuple[LabelRule, bool]:
    """The label rule of one latent and whether it is a unigram (token-identity) feature.

    tok_ids [m], tok_fires [m], tok_occurrences [m]: the tokens the latent fires on (explain
    split), how often, and how often each occurs; bigrams [q, 2], bigram_fires [q],
    bigram_occurrences [q] the same for (previous, token) pairs. Numpy or CPU torch arrays.
    """
    tok_ids = np.asarray(tok_ids, dtype=np.int64)
    tok_fires = np.asarray(tok_fires, dtype=np.int64)
    tok_occ = np.maximum(np.asarray(tok_occurrences, dtype=np.int64), tok_fires)
    n = int(tok_fires.sum())
    if n < MIN_FIRES:
        return LabelRule(), False
    share = tok_fires / n
    top = int(share.argmax())
    unigram = bool(
        share[top] >= UNIGRAM_COVERAGE and tok_fires[top] / tok_occ[top] >= UNIGRAM_PRECISION
    )
    bigrams = np.asarray(bigrams, dtype=np.int64).reshape(-1, 2)
    big_fires = np.asarray(bigram_fires, dtype=np.int64)
    big_occ = np.maximum(np.asarray(bigram_occurrences, dtype=np.int64), big_fires)
    grams = [(int(t),) for t in tok_ids] + [(int(a), int(b)) for a, b in bigrams]
    fires = np.concatenate([tok_fires, big_fires])
    occ = np.concatenate([tok_occ, big_occ])
    _, z = log_odds(fires, n, occ, n_background)
    ok = (fires >= MIN_CANDIDATE_FIRES) & (occ >= MIN_OCCURRENCES) & (z >= MIN_Z)
    cand = np.nonzero(ok)[0]
    cand = cand[np.argsort(-wilson_lower_bound(fires[cand], occ[cand]), kind="stable")]
    cand = cand[:MAX_CANDIDATES]

    chosen: dict[tuple[int, ...], int] = {}  # gram -> candidate index
    prefixes: list[tuple[float, list[int]]] = []  # (J, chosen candidates) after each step
    for j in cand:
        gram = grams[j]
        if len(gram) == 2 and (gram[1],) in chosen:
            continue  # subsumed by its second token
        if len(gram) == 1:
            chosen = {g: c for g, c in chosen.items() if len(g) == 1 or g[1] != gram[0]}
        chosen[gram] = int(j)
        hit = int(fires[list(chosen.values())].sum())
        seen = int(occ[list(chosen.values())].sum())
        tpr = hit / seen
        miss_rate = (n - hit) / max(n_background - seen, 1)  # firings per non-matching token
        fpr = 1 - (1 - min(miss_rate, 1.0)) ** context_len
        prefixes.append((tpr - fpr, list(chosen.values())))
        if len(chosen) >= MAX_ELEMENTS:
            break
    if not prefixes:
        return LabelRule(), unigram
    best = max(j for j, _ in prefixes)
    keep = [c for j, c in prefixes if j >= best - J_TOLERANCE * abs(best)][-1]
    keep = sorted(keep, key=lambda c: len(grams[c]))  # tokens first, as in the rule's fields
    tokens = [grams[c][0] for c in keep if len(grams[c]) == 1]
    ngram_ids = [list(grams[c]) for c in keep if len(grams[c]) == 2]
    hit, seen = int(fires[keep].sum()), int(occ[keep].sum())
    rule = LabelRule(
        token_ids=tokens,
        tokens=[strings[t] for t in tokens],
        ngram_ids=ngram_ids,
        ngrams=["".join(strings[t] for t in g) for g in ngram_ids],
        coverage=round(hit / n, 4),
        precision=round(hit / seen, 4),
        log_odds=[round(float(z[c]), 2) for c in keep],
        fires=[int(fires[c]) for c in keep],
        occurrences=[int(occ[c]) for c in keep],
    )
    return rule, unigram


def render_rule(rule: LabelRule) -> str:
    """The full rule as a list, e.g. `"Gate Bridge" | "bridge"` ('' for an empty rule)."""
    parts = [f'"{show_token(g)}"' for g in rule.ngrams]
    seen: set[str] = set()
    for t in rule.tokens:
        shown = show_token(t)
        if shown.lower() not in seen:
            seen.add(shown.lower())
            parts.append(f'"{shown}"')
    return " | ".join(parts)
