"""Flagged latents grouped into concepts, for an audit: recurring causes, not recurring ids.

Two latents of the flagged set join one concept when their decoder directions are close (cosine
of the W_dec rows >= COSINE_THRESHOLD) or their atlas descriptions lead with the same group after
normalisation (`description_key`: 'number two ("2", "two", "second"), "B"' and 'number two ("2",
"two")' are both "number two"; an empty description matches nothing); concepts are the
connected components of that relation (single linkage). A concept is
named by the description that is flagged most often among its latents (by number of failures),
else by its most flagged latent's id.

Per concept, and per failure kind (the report's failure class, which is the first wrong step's
kind when one was found): how many failures flag it, the fix rate of ablating each failure's
flagged set (which holds the concept's latents) and the selection-matched null's fix rate in the
same failures (the null draws' share of fixes, averaged over the failures), each over the
failures where it was measured. Over all its failures, its fix and flip counts are tested against
the null's (`diagnostics.concept_evidence`): `beats_null` says whether they exceed it.

Concepts whose latents are all generic (dense, or firing on formatting or positions) are left out:
they say how the model writes, not what misled it. A concept is named and shown by its specific
latents only, each with its feature card.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from diagnostics.concept_evidence import (
    ALPHA,
    NullCounts,
    RateAgainstNull,
    corrected_p,
    rate_against_null,
)
from diagnostics.feature_card import FeatureCard

COSINE_THRESHOLD = 0.4
"""Decoder cosine at or above which two latents are one concept. Rows of the shipped SAE's W_dec
are nearly orthogonal: a random pair's |cosine| is below 0.15 in 99% of pairs and below 0.26 in
99.9% (tests/unit/test_concepts.py checks it); of the latents flagged in the 50-problem GSM8K
audit, about one in ten has another flagged latent this close."""


@dataclass(frozen=True)
class ConceptBasis:
    """What the grouping reads of an SAE: its decoder rows and the atlas's descriptions."""

    decoder: torch.Tensor  # [d_sae, d_model] W_dec rows
    descriptions: list[str]  # per latent ('' without an atlas or a label rule)
    generic: list[bool]  # per latent (all False without an atlas)
    card_of: Callable[[int], FeatureCard | None] = lambda _i: None  # the atlas's cards

    @classmethod
    def of(cls, sae, atlas=None) -> ConceptBasis:
        """From an SAE and its FeatureAtlas (None: group by decoder cosine alone, no cards)."""
        n = sae.cfg.d_sae
        return cls(
            decoder=sae.W_dec.detach().float().cpu(),
            descriptions=list(atlas.descriptions) if atlas is not None else [""] * n,
            generic=[bool(g) for g in atlas.generic] if atlas is not None else [False] * n,
            card_of=atlas.card if atlas is not None else (lambda _i: None),
        )


@dataclass(frozen=True)
class FlaggedFailure:
    """One wrong answer of an audit with its flagged latents and their evidence."""

    report_id: str
    kind: str  # failure class
    latents: list[int]  # flagged latents
    fixed: bool | None  # ablating the flagged set together fixed the answer (None: not verified)
    null_fix_rate: float | None  # share of the selection-matched null's draws that fixed it
    flipped: bool | None = None  # with the flagged set ablated the corrected token wins the gap
    null: NullCounts | None = None  # the null's draws that fixed / flipped it, of how many


@dataclass(frozen=True)
class KindStats:
    """A concept within one failure kind."""

    failures: int  # failures of this kind that flag any latent of the concept
    flagged_fix_rate: float | None  # over those with a verification
    null_fix_rate: float | None  # over those with a null that ran continuations
    verified: int  # failures behind flagged_fix_rate
    with_null: int  # failures behind null_fix_rate


@dataclass(frozen=True)
class Concept:
    """A group of flagged latents that mean the same thing (see the module doc)."""

    concept: str  # its name: the most flagged description, else "latent #id"
    description: str  # the distinct descriptions of its latents, most flagged first, " / "-joined
    latents: list[int]  # most flagged first
    failures: int  # failures flagging any of its latents
    flagged_fix_rate: float | None
    null_fix_rate: float | None
    verified: int
    with_null: int
    by_kind: dict[str, KindStats] = field(default_factory=dict)
    generic_latents: list[int] = field(default_factory=list)  # listed after the specific ones
    fix: RateAgainstNull | None = None  # fixes in its failures against the null's expectation
    flip: RateAgainstNull | None = None  # flips of the gap, likewise
    p_value: float = 1.0  # the smaller of the two, Bonferroni-corrected (concept_evidence)
    beats_null: bool = False
    cards: list[FeatureCard] = field(default_factory=list)  # of its specific latents, at most 3

    def as_json(self) -> dict:
        out = asdict(self) | {"cards": [c.model_dump() for c in self.cards]}
        for key in ("fix", "flip"):
            rate = getattr(self, key)
            if rate is not None:
                out[key] |= {"rate": rate.rate, "null_rate": rate.null_rate}
        return out


