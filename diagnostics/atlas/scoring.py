"""Score offline labels by detection AUROC on held-out contexts, with hard negatives and a control.

Contexts are fixed-length chunks (default 32 tokens) of the scoring split: text windows that were
never used to write labels or pick max-activating contexts. The activations were computed with the
whole window as context; a chunk's score for latent i is i's max activation over the chunk.

- Positives of a label: chunks where its rule matches (a rule token, or a rule n-gram, occurs).
- Hard negatives: chunks where the rule does not match that look most like the positives, by cosine
  similarity of hashed TF-IDF bags of tokens to the positives' centroid (topic / wording neighbours:
  "Sydney Harbour Bridge" text for a "Golden Gate" label); as many as positives, at least 20.
- Detection AUROC: P(score(pos) > score(neg)) + P(tie)/2 (Mann-Whitney), so 0.5 is chance.
- Random-label control: the same computation for latent i with the positives and hard negatives of
  another labelled latent's rule, chosen at random; it should sit near 0.5.
- Easy AUROC (summary only): negatives drawn at random from non-matching chunks.

What this measures: whether the latent fires where its token/n-gram rule says, against lexically
similar text. A token-identity latent passes it trivially, which is why `is_unigram` is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diagnostics.atlas.records import LabelRule
from diagnostics.atlas.stats import PAD_TOKEN

MIN_POSITIVES = 5
MIN_NEGATIVES = 20
HASH_DIM = 2048


@dataclass
class LabelScores:
    """Per-latent label scores (NaN where a label has too few held-out matches)."""

    detection_auroc: np.ndarray  # [d_sae] float32
    random_label_auroc: np.ndarray  # [d_sae] float32
    easy_auroc: np.ndarray  # [d_sae] float32, negatives at random
    n_positive: np.ndarray  # [d_sae] int32
    n_negative: np.ndarray  # [d_sae] int32


def auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """Mann-Whitney AUROC of scores pos [p] over neg [q], ties counted half."""
    neg_sorted = neg.double().sort().values
    p = pos.double().contiguous()
    below = torch.searchsorted(neg_sorted, p, right=False).double()
    not_above = torch.searchsorted(neg_sorted, p, right=True).double()
    return float(((below + not_above) / 2).mean() / len(neg_sorted))


def rule_matches(rule: LabelRule, chunks: torch.Tensor) -> torch.Tensor:
    """Which chunks [C, L] (PAD = -1) contain a rule token or n-gram -> [C] bool."""
    hit = torch.zeros(len(chunks), dtype=torch.bool)
    if rule.token_ids:
        hit |= torch.isin(chunks, torch.tensor(rule.token_ids)).any(1)
    for gram in rule.ngram_ids:
        n = len(gram)
        if n > chunks.shape[1]:
            continue
        run = torch.ones(len(chunks), chunks.shape[1] - n + 1, dtype=torch.bool)
        for off, t in enumerate(gram):
            run &= chunks[:, off : chunks.shape[1] - n + 1 + off] == t
        hit |= run.any(1)
    return hit


def tfidf_bags(chunks: torch.Tensor, dim: int = HASH_DIM) -> torch.Tensor:
    """L2-normalised hashed TF-IDF bags of tokens [C, dim] of chunks [C, L]."""
    n = len(chunks)
    valid = chunks != PAD_TOKEN
    rows = torch.arange(n)[:, None].expand_as(chunks)[valid]
    cols = (chunks[valid] % dim).long()
    tf = torch.zeros(n, dim).index_put_((rows, cols), torch.ones(len(rows)), accumulate=True)
    df = (tf > 0).sum(0).float()
    idf = torch.log((n + 1) / (df + 1)) + 1
    x = tf * idf
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-9)


def score_labels(
    rules: list[LabelRule],
    chunks: torch.Tensor,
    chunk_acts: torch.Tensor,
    *,
    seed: int = 0,
    block: int = 256,
    progress: bool = False,
) -> LabelScores:
    """Score every non-empty rule; chunks [C, L] token ids, chunk_acts [C, d_sae] max activations."""
    d_sae = len(rules)
    out = LabelScores(
        detection_auroc=np.full(d_sae, np.nan, dtype=np.float32),
        random_label_auroc=np.full(d_sae, np.nan, dtype=np.float32),
        easy_auroc=np.full(d_sae, np.nan, dtype=np.float32),
        n_positive=np.zeros(d_sae, dtype=np.int32),
        n_negative=np.zeros(d_sae, dtype=np.int32),
    )
    if len(chunks) == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    labelled = [i for i, r in enumerate(rules) if not r.empty]
    bags = tfidf_bags(chunks)  # [C, dim]
    sets: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    iterator = range(0, len(labelled), block)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="score labels", unit="block")
    for start in iterator:
        ids = labelled[start : start + block]
        match = torch.stack([rule_matches(rules[i], chunks) for i in ids])  # [blk, C]
        n_pos = match.sum(1)  # [blk]
        centroid = (match.float() @ bags) / n_pos.clamp(min=1)[:, None]  # [blk, dim]
        sims = (centroid @ bags.T).masked_fill(match, -torch.inf)  # [blk, C]
        for row, i in enumerate(ids):
            p = int(n_pos[row])
            n_free = len(chunks) - p
            out.n_positive[i] = p
            if p < MIN_POSITIVES or n_free < MIN_POSITIVES:
                continue
            n_neg = min(max(p, MIN_NEGATIVES), n_free)
            hard = sims[row].topk(n_neg).indices
            free = (~match[row]).nonzero().squeeze(1)
            easy = free[torch.randperm(len(free), generator=gen)[:n_neg]]
            sets[i] = (match[row].nonzero().squeeze(1), hard, easy)
            out.n_negative[i] = n_neg
    acts = chunk_acts.float()
    scored = sorted(sets)
    for i in scored:
        pos, hard, easy = sets[i]
        out.detection_auroc[i] = auroc(acts[pos, i], acts[hard, i])
        out.easy_auroc[i] = auroc(acts[pos, i], acts[easy, i])

    def key(r: LabelRule) -> tuple:
        return (sorted(r.token_ids), sorted(map(tuple, r.ngram_ids)))

    for i in scored:
        for _ in range(20):
            j = scored[int(torch.randint(len(scored), (1,), generator=gen))]
            if j != i and key(rules[j]) != key(rules[i]):
                pos, hard, _ = sets[j]
                out.random_label_auroc[i] = auroc(acts[pos, i], acts[hard, i])
                break
    return out
