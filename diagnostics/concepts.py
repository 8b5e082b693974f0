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
failures where it was measured.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

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

    @classmethod
    def of(cls, sae, atlas=None) -> ConceptBasis:
        """From an SAE and its FeatureAtlas (None: group by decoder cosine alone)."""
        n = sae.cfg.d_sae
        return cls(
            decoder=sae.W_dec.detach().float().cpu(),
            descriptions=list(atlas.descriptions) if atlas is not None else [""] * n,
            generic=[bool(g) for g in atlas.generic] if atlas is not None else [False] * n,
        )


@dataclass(frozen=True)
class FlaggedFailure:
    """One wrong answer of an audit with its flagged latents and their evidence."""

    report_id: str
    kind: str  # failure class
    latents: list[int]  # flagged latents
    fixed: bool | None  # ablating the flagged set together fixed the answer (None: not verified)
    null_fix_rate: float | None  # share of the selection-matched null's draws that fixed it


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
    generic: bool = False  # every latent of it is generic (atlas)
    generic_latents: list[int] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)


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
) -> list[Concept]:
    """The concepts flagged in at least `min_failures` failures, most failures first (ties:
    specific before generic), at most `top`."""
    flag_count = Counter(j for f in failures for j in dict.fromkeys(f.latents))
    latents = sorted(flag_count, key=lambda j: (-flag_count[j], j))
    out = []
    for group in group_latents(latents, basis, threshold=threshold):
        members = set(group)
        hit = [f for f in failures if members.intersection(f.latents)]
        if len(hit) < min_failures:
            continue
        named = Counter()
        for j in group:
            if d := basis.descriptions[j].strip():
                named[d] += flag_count[j]
        names = [d for d, _ in sorted(named.items(), key=lambda kv: -kv[1])]
        generic_latents = [j for j in group if basis.generic[j]]
        kinds = sorted({f.kind for f in hit})
        out.append(
            Concept(
                concept=names[0] if names else f"latent #{group[0]}",
                description=" / ".join(names),
                latents=group,
                **_rates(hit),
                by_kind={k: KindStats(**_rates([f for f in hit if f.kind == k])) for k in kinds},
                generic=len(generic_latents) == len(group),
                generic_latents=generic_latents,
            )
        )
    out.sort(key=lambda c: (-c.failures, c.generic))
    return out[:top]


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
