"""The atlas of a transcoder set: one `FeatureAtlas` per layer, stored compactly next to the set.

    <set>/atlas/set.json       layers, width, text, cost of the build, each layer's summary
    <set>/atlas/vocab.json     the decoded vocabulary, once for every layer
    <set>/atlas/layer_{L}/     layer L's atlas files (`FeatureAtlas.save(..., vocab=False)`)

Built by `diagnostics.atlas.transcoder_build` (one streaming pass for every layer). A feature's
id outside the atlas is `layer/feature` (`feature_id`, `parse_feature_id`). A layer is read when
first asked for and checked to belong to the set's layer (its decoder's fingerprint), so the
labels of a graph's nodes read only the layers they name.

Compact: a layer keeps its `KEEP_CONTEXTS` strongest contexts of the explain split and
`KEEP_HELD` of the scoring split, cut to the tokens a card shows around the peak, and drops what
only the build, the summary or the LLM explainer reads (the activation histogram, the scoring
windows); its arrays and rules are stored gzip-compressed (`FeatureAtlas.save(gz=True)`). A live feature without a description is labelled by the tokens its strongest
contexts peak on (label source "peaks"), so every live feature has a label a graph node can show.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from functools import cached_property
from pathlib import Path

import numpy as np

from diagnostics.atlas.cards import CARD_AFTER, CARD_BEFORE
from diagnostics.atlas.label_search import label_matches
from diagnostics.atlas.records import FeatureEntry
from diagnostics.atlas.store import AtlasCorrupt, AtlasError, FeatureAtlas, sae_fingerprint
from diagnostics.atlas.surface import show_token
from diagnostics.feature_card import FeatureCard

log = logging.getLogger(__name__)
SET_ATLAS_DIR = "atlas"
SET_FILE = "set.json"
VOCAB_FILE = "vocab.json"
KEEP_CONTEXTS = 3
"""Explain-split contexts kept per feature (the feature page's max-activating contexts)."""
KEEP_HELD = 2
"""Scoring-split contexts kept per feature (what its card shows)."""
DROPPED = ("histogram", "score_windows", "first_count", "easy_auroc",
           "description_random_auroc", "description_n_positive")  # fmt: skip
"""Arrays a layer's stored atlas leaves out (read by the build's summary, not by a reader)."""
PEAK_LABEL_TOKENS = 3


def feature_id(layer: int, feature: int) -> str:
    return f"{layer}/{feature}"


def parse_feature_id(text: str) -> tuple[int, int]:
    """(layer, feature) of a `layer/feature` id; ValueError when it is not one."""
    layer, sep, index = text.strip().partition("/")
    if not (sep and layer.isascii() and layer.isdigit() and index.isascii() and index.isdigit()):
        raise ValueError(f"a transcoder feature is LAYER/FEATURE, not {text!r}")
    return int(layer), int(index)


def layer_name(layer: int) -> str:
    return f"layer_{layer}"


def peak_label(atlas: FeatureAtlas, i: int, n: int = PEAK_LABEL_TOKENS) -> str:
    """`strongest on "a", "b"`: the tokens latent i's stored contexts peak on, most often
    first ('' when it has none)."""
    rows = atlas.arrays["ctx_tokens"][i][atlas.arrays["ctx_vals"][i] > 0]  # [k, width]
    peaks = Counter(show_token(atlas.vocab[int(r[atlas.context_peak])]) for r in rows)
    shown = [f'"{t}"' for t, _ in peaks.most_common(n)]
    return f"strongest on {', '.join(shown)}" if shown else ""


def label_unlabelled(atlas: FeatureAtlas) -> None:
    """Give every live feature without a label its `peak_label` (source "peaks")."""
    for i in np.nonzero(atlas.live)[0]:
        if not atlas.labels[i]:
            atlas.labels[i] = peak_label(atlas, int(i))
            atlas.label_sources[i] = "peaks" if atlas.labels[i] else atlas.label_sources[i]


def compact(atlas: FeatureAtlas, keep: int = KEEP_CONTEXTS, keep_held: int = KEEP_HELD) -> None:
    """Trim a freshly built layer atlas to what readers use (see the module doc), in place."""
    a = atlas.arrays
    for name in DROPPED:
        a.pop(name, None)
    peak = atlas.context_peak
    window = slice(max(0, peak - CARD_BEFORE), peak + CARD_AFTER + 1)
    for prefix, k in (("ctx", keep), ("held_ctx", keep_held)):
        a[f"{prefix}_tokens"] = a[f"{prefix}_tokens"][:, :k, window]
        a[f"{prefix}_acts"] = a[f"{prefix}_acts"][:, :k, window]
        a[f"{prefix}_vals"] = a[f"{prefix}_vals"][:, :k]
    for name in ("count", "n_positive", "n_negative"):
        a[name] = a[name].astype(np.int32)
    atlas.context_peak = peak - window.start
    for rule in atlas.rules:  # what a reader shows of them, at 4 digits
        rule["log_odds"] = [round(x, 2) for x in rule["log_odds"]]
        rule["coverage"], rule["precision"] = (
            round(rule["coverage"], 4),
            round(rule["precision"], 4),
        )


class TranscoderAtlas:
    """The atlas of every layer of one transcoder set (see the module doc)."""

    def __init__(self, set_dir: Path, path: Path, meta: dict) -> None:
        self.set_dir, self.path, self.meta = set_dir, path, meta
        self._layers: dict[int, FeatureAtlas] = {}

    @classmethod
    def load(cls, set_dir: str | Path, *, missing_ok: bool = False) -> TranscoderAtlas | None:
        """The atlas of the set at `set_dir` ('default': the shipped set). AtlasError when it has
        none (None with `missing_ok`) or its set.json cannot be read."""
        from diagnostics.transcoders.shipped import resolve_transcoders_dir

        set_dir = resolve_transcoders_dir(set_dir)
        path = set_dir / SET_ATLAS_DIR
        if not (path / SET_FILE).is_file():
            if missing_ok:
                return None
            raise AtlasError(
                f"no transcoder atlas at {path}: build one with `driftscope features build "
                f"--transcoders {set_dir}` (docs/transcoders.md)"
            )
        try:
            meta = json.loads((path / SET_FILE).read_text())
            meta["layers"] = [int(x) for x in meta["layers"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise AtlasCorrupt(
                f"the transcoder atlas file {path / SET_FILE} is corrupt: {err}"
            ) from None
        return cls(set_dir, path, meta)

    @property
    def layers(self) -> list[int]:
        return self.meta["layers"]

    @property
    def d_tc(self) -> int:
        return int(self.meta["d_tc"])

    @property
    def scan(self) -> str:
        """The set's scan id (config.yaml), as a report's trace records it."""
        return str(self.meta.get("scan", ""))

    @cached_property
    def vocab(self) -> list[str]:
        try:
            return json.loads((self.path / VOCAB_FILE).read_text())
        except (OSError, ValueError) as err:
            raise AtlasCorrupt(f"the transcoder atlas vocabulary is unreadable: {err}") from None

    def layer(self, layer: int) -> FeatureAtlas:
        """Layer `layer`'s atlas, read once and checked to belong to the set's layer."""
        if layer not in self._layers:
            if layer not in self.layers:
                raise AtlasError(f"layer {layer} out of range: the atlas has layers {self.layers}")
            atlas = FeatureAtlas.load(self.path / layer_name(layer), vocab=self.vocab)
            if atlas.meta.sae_fingerprint != _layer_fingerprint(self.set_dir, layer):
                raise AtlasError(
                    f"the transcoder atlas at {self.path} was built for another set: rebuild it "
                    "(features build --transcoders)"
                )
            self._layers[layer] = atlas
        return self._layers[layer]

    def label(self, layer: int, feature: int) -> str:
        return self.layer(layer).label(feature)

    def entry(self, layer: int, feature: int) -> FeatureEntry:
        return self.layer(layer).entry(feature)

    def card(self, layer: int, feature: int) -> FeatureCard | None:
        return self.layer(layer).card(feature)

    def node_label(self, layer: int, feature: int) -> str | None:
        """The label a graph node shows: None when the atlas has none for it (no such layer or
        feature, dead, or nothing readable)."""
        if layer not in self.layers or not 0 <= feature < self.d_tc:
            return None
        label = self.label(layer, feature)
        return label if label and label != "(dead)" else None

    def search_label(self, query: str) -> list[tuple[int, int]]:
        """(layer, feature) of the features whose label, description or rule tokens match
        `query`, best first over every layer (`diagnostics.atlas.label_search`)."""
        found = []
        for layer in self.layers:
            a = self.layer(layer)
            score = np.nan_to_num(a.arrays["description_auroc"], nan=-1.0)
            for key, i in label_matches(query, a.labels, a.descriptions, a.rules, score):
                found.append((key, layer, i))
        return [(layer, i) for _, layer, i in sorted(found)]


class NodeLabels:
    """(layer, feature) -> the atlas label of a graph node, or None: the atlas of the set at
    `set_dir` is read on the first call; without one, or with another set's, nodes go unlabelled
    (logged once) and are named by their ids."""

    def __init__(self, set_dir: str | Path) -> None:
        self.set_dir = set_dir
        self._atlas: TranscoderAtlas | None | bool = False  # False: not read yet

    def __call__(self, layer: int, feature: int) -> str | None:
        if self._atlas is False:
            self._atlas = self._read(lambda: TranscoderAtlas.load(self.set_dir, missing_ok=True))
        atlas = self._atlas
        if not isinstance(atlas, TranscoderAtlas):
            return None
        label = self._read(lambda: atlas.node_label(layer, feature))
        if label is False:
            self._atlas = None
        return label or None

    @staticmethod
    def _read(fn):
        try:
            return fn()
        except AtlasError as err:
            log.warning("graph nodes are named by their ids: %s", err)
            return False


def _layer_fingerprint(set_dir: Path, layer: int) -> str:
    """The fingerprint of the set's layer decoder (what its atlas was built for)."""
    from safetensors import safe_open

    from diagnostics.errors import SaeFormatError
    from diagnostics.transcoders.io import read_config

    try:
        path = read_config(set_dir)["transcoders"][layer]
        with safe_open(path, "pt") as f:
            return sae_fingerprint(f.get_tensor("W_dec"))
    except (SaeFormatError, OSError, IndexError) as err:
        raise AtlasError(f"the transcoder set of the atlas cannot be read: {err}") from None
