"""Checkpoints of an atlas build, so a build of many CPU-hours survives being stopped.

A build has two long stages: the streaming pass over the text (`collect`) and the causal output
test (`token_change`, one block of latents or random directions at a time). The checkpoint
directory holds the pass's state every `every` batches (its accumulators, scoring contexts and how
many batches it consumed) and one file per finished block of the test. A resumed build checks that
it runs with the same settings (the text, the SAE, every build option), skips the batches and
blocks already done, and gets the same atlas as an uninterrupted one. The directory is removed
once the atlas is saved.

Files are written to a temporary name and renamed, so a build killed mid-write leaves the last
complete checkpoint. They are pickles (torch.save) of this build's own state: only resume from a
directory this machine wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from diagnostics.errors import DriftscopeError

SETTINGS_FILE = "settings.json"
PASS_FILE = "pass.pt"
BLOCKS_DIR = "token_change"
CHECKPOINT_EVERY = 200
"""Batches of the streaming pass between checkpoints (about 800k tokens at batch 16 x 256)."""


class CheckpointMismatch(DriftscopeError):
    """A build was asked to resume from a checkpoint made with other settings."""

    exit_code = 2


class BuildCheckpoint:
    """The checkpoint directory of one atlas build (see the module doc)."""

    def __init__(
        self, directory: str | Path, settings: dict[str, Any], every: int = CHECKPOINT_EVERY
    ):
        self.dir = Path(directory)
        self.every = every
        self.settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        path = self.dir / SETTINGS_FILE
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored != self.settings:
                changed = sorted(
                    k
                    for k in set(stored) | set(self.settings)
                    if stored.get(k) != self.settings.get(k)
                )
                raise CheckpointMismatch(
                    f"the build checkpoint at {self.dir} was made with other settings "
                    f"({', '.join(changed)}): rerun with the same ones, or delete it to start over"
                )
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            _write_text(path, json.dumps(self.settings, sort_keys=True, indent=1))

    def load_pass(self) -> dict[str, Any] | None:
        """The streaming pass's last saved state, None when it has none."""
        path = self.dir / PASS_FILE
        return torch.load(path, weights_only=False) if path.is_file() else None

    def save_pass(self, state: dict[str, Any]) -> None:
        _write(self.dir / PASS_FILE, state)

    def has_block(self, name: str) -> bool:
        return (self.dir / BLOCKS_DIR / f"{name}.pt").is_file()

    def load_block(self, name: str) -> Any | None:
        path = self.dir / BLOCKS_DIR / f"{name}.pt"
        return torch.load(path, weights_only=False) if path.is_file() else None

    def save_block(self, name: str, value: Any) -> None:
        (self.dir / BLOCKS_DIR).mkdir(parents=True, exist_ok=True)
        _write(self.dir / BLOCKS_DIR / f"{name}.pt", value)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _write(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(value, tmp)
    tmp.replace(path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
