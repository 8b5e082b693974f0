"""Offline labels: input tokens/n-grams by log-odds against the background, plus output tokens.

For latent i with n firings (explain split) of which a_t on token t, and background count b_t of t
among N tokens, the log-odds ratio with an informative Dirichlet prior (Monroe et al. 2008),

    delta_t = log((a_t+α_t)/(n+α0-a_t-α_t)) - log((b_t+α_t)/(N+α0-b_t-α_t)),  α_t = α0 b_t/N,
    z_t = delta_t / sqrt(1/(a_t+α_t) + 1/(b_t+α_t)),

ranks the tokens the latent fires on more than their frequency predicts. The rule keeps tokens with
z >= 3 that hold >= 2% of the firings, best first, until they cover 80% of firings (at most 6).
A rule token that the latent fires on only for some of its occurrences (< 50%) is replaced by the
n-gram ending in it when one n-gram accounts for most of the max-activating contexts (the
"Golden Gate Bridge" case). The rendered label adds the top promoted output tokens.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from diagnostics.atlas.records import LabelRule
from diagnostics.atlas.stats import PAD_TOKEN

PRIOR = 100.0
MIN_Z = 3.0
MIN_SHARE = 0.02
TARGET_COVERAGE = 0.8
MAX_TOKENS = 6
MIN_FIRES = 5
NGRAM_SUPPORT = 0.5  # share of top contexts an n-gram must end at the peak in
UNIGRAM_COVERAGE = 0.8  # is_unigram: one token holds >= 80% of firings ...
UNIGRAM_PRECISION = 0.5  # ... and the latent fires on >= 50% of that token's occurrences


def vocab_strings(tokenizer, vocab_size: int) -> list[str]:
    """The decoded text of every token id (special tokens included)."""
    strings = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    return [str(s) for s in strings]


def show_token(s: str) -> str:
    """A token as a person reads it: whitespace made visible, surrounding spaces dropped."""
    s = s.replace("\n", "⏎").replace("\t", "⇥")
    return s.strip() or "␣"


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


def derive_rule(
    tok_ids,
    counts,
    background,
    n_background: int,
    context_tokens,
    context_vals,
    peak: int,
    strings: list[str],
) -> tuple[LabelRule, bool]:
    """The label rule of one latent and whether it is a unigram (token-identity) feature.

    tok_ids [m], counts [m]: the latent's firings per token (explain split); background [vocab];
    context_tokens [k, width] / context_vals [k]: its max-activating windows, peak at `peak`.
    Arrays may be numpy or torch (CPU).
    """
    tok_ids, counts = np.asarray(tok_ids, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n < MIN_FIRES:
        return LabelRule(), False
    b = np.asarray(background)[tok_ids]
    delta, z = log_odds(counts, n, b, n_background)
    share = counts / n
    precision = counts / np.maximum(b, 1)
    top = int(share.argmax())
    unigram = bool(share[top] >= UNIGRAM_COVERAGE and precision[top] >= UNIGRAM_PRECISION)
    ok = (z >= MIN_Z) & (delta > 0) & (share >= MIN_SHARE) & (counts >= 2)
    candidates = np.nonzero(ok)[0]
    order = candidates[np.argsort(-z[candidates], kind="stable")]
    chosen: list[int] = []
    covered = 0.0
    for j in order[:MAX_TOKENS]:
        chosen.append(int(j))
        covered += float(share[j])
        if covered >= TARGET_COVERAGE:
            break
    tokens = [int(tok_ids[j]) for j in chosen]
    ngram_ids: list[list[int]] = []
    contexts = np.asarray(context_tokens)[np.asarray(context_vals) > 0]  # [k', width]
    if len(contexts) >= 3:
        for j, t in list(zip(chosen, tokens, strict=True)):
            if float(precision[j]) >= UNIGRAM_PRECISION:
                continue
            ngram = _dominant_ngram(contexts, peak, t)
            if ngram is not None:
                tokens.remove(t)
                ngram_ids.append(ngram)
    rule = LabelRule(
        token_ids=tokens,
        tokens=[strings[t] for t in tokens],
        ngram_ids=ngram_ids,
        ngrams=["".join(strings[t] for t in g) for g in ngram_ids],
        coverage=round(covered, 4),
        log_odds=[round(float(z[j]), 2) for j in chosen],
    )
    return rule, unigram


def _dominant_ngram(contexts: np.ndarray, peak: int, token: int) -> list[int] | None:
    """The longest n-gram (2-3 tokens) ending in `token` at the peak of most contexts, if any."""
    at_token = contexts[contexts[:, peak] == token]
    if len(at_token) < max(3, NGRAM_SUPPORT * len(contexts)):
        return None
    best = None
    for n in (2, 3):
        if peak - n + 1 < 0:
            break
        grams = Counter(tuple(int(x) for x in row[peak - n + 1 : peak + 1]) for row in at_token)
        gram, count = grams.most_common(1)[0]
        if PAD_TOKEN in gram or count < NGRAM_SUPPORT * len(contexts):
            break
        best = list(gram)
    return best


def render_label(rule: LabelRule, promoted: list[str], *, n_out: int = 3) -> str:
    """A short human label, e.g. `"Gate Bridge" | "bridge" → "San" "Francisco"`."""
    parts = [f'"{show_token(g)}"' for g in rule.ngrams]
    seen: set[str] = set()
    for t in rule.tokens:
        shown = show_token(t)
        if shown.lower() not in seen:
            seen.add(shown.lower())
            parts.append(f'"{shown}"')
    inputs = " | ".join(parts) if parts else "(no clear input pattern)"
    outs = [f'"{show_token(p)}"' for p in promoted if p.strip()][:n_out]
    return f"{inputs} → {' '.join(outs)}" if outs else inputs
