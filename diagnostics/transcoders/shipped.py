"""Where the transcoder set shipped for the default model lives."""

from __future__ import annotations

from pathlib import Path

DEFAULT_TRANSCODERS = "default"
"""Transcoder-set name that selects the set shipped for the default model."""


def shipped_transcoders_dir() -> Path:
    """The shipped set for SmolLM2-135M-Instruct: 30 skip transcoders, circuit-tracer format."""
    import diagnostics

    return Path(diagnostics.__file__).parent / "assets/transcoders/smollm2-135m-instruct-plt"


def resolve_transcoders_dir(name: str | Path) -> Path:
    """The directory a set name refers to: 'default' is the shipped set, else a path."""
    if str(name) == DEFAULT_TRANSCODERS:
        return shipped_transcoders_dir()
    return Path(name).expanduser()
