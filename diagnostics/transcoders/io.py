"""Transcoder sets on disk in circuit-tracer's `transcoder_set` format.

A directory holds `config.yaml` (`model_kind: transcoder_set`, the hooks, and `transcoders:` one
`layer_{i}.safetensors` per layer as paths relative to the config) and `record.json` with how the
set was trained and how it scored. Each layer file holds `W_enc [d_tc, d_model]`,
`W_dec [d_tc, d_model]`, `b_enc [d_tc]`, `b_dec [d_model]`, `activation_function.threshold [d_tc]`
and, for skip transcoders, `W_skip [d_model, d_model]`. Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from diagnostics.errors import SaeFormatError
from diagnostics.sae.io import torch_dtype

CONFIG_FILE = "config.yaml"
RECORD_FILE = "record.json"
FEATURE_INPUT_HOOK = "mlp.hook_in"
"""circuit-tracer's name (nnsight backend) for the MLP input: post_attention_layernorm's output."""
FEATURE_OUTPUT_HOOK = "mlp.hook_out"
"""circuit-tracer's name for the MLP output."""
LAYER_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "activation_function.threshold")


def layer_file(layer: int) -> str:
    return f"layer_{layer}.safetensors"


WEIGHT_KEYS = ("W_enc", "W_dec", "W_skip")
"""Stored in the set's dtype; biases and thresholds stay float32 (they are small, and a late
layer's folded encoder bias is in the hundreds, where fp16's spacing is 0.125)."""


def round_weights(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype, mean_input: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """One layer ready to store: weights cast to `dtype`, the rest float32.

    The MLP input has a large mean m at late layers, so x W_enc^T is a large number that b_enc
    cancels; rounding W_enc alone would shift every pre-activation by (W16 - W) m, far beyond
    the JumpReLU threshold. With `mean_input` [d_model] the biases absorb that shift
    (b_enc += (W - W16) m, and b_dec likewise for the skip term), leaving only (W16 - W)(x - m).
    """
    out = {k: v.detach().float().cpu().clone() for k, v in tensors.items()}
    for key in WEIGHT_KEYS:
        if key in out:
            rounded = out[key].to(dtype)
            if mean_input is not None and key != "W_dec":
                shift = (out[key] - rounded.float()) @ mean_input.float()  # [d_out]
                out["b_enc" if key == "W_enc" else "b_dec"] += shift
            out[key] = rounded
    return {k: v.contiguous() for k, v in out.items()}


def save_transcoder_set(
    layers: dict[int, dict[str, torch.Tensor]],
    directory: str | Path,
    *,
    scan: str,
    dtype: str = "float16",
    record: dict[str, Any] | None = None,
    mean_inputs: dict[int, torch.Tensor] | None = None,
) -> Path:
    """Write one safetensors file per layer (weights in `dtype`, corrected at each layer's mean
    MLP input when given: `round_weights`), `config.yaml` and `record.json`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if sorted(layers) != list(range(len(layers))):
        raise SaeFormatError(f"a transcoder set needs layers 0..n-1, got {sorted(layers)}")
    target = torch_dtype(dtype)
    for layer, tensors in layers.items():
        missing = [k for k in LAYER_KEYS if k not in tensors]
        if missing:
            raise SaeFormatError(f"layer {layer} lacks {missing}")
        mean = (mean_inputs or {}).get(layer)
        save_file(round_weights(tensors, target, mean), str(directory / layer_file(layer)))
    config = {
        "model_kind": "transcoder_set",
        "scan": scan,
        "feature_input_hook": FEATURE_INPUT_HOOK,
        "feature_output_hook": FEATURE_OUTPUT_HOOK,
        "transcoders": [layer_file(layer) for layer in sorted(layers)],
    }
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / RECORD_FILE).write_text(json.dumps(record or {}, indent=1, sort_keys=True) + "\n")
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """`config.yaml` with its layer paths made absolute (they are relative to the file), ready for
    `circuit_tracer.utils.hf_utils.load_transcoders`."""
    directory = Path(directory).expanduser()
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise SaeFormatError(
            f"no transcoder set at {directory}: {CONFIG_FILE} is missing (`make transcoders` "
            "trains the default set; docs/transcoders.md)"
        )
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or config.get("model_kind") != "transcoder_set":
        raise SaeFormatError(f"{path}: expected model_kind: transcoder_set")
    config["transcoders"] = [
        p if p.startswith("hf://") else str((directory / p).resolve())
        for p in config["transcoders"]
    ]
    return config


def read_record(directory: str | Path) -> dict[str, Any]:
    path = Path(directory).expanduser() / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_layer(directory: str | Path, layer: int) -> dict[str, torch.Tensor]:
    """One layer's tensors as float32 (for evaluation and the atlas, without circuit-tracer)."""
    path = Path(read_config(directory)["transcoders"][layer])
    return {k: v.float() for k, v in load_file(str(path)).items()}


def load_transcoder_set(
    directory: str | Path, *, device: str | torch.device = "cpu", dtype=torch.float32
):
    """The set as circuit-tracer's `TranscoderSet` (weights in memory, not lazily read)."""
    from circuit_tracer.utils.hf_utils import load_transcoders

    return load_transcoders(
        read_config(directory),
        device=torch.device(device),
        dtype=dtype,
        lazy_encoder=False,
        lazy_decoder=False,
    )
