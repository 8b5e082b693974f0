"""Supernodes: the pruned graph's feature nodes grouped by position, layer band and decoder
direction (and, when an atlas labels them, by shared label). A supernode's label comes from the
atlas; without one it is built from its members' ids, never invented."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from diagnostics.trace.records import FeatureRef, Supernode

LabelFn = Callable[[int, int], str | None]
"""(layer, feature) -> the atlas label of a transcoder feature, or None when it has none."""


@dataclass(frozen=True)
class Candidate:
    """A feature node offered for grouping."""

    node: int  # index in the graph's adjacency (or any id the caller maps back)
    layer: int
    position: int
    feature: int
    influence: float
    activation: float

    @property
    def ref(self) -> FeatureRef:
        return FeatureRef(layer=self.layer, position=self.position, feature=self.feature)


def group_supernodes(
    candidates: Sequence[Candidate],
    decoder: Callable[[int, int], torch.Tensor],
    *,
    layer_band: int,
    min_cosine: float,
    labels: LabelFn | None = None,
) -> list[list[Candidate]]:
    """Groups of candidates, largest summed influence first. Most influential candidates seed
    groups; a candidate joins the first group at its position and layer band whose seed's
    decoder (decoder(layer, feature) [d_model]) has cosine >= min_cosine with its own, or whose
    seed shares its atlas label."""
    groups: list[list[Candidate]] = []
    seeds: list[tuple[torch.Tensor, str | None]] = []
    for c in sorted(candidates, key=lambda c: -c.influence):
        d = decoder(c.layer, c.feature).float()
        d = d / d.norm().clamp(min=1e-12)
        label = labels(c.layer, c.feature) if labels else None
        for group, (seed_dir, seed_label) in zip(groups, seeds, strict=True):
            head = group[0]
            if head.position != c.position or head.layer // layer_band != c.layer // layer_band:
                continue
            if float(seed_dir @ d) >= min_cosine or (label and label == seed_label):
                group.append(c)
                break
        else:
            groups.append([c])
            seeds.append((d, label))
    groups.sort(key=lambda g: -sum(c.influence for c in g))
    return groups


def supernode_record(group: list[Candidate], token: str, labels: LabelFn | None) -> Supernode:
    """The record of a group: its atlas label (the seed's) or one built from its feature ids."""
    seed = group[0]
    label = labels(seed.layer, seed.feature) if labels else None
    layers = [c.layer for c in group]
    if label:
        source = "atlas"
    else:
        source = "feature_id"
        more = f" and {len(group) - 1} more" if len(group) > 1 else ""
        label = f"L{seed.layer}/F{seed.feature}{more}"
    return Supernode(
        label=label,
        label_source=source,
        position=seed.position,
        token=token,
        layers=(min(layers), max(layers)),
        members=[c.ref for c in group],
        influence=sum(c.influence for c in group),
    )
