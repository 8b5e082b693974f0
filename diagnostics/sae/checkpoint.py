"""Training checkpoints: weights, Adam moments and dead-feature counters as safetensors, plus a
JSON of the run's scalars; nothing is pickled. A run with several dictionaries (a transcoder per
layer) stores each under its own key prefix; a single SAE uses the empty prefix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diagnostics.sae.training_sae import TrainingPart

STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"


def has_checkpoint(ckpt: Path) -> bool:
    return (ckpt / STATE_JSON).is_file()


def save_checkpoint(
    ckpt: Path,
    parts: dict[str, TrainingPart],
    state: dict,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write every part, `state` and `extra` tensors (keys prefixed "extra.") to `ckpt`
    atomically (a temporary sibling, then a rename)."""
    tensors = {f"extra.{k}": v.contiguous() for k, v in (extra or {}).items()}
    for prefix, part in parts.items():
        for name, value in part.model.state_dict().items():
            tensors[f"{prefix}model.{name}"] = value.detach().contiguous()
        for name, param in part.model.named_parameters():
            st = part.optim.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    tensors[f"{prefix}optim.{name}.{key}"] = st[key].contiguous()
            if "step" in st:
                tensors[f"{prefix}optim.{name}.step"] = torch.as_tensor(
                    st["step"], dtype=torch.float32
                ).reshape(1)
        tensors[f"{prefix}since_fired"] = part.since_fired
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / STATE_TENSORS))
    (tmp / STATE_JSON).write_text(json.dumps(state) + "\n")
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def load_checkpoint(
    ckpt: Path, parts: dict[str, TrainingPart]
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore every part in place from `ckpt`; returns the saved `state` and `extra` tensors
    (empty for a checkpoint saved without them)."""
    tensors = load_file(str(ckpt / STATE_TENSORS))
    for prefix, part in parts.items():
        head = f"{prefix}model."
        part.model.load_state_dict(
            {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
        )
        for name, param in part.model.named_parameters():
            key = f"{prefix}optim.{name}"
            if f"{key}.exp_avg" in tensors:
                part.optim.state[param] = {
                    "step": tensors[f"{key}.step"].reshape(()),
                    "exp_avg": tensors[f"{key}.exp_avg"],
                    "exp_avg_sq": tensors[f"{key}.exp_avg_sq"],
                }
        part.since_fired.copy_(tensors[f"{prefix}since_fired"])
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return json.loads((ckpt / STATE_JSON).read_text()), extra
