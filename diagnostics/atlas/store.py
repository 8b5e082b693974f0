"""The feature atlas on disk and in memory: `<sae_dir>/atlas/` = arrays.safetensors + atlas.json.

Numbers live in one safetensors file of numpy arrays (read in milliseconds); strings (labels,
descriptions, the decoded vocabulary, build metadata) in one JSON file, label rules in another. `ATLAS_VERSION` is bumped whenever
the layout changes; an atlas of another version is refused with a message to rebuild it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load, save

from diagnostics.atlas.cards import feature_card
from diagnostics.atlas.describe import peak_agreement, sub_rule
from diagnostics.atlas.generic import (
    format_tokens,
    generic_mask,
    generic_reason,
    peak_format_share,
)
from diagnostics.atlas.label_search import rank_by_label
from diagnostics.atlas.labels import render_rule
from diagnostics.atlas.records import (
    AtlasMeta,
    ContextExample,
    FeatureEntry,
    LabelRule,
    OutputTest,
    TokenLift,
    TokenValue,
)
from diagnostics.errors import DriftscopeError
from diagnostics.feature_card import FeatureCard

ATLAS_VERSION = 3
ATLAS_DIR = "atlas"
ARRAYS_FILE = "arrays.safetensors"
JSON_FILE = "atlas.json"
RULES_FILE = "rules.json"
GZ = ".gz"
PER_LATENT = ("count", "density", "mean_activation", "max_activation", "detection_auroc",
              "description_auroc", "is_dense", "is_unigram", "format_share", "first_share")  # fmt: skip
"""Arrays every reader indexes by latent: each must have d_sae rows."""
U16_PAD = np.iinfo(np.uint16).max


class AtlasError(DriftscopeError):
    """A feature atlas is missing, of another version, or does not belong to this SAE."""

    exit_code = 5


class AtlasCorrupt(AtlasError):
    """A feature atlas's files are there but cannot be read (truncated, edited, mismatched)."""


def sae_fingerprint(W_dec) -> str:
    """sha1 of the float32 decoder weights [d_sae, d_in] (identifies the SAE an atlas describes)."""
    arr = np.ascontiguousarray(np.asarray(W_dec.detach().float().cpu().numpy(), dtype=np.float32))
    return hashlib.sha1(arr.tobytes()).hexdigest()


