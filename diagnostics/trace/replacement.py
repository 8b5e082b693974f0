"""circuit-tracer's replacement model (nnsight backend): the real model read from a local
directory, with a transcoder set whose error nodes carry what the transcoders miss."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from diagnostics.errors import ModelLoadError
from diagnostics.language_model import LanguageModel
from diagnostics.transcoders.io import load_transcoder_set, read_config


@dataclass
class Replacement:
    """A loaded replacement model and the transcoder set's identity."""

    model: object  # circuit_tracer NNSightReplacementModel
    transcoders: object  # its circuit_tracer TranscoderSet (unwrapped: nnsight wraps the model's)
    scan: str  # the transcoder set's scan id
    n_layers: int


def model_dir_of(lm: LanguageModel) -> Path:
    """A local directory holding lm's weights and tokenizer: the directory it came from, the
    bundled model's de-quantized cache, or (a model built in memory) a fresh save of it."""
    source = Path(str(lm.source)).expanduser()
    if source.is_dir() and (source / "config.json").is_file():
        return source
    if source.suffix == ".gguf" or lm.source == "bundled":
        from diagnostics.model_loading import bundled_model_dir

        return bundled_model_dir()
    target = Path(tempfile.mkdtemp(prefix="driftscope-trace-model-"))
    lm.model.save_pretrained(target, safe_serialization=True)
    lm.tokenizer.save_pretrained(target)
    return target


def load_replacement(
    lm: LanguageModel, transcoder_dir: str | Path, *, device: str = "cpu"
) -> Replacement:
    """The replacement model for lm with the transcoder set at `transcoder_dir` (float32)."""
    from circuit_tracer.replacement_model.replacement_model_nnsight import (
        NNSightReplacementModel,
    )

    config = read_config(transcoder_dir)
    transcoders = load_transcoder_set(transcoder_dir, device=device)
    if len(transcoders) != lm.n_layers:
        raise ModelLoadError(
            f"the transcoder set at {transcoder_dir} has {len(transcoders)} layers; "
            f"the model has {lm.n_layers}"
        )
    model = NNSightReplacementModel.from_pretrained_and_transcoders(
        str(model_dir_of(lm)), transcoders, device=device, dtype=torch.float32
    )
    return Replacement(
        model=model, transcoders=transcoders, scan=str(config.get("scan", "")), n_layers=lm.n_layers
    )