def description_key(text: str) -> str:
    """What two descriptions must share to be one concept: the leading group (the one that
    holds most firings; `diagnostics.atlas.describe` lists groups by firing count, comma-
    separated) without its parenthesised list of variants, lower case, quotes and punctuation
    dropped, one space between words. '' for an empty description."""
    depth, quoted, end = 0, False, len(text)
    for k, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch == ",":
            end = k
            break
    head = re.sub(r"\([^)]*\)", " ", text[:end].lower())
    return " ".join(re.sub(r"[\"'`“”‘’(),;:.!?]", " ", head).split())


def group_latents(
    latents: Sequence[int], basis: ConceptBasis, *, threshold: float = COSINE_THRESHOLD
) -> list[list[int]]:
    """Single-linkage groups of `latents`: joined by decoder cosine >= threshold or an equal
    normalised non-empty description. Groups keep the order of `latents`; groups are ordered
    by their first member."""
    ids = list(dict.fromkeys(int(j) for j in latents))
    if not ids:
        return []
    rows = torch.nn.functional.normalize(basis.decoder[ids].float(), dim=1)  # [n, d_model]
    close = (rows @ rows.T) >= threshold  # [n, n]
    keys = [description_key(basis.descriptions[j]) for j in ids]
    parent = list(range(len(ids)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    by_key: dict[str, int] = {}
    for a, key in enumerate(keys):
        if key:
            if key in by_key:
                parent[root(a)] = root(by_key[key])
            else:
                by_key[key] = a
    for a, b in torch.nonzero(torch.triu(close, diagonal=1)).tolist():
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for a in range(len(ids)):
        groups.setdefault(root(a), []).append(ids[a])
    return sorted(groups.values(), key=lambda g: ids.index(g[0]))


def audit_concepts(
    failures: Sequence[FlaggedFailure],
    basis: ConceptBasis,
    *,
    threshold: float = COSINE_THRESHOLD,
    min_failures: int = 2,
    top: int = 20,
) -> tuple[list[Concept], int]:
    """(the concepts flagged in at least `min_failures` failures with a specific latent, most
    failures first, at most `top`; how many such concepts were all generic and left out). Each is
    tested against the null, Bonferroni-corrected over all returned concepts."""
    flag_count = Counter(j for f in failures for j in dict.fromkeys(f.latents))
    latents = sorted(flag_count, key=lambda j: (-flag_count[j], j))
    out, n_generic = [], 0
    for group in group_latents(latents, basis, threshold=threshold):
        members = set(group)
        hit = [f for f in failures if members.intersection(f.latents)]
        if len(hit) < min_failures:
            continue
        specific = [j for j in group if not basis.generic[j]]
        if not specific:
            n_generic += 1
            continue
        named = Counter()
        for j in specific:
            if d := basis.descriptions[j].strip():
                named[d] += flag_count[j]
        names = [d for d, _ in sorted(named.items(), key=lambda kv: -kv[1])]
        kinds = sorted({f.kind for f in hit})
        out.append(
            Concept(
                concept=names[0] if names else f"latent #{specific[0]}",
                description=" / ".join(names),
                latents=specific + [j for j in group if basis.generic[j]],
                **_rates(hit),
                by_kind={k: KindStats(**_rates([f for f in hit if f.kind == k])) for k in kinds},
                generic_latents=[j for j in group if basis.generic[j]],
                fix=rate_against_null(
                    [f.fixed for f in hit],
                    [(f.null.fixed, f.null.fix_draws) if f.null else None for f in hit],
                ),
                flip=rate_against_null(
                    [f.flipped for f in hit],
                    [(f.null.flipped, f.null.flip_draws) if f.null else None for f in hit],
                ),
                cards=[c for j in specific[:3] if (c := basis.card_of(j)) is not None],
            )
        )
    out.sort(key=lambda c: -c.failures)
    out = out[:top]
    tested = [
        replace(c, p_value=(p := corrected_p(c.fix, c.flip, len(out))), beats_null=p < ALPHA)
        for c in out
    ]
    return tested, n_generic


def _rates(hit: list[FlaggedFailure]) -> dict:
    fixed = [f.fixed for f in hit if f.fixed is not None]
    null = [f.null_fix_rate for f in hit if f.null_fix_rate is not None]
    return {
        "failures": len(hit),
        "flagged_fix_rate": sum(fixed) / len(fixed) if fixed else None,
        "null_fix_rate": sum(null) / len(null) if null else None,
        "verified": len(fixed),
        "with_null": len(null),
    }
