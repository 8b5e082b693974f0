"""SAE configuration, stored as `cfg.json` in the SAELens v6 layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from diagnostics.hooks import parse_hook_name

Architecture = Literal["jumprelu", "topk"]


@dataclass
class SaeMetadata:
    """Where an SAE belongs and how it was made (SAELens `metadata`)."""

    model_name: str = ""
    """Identity of the model whose activations the SAE reads, e.g. a hub id."""
    hook_name: str = ""
    """Hook point, `blocks.L.hook_resid_post`."""
    dataset: str = ""
    """Text the SAE was trained on (paths or a description)."""
    training_tokens: int = 0
    """Number of activation vectors seen in training."""
    context_size: int = 0
    """Window length (tokens) used when harvesting activations."""
    prepend_bos: bool = True
    """Whether harvesting windows started with a BOS-like token (masked out)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else: training config, evaluation numbers, sweep tables."""


@dataclass
class SaeConfig:
    """Shape and encoding rule of a sparse autoencoder."""

    architecture: Architecture
    """'jumprelu' (per-latent threshold; the inference form of TopK/BatchTopK) or 'topk'."""
    d_in: int
    """Width of the residual stream it reads."""
    d_sae: int
    """Number of latents."""
    k: int | None = None
    """Active latents per token, for 'topk'."""
    apply_b_dec_to_input: bool = True
    """Subtract `b_dec` from the input before encoding (SAELens default; Gemma Scope: False)."""
    dtype: str = "float32"
    """dtype of the stored weights."""
    metadata: SaeMetadata = field(default_factory=SaeMetadata)

    def __post_init__(self) -> None:
        if self.architecture not in ("jumprelu", "topk"):
            raise ValueError(f"unknown SAE architecture {self.architecture!r}")
        if self.architecture == "topk" and not (self.k and self.k > 0):
            raise ValueError("a 'topk' SAE needs k > 0")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise ValueError("d_in and d_sae must be positive")

    @property
    def hook_layer(self) -> int:
        return parse_hook_name(self.metadata.hook_name)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(normalize_activations="none", reshape_activations="none")
        if self.k is None:
            out.pop("k")
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SaeConfig:
        """Read a SAELens cfg (v6 with `metadata`, or older flat) or one of ours."""
        meta_raw = dict(raw.get("metadata") or {})
        for key in ("model_name", "hook_name", "dataset_path", "context_size", "prepend_bos"):
            if key in raw and key not in meta_raw:  # SAELens < 6 kept these at the top level
                meta_raw[key] = raw[key]
        if "dataset_path" in meta_raw and "dataset" not in meta_raw:
            meta_raw["dataset"] = meta_raw.pop("dataset_path")
        known = SaeMetadata.__dataclass_fields__
        extra = dict(meta_raw.pop("extra", {}) or {})
        extra.update({k: v for k, v in meta_raw.items() if k not in known})
        meta = SaeMetadata(**{k: v for k, v in meta_raw.items() if k in known}, extra=extra)
        if raw.get("normalize_activations", "none") not in ("none", None):
            raise ValueError(
                f"normalize_activations={raw['normalize_activations']!r} is not supported: "
                "fold the scaling into the weights first"
            )
        return cls(
            architecture=raw.get("architecture", "jumprelu"),
            d_in=int(raw["d_in"]),
            d_sae=int(raw["d_sae"]),
            k=raw.get("k"),
            apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
            dtype=str(raw.get("dtype", "float32")).removeprefix("torch."),
            metadata=meta,
        )
