"""Whether a recurring concept's ablation beats the selection-matched null in the failures that
flag it.

In each failure, the flagged set (which holds the concept's latents) was ablated together: it
fixed the answer or not, and flipped the gap at the divergence (the corrected token now beats the
model's) or not. The failure's selection-matched null put random latents through the same screen
and selection: its draws give that failure's null rate of fixes (over draws with a continuation)
and of flips (over all draws). A draw count is small (tens), so a rate of 0 of 8 is not a rate of
zero: each failure's rate is smoothed as (k + 1/2) / (n + 1) (Jeffreys). Under the null, the
number of failures fixed is a sum of independent Bernoulli draws with those rates
(Poisson-binomial); the p-value is the chance it reaches the concept's count. A concept beats the
null when the smaller of its fix and flip p-values, Bonferroni-corrected for the two measures and
for every concept tested, is below `ALPHA`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05


@dataclass(frozen=True)
class NullCounts:
    """One failure's selection-matched null: how many of its draws fixed / flipped, of how many."""

    fixed: int
    fix_draws: int  # draws with a continuation
    flipped: int
    flip_draws: int  # all draws


@dataclass(frozen=True)
class RateAgainstNull:
    """A concept's fix (or flip) count in its failures against the null's expectation there."""

    count: int  # failures where ablating the flagged set fixed (flipped) it
    of: int  # failures where it was measured and the null has draws for it
    null_expected: float  # expected count under the null (sum of smoothed per-failure rates)
    p_value: float  # P(null count >= count)

    @property
    def rate(self) -> float | None:
        return self.count / self.of if self.of else None

    @property
    def null_rate(self) -> float | None:
        return self.null_expected / self.of if self.of else None


def smoothed(k: int, n: int) -> float:
    """A null rate from k of n draws, never 0 or 1 (Jeffreys: (k + 1/2) / (n + 1))."""
    return (k + 0.5) / (n + 1)


def poisson_binomial_tail(probs: Sequence[float], k: int) -> float:
    """P(sum of independent Bernoulli(probs) >= k), exactly (dynamic programming)."""
    if k <= 0:
        return 1.0
    dist = [1.0]  # dist[j] = P(j successes so far)
    for p in probs:
        nxt = [0.0] * (len(dist) + 1)
        for j, q in enumerate(dist):
            nxt[j] += q * (1 - p)
            nxt[j + 1] += q * p
        dist = nxt
    return float(min(1.0, sum(dist[k:])))


def rate_against_null(
    outcomes: Sequence[bool | None], nulls: Sequence[tuple[int, int] | None]
) -> RateAgainstNull:
    """outcomes[f]: the flagged set fixed (flipped) failure f (None: not measured); nulls[f]:
    (successes, draws) of its null (None or 0 draws: no null). Failures lacking either are left
    out."""
    pairs = [
        (bool(o), smoothed(*n))
        for o, n in zip(outcomes, nulls, strict=True)
        if o is not None and n is not None and n[1] > 0
    ]
    count = sum(o for o, _ in pairs)
    probs = [p for _, p in pairs]
    return RateAgainstNull(
        count=count,
        of=len(pairs),
        null_expected=round(sum(probs), 4),
        p_value=float(f"{poisson_binomial_tail(probs, count):.4g}"),
    )


def corrected_p(fix: RateAgainstNull, flip: RateAgainstNull, n_tested: int) -> float:
    """The concept's p-value: the smaller of the two, times 2 (two measures) times the concepts
    tested (Bonferroni), at most 1."""
    return min(1.0, 2 * max(n_tested, 1) * min(fix.p_value, flip.p_value))
