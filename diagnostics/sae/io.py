"""Save and load SAEs in the SAELens layout: `cfg.json` + `sae_weights.safetensors`.

Only safetensors and `.npz` (read with `allow_pickle=False`) are read. Pickle-based files
(`.pt`, `.pth`, `.bin`, `.pkl`, `.ckpt`) are refused: unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diagnostics.devices import resolve_device
from diagnostics.errors import SaeFormatError
from diagnostics.sae.config import SaeConfig
from diagnostics.sae.modules import SparseAutoencoder, build_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name.removeprefix("torch.")]
    except KeyError:
        raise SaeFormatError(f"unsupported dtype {name!r}: use one of {sorted(_DTYPES)}") from None


def save_sae(sae: SparseAutoencoder, directory: str | Path, *, dtype: str | None = None) -> Path:
    """Write `cfg.json` and `sae_weights.safetensors` (weights cast to `dtype` if given)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = torch_dtype(dtype) if dtype else next(sae.parameters()).dtype
    tensors = {k: v.detach().to(target).contiguous().cpu() for k, v in sae.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    cfg = sae.cfg.to_dict() | {"dtype": str(target).removeprefix("torch.")}
    (directory / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return directory


DEFAULT_SAE = "default"
"""SAE name that selects the SAE shipped for the default model."""


def default_sae_dir() -> Path:
    """Directory of the shipped SAE for SmolLM2-135M-Instruct (layer 15 resid_post)."""
    import diagnostics

    return Path(diagnostics.__file__).parent / "assets/saes/smollm2-135m-instruct-l15"


def resolve_sae_dir(name: str | Path) -> Path:
    """The directory an SAE name refers to: 'default' is the shipped SAE, else a path."""
    return default_sae_dir() if str(name) == DEFAULT_SAE else Path(name).expanduser()


def record_in_cfg(directory: str | Path, key: str, value) -> None:
    """Store `value` under `metadata.extra[key]` of an SAE's cfg.json; the weights are untouched."""
    path = resolve_sae_dir(directory) / CFG_FILE
    cfg = json.loads(path.read_text())
    cfg.setdefault("metadata", {}).setdefault("extra", {})[key] = value
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def load_sae(
    path: str | Path, *, dtype: str | None = "float32", device: str = "cpu"
) -> SparseAutoencoder:
    """Load an SAE directory in the SAELens layout (or a Gemma Scope `params.npz`).

    `path` "default" is the shipped SAE (`default_sae_dir()`). `dtype` is the dtype of the
    returned module; None keeps the stored one. `device`: where it runs (the model's device;
    "auto" as diagnostics.devices.resolve_device).
    """
    return _load_sae(path, dtype).to(resolve_device(device))


def _load_sae(path: str | Path, dtype: str | None) -> SparseAutoencoder:
    path = resolve_sae_dir(path)
    if path.suffix in PICKLE_SUFFIXES or (path.is_dir() and _only_pickles(path)):
        raise SaeFormatError(
            f"refusing to load {path}: pickle files can run arbitrary code; "
            "convert the weights to safetensors (SAELens layout) first"
        )
    if path.suffix == ".npz":
        from diagnostics.sae.convert import gemma_scope_to_sae

        return gemma_scope_to_sae(path).to(torch_dtype(dtype) if dtype else torch.float32)
    if not path.is_dir():
        raise SaeFormatError(f"SAE not found: {path} is not a directory")
    cfg_path, weights_path = path / CFG_FILE, path / WEIGHTS_FILE
    if not cfg_path.is_file() or not weights_path.is_file():
        raise SaeFormatError(f"{path} is not an SAE: expected {CFG_FILE} and {WEIGHTS_FILE}")
    try:
        cfg = SaeConfig.from_dict(json.loads(cfg_path.read_text()))
        tensors = load_file(str(weights_path))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, SafetensorError) as err:
        raise SaeFormatError(f"{path} is not a readable SAE: {err}") from err
    sae = build_sae(cfg)
    expected = set(sae.state_dict())
    if set(tensors) != expected:
        raise SaeFormatError(
            f"{weights_path} holds {sorted(tensors)}, but a {cfg.architecture} SAE needs "
            f"{sorted(expected)}"
        )
    for name, tensor in tensors.items():
        want = tuple(sae.state_dict()[name].shape)
        if tuple(tensor.shape) != want:
            raise SaeFormatError(f"{name} has shape {tuple(tensor.shape)}, expected {want}")
    sae = sae.to(tensors["W_enc"].dtype)
    sae.load_state_dict(tensors)
    if dtype:
        sae = sae.to(torch_dtype(dtype))
        sae.cfg.dtype = dtype
    return sae.eval().requires_grad_(False)


def _only_pickles(directory: Path) -> bool:
    files = [p for p in directory.iterdir() if p.is_file()]
    return not (directory / WEIGHTS_FILE).exists() and any(
        p.suffix in PICKLE_SUFFIXES for p in files
    )
