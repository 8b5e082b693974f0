"""Find latents by what their labels say (no model run): `features search --label QUERY`.

A latent matches in tiers, best first: its description or label is the query; the query is a
substring of its description, label or one of its rule tokens; every word of the query is among
its words; more than half are. Within a tier more matched words rank first, then the better-scored
label. Symbols count as words only in a query without letters or digits.
"""

from __future__ import annotations

import re

import numpy as np

_WORDS = re.compile(r"[^\W_]+|[^\w\s\"'(),]", re.UNICODE)


def words(text: str) -> set[str]:
    """Lower-case words and symbols of a text (quotes, commas and brackets left out)."""
    return set(_WORDS.findall(text.lower()))


def _query_words(query: str) -> set[str]:
    found = words(query)
    alnum = {w for w in found if w.isalnum()}
    return alnum or found


MatchKey = tuple[int, int, float]
"""How well a latent matches, smaller first: (-tier, -matched words, -score)."""


def rank_by_label(
    query: str, labels: list[str], descriptions: list[str], rules: list[dict], score: np.ndarray
) -> list[int]:
    """Latents matching `query`, best first; score [d_sae] breaks ties (higher first)."""
    return [i for _, i in sorted(label_matches(query, labels, descriptions, rules, score))]


def label_matches(
    query: str, labels: list[str], descriptions: list[str], rules: list[dict], score: np.ndarray
) -> list[tuple[MatchKey, int]]:
    """(how well, latent) of every latent matching `query`, unsorted: the keys of several
    dictionaries' latents sort together (a transcoder set's layers)."""
    q = " ".join(query.lower().split())
    q_words = _query_words(q)
    if not q or not q_words:
        return []
    ranked = []
    for i, (label, desc, rule) in enumerate(zip(labels, descriptions, rules, strict=True)):
        texts = [desc.lower(), label.lower()]
        pieces = [t.lower() for t in rule.get("tokens", []) + rule.get("ngrams", [])]
        if q in (texts[0], texts[1].split(" → ")[0]):
            tier = 3
        elif any(q in t for t in texts + pieces):
            tier = 2
        else:
            tier = 0
        found = len(q_words & words(" ".join(texts + pieces)))
        if tier == 0 and found == len(q_words):
            tier = 1
        if tier or 2 * found > len(q_words):
            ranked.append(((-tier, -found, -float(score[i])), i))
    return ranked
