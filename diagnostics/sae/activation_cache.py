"""Read activation caches written by `harvest`, and shuffle streamed activations.

`ActivationCache` serves random batches over several epochs from the memmapped fp16 array (loaded
into RAM when it fits). `ShuffleBuffer` is for streaming without a cache: it mixes activations from
many model batches so consecutive training batches do not come from the same documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from diagnostics.sae.harvest import ACTS_FILE, META_FILE, TOKENS_FILE, WINDOWS_FILE, CacheMeta


class ActivationCache:
    """A harvested cache: activations [n_tokens, d_model] fp16, token ids, window starts."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        meta_path = self.directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"not an activation cache (no {META_FILE}): {self.directory}")
        self.meta = CacheMeta(**json.loads(meta_path.read_text()))
        self.acts = np.load(self.directory / ACTS_FILE, mmap_mode="r")  # [n_tokens, d_model]
        self.token_ids = np.load(self.directory / TOKENS_FILE, mmap_mode="r")  # [n_tokens]
        windows = self.directory / WINDOWS_FILE
        self.window_starts = np.load(windows) if windows.is_file() else None  # [n_windows]

    def __len__(self) -> int:
        return int(self.acts.shape[0])

    @property
    def d_model(self) -> int:
        return int(self.acts.shape[1])

    def load(self, limit: int | None = None, seed: int = 0) -> torch.Tensor:
        """All rows, or a seeded uniform sample of `limit` rows, in RAM: fp16 [n, d_model]."""
        if limit is None or limit >= len(self):
            return torch.from_numpy(np.array(self.acts))  # a writable copy
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(self), size=limit, replace=False))
        return torch.from_numpy(self.acts[rows])

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n random rows as fp32 [n, d_model] (for statistics such as the input scale)."""
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(self), size=min(n, len(self)), replace=False))
        return torch.from_numpy(self.acts[idx].astype(np.float32))


def epoch_batches(
    data: torch.Tensor, batch_size: int, *, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled fp32 batches [batch_size, d] from in-RAM rows (last partial dropped)."""
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        yield data[order[start : start + batch_size]].float()


class ShuffleBuffer:
    """Half-refresh mixing buffer (as in SAELens): fill to `size` rows, emit a shuffled half."""

    def __init__(self, size: int, batch_size: int, seed: int = 0) -> None:
        if size < 2 * batch_size:
            raise ValueError("the shuffle buffer must hold at least two batches")
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Batches [batch_size, d] drawn from `chunks` ([n_i, d] each), well mixed."""
        buffer: list[torch.Tensor] = []
        held = 0
        for chunk in chunks:
            buffer.append(chunk)
            held += len(chunk)
            if held >= self.size:
                rows = torch.cat(buffer)
                rows = rows[torch.randperm(len(rows), generator=self.generator)]
                half = len(rows) // 2
                out, keep = rows[:half], rows[half:]
                for s in range(0, len(out) - self.batch_size + 1, self.batch_size):
                    yield out[s : s + self.batch_size].float()
                rest = len(out) % self.batch_size
                buffer = [keep, out[len(out) - rest :]] if rest else [keep]
                held = sum(len(b) for b in buffer)
        if buffer:
            rows = torch.cat(buffer)
            rows = rows[torch.randperm(len(rows), generator=self.generator)]
            for s in range(0, len(rows) - self.batch_size + 1, self.batch_size):
                yield rows[s : s + self.batch_size].float()
