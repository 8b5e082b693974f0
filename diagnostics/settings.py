"""Where driftscope keeps its caches; read from the environment once per call."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DRIFTSCOPE_CACHE"
"""Environment variable naming the cache directory (de-quantized models, activation caches)."""


def cache_dir() -> Path:
    """The cache root: `$DRIFTSCOPE_CACHE`, else `$XDG_CACHE_HOME/driftscope`, else `~/.cache/driftscope`."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "driftscope"
