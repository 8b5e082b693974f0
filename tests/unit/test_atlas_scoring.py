"""Label rules, log-odds and detection AUROC with hard negatives, on synthetic data."""

from __future__ import annotations

import itertools

import pytest
import torch

from diagnostics.atlas.labels import derive_rule, log_odds, render_rule, wilson_lower_bound
from diagnostics.atlas.records import LabelRule
from diagnostics.atlas.scoring import auroc, rule_matches, score_labels, tfidf_bags
from diagnostics.atlas.stats import PAD_TOKEN

STRINGS = [f"w{i}" for i in range(100)]
GOLDEN, GATE, BRIDGE, SYDNEY, HARBOUR = 10, 11, 12, 13, 14


def test_auroc_matches_pairwise_definition_with_ties():
    pos = torch.tensor([0.0, 1.0, 2.0, 2.0, 5.0])
    neg = torch.tensor([0.0, 0.0, 2.0, 3.0])
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p, n in itertools.product(pos, neg)]
    assert auroc(pos, neg) == pytest.approx(sum(pairs) / len(pairs))
    assert auroc(torch.ones(3), torch.zeros(4)) == 1.0
    assert auroc(torch.zeros(3), torch.zeros(4)) == 0.5


def test_rule_matches_tokens_and_ngrams():
    chunks = torch.tensor(
        [[GOLDEN, GATE, BRIDGE, 1], [SYDNEY, HARBOUR, BRIDGE, 1], [GATE, 2, 3, PAD_TOKEN]]
    )
    assert rule_matches(LabelRule(token_ids=[GATE]), chunks).tolist() == [True, False, True]
    bigram = LabelRule(ngram_ids=[[GATE, BRIDGE]])
    assert rule_matches(bigram, chunks).tolist() == [True, False, False]


def test_log_odds_ranks_over_represented_tokens():
    # the latent fires 30x on token A (background 40) and 30x on token B (background 4000)
    delta, z = log_odds(torch.tensor([30, 30]), 60, torch.tensor([40, 4000]), 100_000)
    assert delta[0] > delta[1] > 0 and z[0] > z[1]


def _rule(tokens, bigrams=(), n_background=100_000):
    """derive_rule from {token: (fires, occurrences)} and {(prev, token): (fires, occurrences)}."""
    t = torch.tensor([k for k in tokens])
    b = torch.tensor([list(k) for k in bigrams]).reshape(-1, 2)
    return derive_rule(
        t, torch.tensor([v[0] for v in tokens.values()]),
        torch.tensor([v[1] for v in tokens.values()]),
        b, torch.tensor([v[0] for v in dict(bigrams).values()], dtype=torch.long),
        torch.tensor([v[1] for v in dict(bigrams).values()], dtype=torch.long),
        n_background, STRINGS,
    )  # fmt: skip


def test_rule_prefers_a_bigram_when_the_token_alone_is_not_selective():
    # fires on 40 of 100 "bridge" tokens: the 40 right after "gate"
    rule, unigram = _rule({BRIDGE: (40, 100)}, {(GATE, BRIDGE): (40, 40)})
    assert rule.ngram_ids == [[GATE, BRIDGE]] and rule.token_ids == []
    assert rule.ngrams == ["w11w12"] and not unigram
    assert rule.precision == 1.0 and rule.coverage == 1.0
    assert render_rule(rule) == '"w11w12"'
    assert rule.fires == [40] and rule.occurrences == [40]


def test_rule_widens_while_precise_and_stops_at_frequent_tokens():
    # two precise tokens, and a frequent one it fires on only 1% of the time
    rule, _ = _rule({GATE: (30, 32), BRIDGE: (20, 25), 5: (50, 5000)})
    assert sorted(rule.token_ids) == [GATE, BRIDGE]
    assert rule.coverage == 0.5 and rule.precision == round(50 / 57, 4)
    # per element, aligned with the elements: what the description groups and cuts by
    counts = dict(zip(rule.token_ids, zip(rule.fires, rule.occurrences, strict=True), strict=True))
    assert counts == {GATE: (30, 32), BRIDGE: (20, 25)}


def test_rule_ignores_tokens_that_are_not_over_represented():
    # the latent fires on every token it sees about equally often: no label
    rule, _ = _rule({5: (10, 1000), 6: (10, 1000)}, n_background=10_000)
    assert rule.empty


def test_wilson_bound_prefers_well_supported_precision():
    lb = wilson_lower_bound([40, 3, 0], [50, 3, 10])
    assert lb[0] > lb[1] > lb[2] and lb[2] == pytest.approx(0.0)
    assert lb[0] < 40 / 50


def test_token_identity_feature_is_flagged_unigram():
    rule, unigram = _rule({GATE: (45, 50), 5: (3, 1000)})
    assert rule.token_ids == [GATE] and unigram


def _golden_gate_data(n: int = 400, seed: int = 0):
    """Chunks of random filler; some with "golden gate bridge", some "sydney harbour bridge".

    Latent 0 fires on golden gate chunks; latent 1 fires on every chunk with "bridge".
    """
    gen = torch.Generator().manual_seed(seed)
    chunks = torch.randint(20, 100, (n, 8), generator=gen)
    kind = torch.arange(n) % 4  # 0: golden gate, 1: sydney harbour, 2-3: filler
    chunks[kind == 0, 2:5] = torch.tensor([GOLDEN, GATE, BRIDGE])
    chunks[kind == 1, 2:5] = torch.tensor([SYDNEY, HARBOUR, BRIDGE])
    acts = torch.zeros(n, 2)
    acts[kind == 0, 0] = 2.0 + torch.rand(int((kind == 0).sum()), generator=gen)
    acts[kind <= 1, 1] = 1.0
    return chunks, acts.half(), kind


def test_hard_negatives_are_the_similar_non_matching_contexts():
    chunks, acts, kind = _golden_gate_data()
    bags = tfidf_bags(chunks)
    pos = kind == 0
    sims = (bags @ bags[pos].mean(0)).masked_fill(pos, -torch.inf)
    hardest = sims.topk(int(pos.sum())).indices
    # the Sydney Harbour Bridge chunks: a third of the non-matching ones, most of the hardest
    assert (kind[hardest] == 1).float().mean() > 0.7


def test_detection_auroc_and_random_label_control():
    chunks, acts, kind = _golden_gate_data()
    gate_rule = LabelRule(token_ids=[GATE])
    bridge_rule = LabelRule(token_ids=[BRIDGE])
    scores = score_labels([gate_rule, bridge_rule], chunks, acts, seed=0)
    assert scores.detection_auroc[0] == pytest.approx(1.0)
    assert scores.detection_auroc[1] == pytest.approx(1.0)
    assert scores.n_positive[0] == 100 and scores.n_negative[0] == 100
    # latent 1 ("bridge") scored with the "gate" rule: it fires on the Sydney hard negatives too
    # (about 80% of them, ties), so the control sits near chance
    assert 0.5 <= scores.random_label_auroc[1] <= 0.65
    # a "bridge" label on the golden-gate-only latent is beaten by the hard negatives
    wrong = score_labels([bridge_rule, bridge_rule], chunks, acts).detection_auroc[0]
    assert wrong < 0.9
