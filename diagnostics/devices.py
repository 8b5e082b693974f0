"""Which device the model and SAE run on: `auto` is CUDA when present, else the CPU.

One code path for every device: token ids are built on the CPU and moved at the model call
(LanguageModel), the SAE sits on the model's device, and what a report keeps is read back to the
CPU. Verdicts are computed in fp32 on every device.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda`/`cuda:N` must exist; `cpu` always does."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but this machine has no CUDA device")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} asked for, but there are {torch.cuda.device_count()} CUDA devices"
            )
        return device
    raise DeviceError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}, cuda:N")