@dataclass
class FeatureAtlas:
    """Per-latent statistics, contexts, logit effects and scored labels of one SAE."""

    meta: AtlasMeta
    arrays: dict[str, np.ndarray]
    labels: list[str]  # readable labels: description (or LLM label) plus causal outputs
    descriptions: list[str]  # short offline descriptions ('' for a latent without a rule)
    label_sources: list[str]
    rules: list[dict]  # LabelRule dicts (validated into LabelRule in `entry`), one per latent
    vocab: list[str]  # decoded text of every token id
    context_peak: int  # index of the peak token inside every stored context window

    @property
    def version(self) -> str:
        """Which atlas a report used: layout version, the SAE it belongs to, and its size."""
        m = self.meta
        return f"v{m.version} sae:{m.sae_fingerprint[:8]} {m.n_tokens} tokens"

    # -- array views used by the diagnosis engine -------------------------------------------
    @property
    def d_sae(self) -> int:
        return self.meta.d_sae

    @property
    def n_tokens(self) -> int:
        return self.meta.n_tokens

    @property
    def density(self) -> np.ndarray:  # [d_sae]
        return self.arrays["density"]

    @property
    def mean_activation(self) -> np.ndarray:  # [d_sae], mean over tokens where it fires
        return self.arrays["mean_activation"]

    @property
    def max_activation(self) -> np.ndarray:  # [d_sae]
        return self.arrays["max_activation"]

    @property
    def detection_auroc(self) -> np.ndarray:  # [d_sae], NaN where unscored
        return self.arrays["detection_auroc"]

    @property
    def description_auroc(self) -> np.ndarray:  # [d_sae], the description's score, NaN: unscored
        return self.arrays["description_auroc"]

    @property
    def is_dense(self) -> np.ndarray:  # [d_sae] bool
        return self.arrays["is_dense"].astype(bool)

    @property
    def is_unigram(self) -> np.ndarray:  # [d_sae] bool
        return self.arrays["is_unigram"].astype(bool)

    @property
    def live(self) -> np.ndarray:  # [d_sae] bool, fired at least once
        return self.arrays["count"] > 0

    @property
    def peak_format_share(self) -> np.ndarray:  # [d_sae] share of top contexts peaking on format
        if "peak_format_share" not in self.arrays:  # from the stored contexts, once per load
            a = self.arrays
            pad = U16_PAD if a["ctx_tokens"].dtype == np.uint16 else -1
            mask = np.append(format_tokens(self.vocab, []), False)  # index len(vocab): never
            tokens = np.where(a["ctx_tokens"] == pad, len(self.vocab), a["ctx_tokens"])
            self.arrays["peak_format_share"] = peak_format_share(
                tokens, a["ctx_vals"], self.context_peak, mask, len(self.vocab)
            )
        return self.arrays["peak_format_share"]

    @property
    def generic(self) -> np.ndarray:  # [d_sae] bool, see `diagnostics.atlas.generic`
        a = self.arrays
        return (
            generic_mask(a["density"], a["format_share"], a["first_share"], self.peak_format_share)
            & self.live
        )

    def label(self, i: int) -> str:
        """What a person reads: the short description (or the LLM label), then the output
        tokens that passed the causal test; '' when there is neither, '(dead)' for a dead latent."""
        return self.labels[self._check(i)]

    def description(self, i: int) -> str:
        """The short offline input-side description ('' when the latent has no label rule)."""
        return self.descriptions[self._check(i)]

    def is_generic(self, i: int) -> bool:
        """Dense (> 5% of tokens) or firing mostly on formatting or a text's first token."""
        return bool(self.generic[self._check(i)])

    def generic_reason(self, i: int) -> str:
        """Why latent i is generic, e.g. 'dense: fires on 16.3% of tokens' ('' when it is not)."""
        i = self._check(i)
        if not self.live[i]:
            return ""
        a = self.arrays
        return generic_reason(
            float(a["density"][i]),
            float(a["format_share"][i]),
            float(a["first_share"][i]),
            float(self.peak_format_share[i]),
        )

    def card(self, i: int) -> FeatureCard | None:
        """What is shown wherever latent i is named: description, strongest contexts with the
        peak token marked, label score (`diagnostics.atlas.cards`); None when it has neither a
        description nor a context."""
        return feature_card(self, self._check(i))

    def output_effect(self, i: int) -> list[TokenLift]:
        """Next tokens whose probability clamping latent i raises significantly (best first);
        empty when none passes the causal test or the atlas has none."""
        test = self.output_test(i)
        return [t for t in test.tokens if t.significant] if test is not None else []

    def output_test(self, i: int) -> OutputTest | None:
        """The causal output test of latent i (all its top tokens), None without one."""
        i = self._check(i)
        a = self.arrays
        if "output_lifts" not in a:
            return None
        threshold = float(a["output_threshold"][i])
        tested = math.isfinite(threshold)
        return OutputTest(
            tokens=[
                TokenLift(
                    token=self.vocab[int(t)],
                    token_id=int(t),
                    lift=round(float(v), 6),
                    significant=bool(tested and v > threshold),
                )
                for t, v in zip(a["output_ids"][i], a["output_lifts"][i], strict=True)
            ]
            if tested
            else [],
            threshold=round(threshold, 6) if tested else None,
            p_value=round(float(a["output_p_value"][i]), 4) if tested else None,
            edit_norm=round(float(a["output_edit_norm"][i]), 3),
            n_contexts=int(self.meta.output_test.get("n_contexts", 0)),
        )

    def rule_text(self, i: int) -> str:
        """The full label rule as a list of its tokens and bigrams."""
        return render_rule(LabelRule.model_validate(self.rules[self._check(i)]))

    def description_rule(self, i: int) -> LabelRule:
        """The part of latent i's rule its description names (what its AUROC scores)."""
        rule = LabelRule.model_validate(self.rules[self._check(i)])
        return sub_rule(rule, rule.described)

    def _check(self, i: int) -> int:
        if not 0 <= int(i) < self.d_sae:
            raise AtlasError(f"feature {i} out of range: the SAE has {self.d_sae} latents")
        return int(i)

    def entry(self, i: int) -> FeatureEntry:
        """The full record of latent i."""
        i = self._check(i)
        a = self.arrays
        levels = self.meta.quantile_levels
        rule = LabelRule.model_validate(self.rules[i])
        return FeatureEntry(
            id=i,
            density=float(a["density"][i]),
            mean_activation=float(a["mean_activation"][i]),
            max_activation=float(a["max_activation"][i]),
            quantiles={f"q{q:g}": float(v) for q, v in zip(levels, a["quantiles"][i], strict=True)},
            label=self.labels[i],
            label_source=self.label_sources[i],  # type: ignore[arg-type]
            description=self.descriptions[i],
            description_auroc=_opt(a["description_auroc"][i]),
            rule_text=render_rule(rule),
            llm_auroc=_opt(a["llm_auroc"][i]) if "llm_auroc" in a else None,
            rule=rule,
            detection_auroc=_opt(a["detection_auroc"][i]),
            random_label_auroc=_opt(a["random_label_auroc"][i]),
            n_positive_contexts=int(a["n_positive"][i]),
            n_negative_contexts=int(a["n_negative"][i]),
            is_dead=bool(a["count"][i] == 0),
            is_dense=bool(a["is_dense"][i]),
            is_unigram=bool(a["is_unigram"][i]),
            is_generic=self.is_generic(i),
            generic_reason=self.generic_reason(i),
            output=self.output_test(i),
            top_contexts=self.contexts(i),
            peaks_on_rule=self._peaks_on_description(i, rule),
            promoted_tokens=self._effects(i, "promoted"),
            suppressed_tokens=self._effects(i, "suppressed"),
        )

    def _peaks_on_description(self, i: int, rule: LabelRule) -> float | None:
        rows = self.arrays["ctx_tokens"][i][self.arrays["ctx_vals"][i] > 0]  # [k, width]
        share = peak_agreement(sub_rule(rule, rule.described), rows, self.context_peak)
        return None if share is None else round(share, 4)

    def contexts(self, i: int, *, held_out: bool = False) -> list[ContextExample]:
        """Max-activating contexts of latent i, strongest first: of the explain split (the text
        its label was written from), or with `held_out` of the scoring split (held out from label
        writing; empty in an atlas built before they were kept)."""
        prefix = "held_ctx" if held_out else "ctx"
        if f"{prefix}_vals" not in self.arrays:
            return []
        tokens, acts = self.arrays[f"{prefix}_tokens"][i], self.arrays[f"{prefix}_acts"][i]
        vals = self.arrays[f"{prefix}_vals"][i]
        pad = U16_PAD if tokens.dtype == np.uint16 else -1
        out = []
        for row, act_row, val in zip(tokens, acts, vals, strict=True):
            if val <= 0:
                continue
            keep = np.nonzero(row != pad)[0]
            out.append(
                ContextExample(
                    tokens=[self.vocab[int(t)] for t in row[keep]],
                    peak_index=int(np.searchsorted(keep, self.context_peak)),
                    activation=float(val),
                    token_activations=[round(float(x), 4) for x in act_row[keep]],
                )
            )
        return out

    def _effects(self, i: int, kind: str) -> list[TokenValue]:
        ids, vals = self.arrays[f"{kind}_ids"][i], self.arrays[f"{kind}_vals"][i]
        return [
            TokenValue(token=self.vocab[int(t)], token_id=int(t), value=round(float(v), 4))
            for t, v in zip(ids, vals, strict=True)
        ]

    def search_label(self, query: str) -> list[int]:
        """Latents whose label, description or rule tokens match `query`, best match first
        (see `diagnostics.atlas.label_search`)."""
        score = np.nan_to_num(self.arrays["description_auroc"], nan=-1.0)
        return rank_by_label(query, self.labels, self.descriptions, self.rules, score)

    def check_matches(self, sae) -> None:
        """Raise AtlasError when this atlas was built for another SAE."""
        if sae.cfg.d_sae != self.d_sae or sae_fingerprint(sae.W_dec) != self.meta.sae_fingerprint:
            raise AtlasError("the atlas was built for another SAE: rebuild it (features build)")

    # -- persistence -------------------------------------------------------------------------
    def save(
        self, sae_dir: str | Path, *, name: str = ATLAS_DIR, vocab: bool = True, gz: bool = False
    ) -> Path:
        """Write to `<sae_dir>/<name>/` atomically (a temporary sibling, then a rename). Without
        `vocab` the decoded vocabulary is left to the caller (a transcoder set's atlas keeps one
        for all its layers: `load(..., vocab=)`); `gz` compresses the arrays and rules files."""
        target = Path(sae_dir) / name
        tmp = target.with_name(name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = save({k: np.ascontiguousarray(v) for k, v in self.arrays.items()})
        doc = {
            "meta": self.meta.model_dump(),
            "context_peak": self.context_peak,
            "labels": self.labels,
            "descriptions": self.descriptions,
            "label_sources": self.label_sources,
        } | ({"vocab": self.vocab} if vocab else {})
        (tmp / JSON_FILE).write_text(json.dumps(doc, ensure_ascii=False))
        rules = json.dumps(self.rules, ensure_ascii=False).encode()
        for file, data in ((ARRAYS_FILE, arrays), (RULES_FILE, rules)):
            (tmp / (file + GZ if gz else file)).write_bytes(gzip.compress(data, 6) if gz else data)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target

    @classmethod
    def for_sae(cls, sae, location: str | Path, *, missing_ok: bool = False) -> FeatureAtlas | None:
        """The atlas of `sae` at `location` (its SAE directory, 'default', or an atlas directory),
        checked to belong to it: the one way every caller loads an atlas.

        AtlasError when there is none (None instead with `missing_ok`), when it has another layout
        version, or when it was built for another SAE.
        """
        if missing_ok and not _has_atlas(_atlas_path(location)):
            return None
        atlas = cls.load(location)
        atlas.check_matches(sae)
        return atlas

    @classmethod
    def load(cls, sae_dir: str | Path, *, vocab: list[str] | None = None) -> FeatureAtlas:
        """Read `<sae_dir>/atlas/` (or an atlas directory itself) without checking which SAE it
        belongs to: use `for_sae`. `sae_dir` may be 'default'; `vocab` is the decoded vocabulary
        of an atlas saved without its own."""
        path = _atlas_path(sae_dir)
        if not _has_atlas(path):
            raise AtlasError(
                f"no feature atlas at {path}: build one with `driftscope features build`"
            )
        doc = _read(path / JSON_FILE, json.loads)
        version = doc.get("meta", {}).get("version") if isinstance(doc, dict) else None
        if version != ATLAS_VERSION:
            raise AtlasError(
                f"the atlas at {path} has version {version}, this driftscope reads "
                f"{ATLAS_VERSION}: rebuild it with `driftscope features build`"
            )
        try:
            atlas = cls(
                meta=AtlasMeta.model_validate(doc["meta"]),
                arrays=_read(_stored(path, ARRAYS_FILE), None),
                labels=doc["labels"],
                descriptions=doc["descriptions"],
                label_sources=doc["label_sources"],
                rules=_read(_stored(path, RULES_FILE), json.loads),
                vocab=doc["vocab"] if vocab is None else vocab,
                context_peak=int(doc["context_peak"]),
            )
        except AtlasCorrupt:
            raise
        except (KeyError, TypeError, ValueError) as err:  # a field missing or of the wrong type
            raise AtlasCorrupt(
                f"the atlas at {path} is corrupt ({_what(err)}): {REBUILD}"
            ) from None
        atlas._validate(path)
        return atlas

    def _validate(self, path: Path) -> None:
        """Every per-latent list and array has one entry per latent (AtlasCorrupt otherwise)."""
        n = self.d_sae
        sizes = {
            "labels": len(self.labels), "descriptions": len(self.descriptions),
            "label_sources": len(self.label_sources), RULES_FILE: len(self.rules),
        } | {name: (self.arrays[name].shape or (0,))[0] for name in PER_LATENT if name in self.arrays}  # fmt: skip
        missing = [name for name in PER_LATENT if name not in self.arrays]
        wrong = {name: size for name, size in sizes.items() if size != n}
        if missing or wrong or not isinstance(self.rules, list):
            what = f"missing arrays {missing}" if missing else f"sizes {wrong}, expected {n}"
            raise AtlasCorrupt(f"the atlas at {path} is corrupt ({what}): {REBUILD}")


REBUILD = "rebuild it with `driftscope features build`"


def _read(file: Path, parse):
    """`parse(file's text)`, or its safetensors arrays when `parse` is None, gunzipped first when
    it ends in .gz; AtlasCorrupt when the file cannot be read or parsed (truncated, edited)."""
    try:
        data = file.read_bytes()
        data = gzip.decompress(data) if file.suffix == GZ else data
        return load(data) if parse is None else parse(data.decode())
    except Exception as err:  # JSONDecodeError, SafetensorError, UnicodeDecodeError, OSError
        raise AtlasCorrupt(f"the atlas file {file} is corrupt ({_what(err)}): {REBUILD}") from None


def _stored(path: Path, name: str) -> Path:
    """The file `name` in the atlas directory `path`, or its compressed `name.gz`."""
    return path / name if (path / name).is_file() else path / (name + GZ)


def _what(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:200]


def _atlas_path(location: str | Path) -> Path:
    """The atlas directory of `location`: an atlas directory, or an SAE directory ('default')."""
    if str(location) == "default":
        from diagnostics.sae.io import default_sae_dir

        location = default_sae_dir()
    path = Path(location).expanduser()
    return path if (path / JSON_FILE).is_file() else path / ATLAS_DIR


def _has_atlas(path: Path) -> bool:
    return all(_stored(path, f).is_file() for f in (JSON_FILE, ARRAYS_FILE, RULES_FILE))


def _opt(x) -> float | None:
    return None if math.isnan(float(x)) else round(float(x), 4)
