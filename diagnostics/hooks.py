"""Hooks on the residual stream after a decoder layer (`blocks.L.hook_resid_post`).

`blocks.L.hook_resid_post` is the output of decoder layer L, i.e. `hidden_states[L + 1]`, named as in
SAELens / Gemma Scope. A hook function sees that tensor [batch, seq, d_model] and may return a
replacement (an intervention) or None (a read).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from diagnostics.language_model import LanguageModel, decoder_layers

HookFn = Callable[[torch.Tensor], torch.Tensor | None]

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def resid_post_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def parse_hook_name(name: str) -> int:
    """The layer index of a `blocks.L.hook_resid_post` name (the only hook point we support)."""
    match = _RESID_POST.match(name)
    if not match:
        raise ValueError(f"unsupported hook {name!r}: expected 'blocks.<layer>.hook_resid_post'")
    return int(match.group(1))


def _model_of(target: LanguageModel | nn.Module) -> nn.Module:
    return target.model if isinstance(target, LanguageModel) else target


@contextmanager
def hook_resid_post(target: LanguageModel | nn.Module, layer: int, fn: HookFn) -> Iterator[None]:
    """Call `fn` on the output of decoder layer `layer` during every forward inside the block."""
    layers = decoder_layers(_model_of(target))
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} out of range: the model has {len(layers)} layers")

    def hook(_module: nn.Module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output  # [batch, seq, d_model]
        new = fn(hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class _StopForward(Exception):
    """Raised inside a hook to skip the layers after the one we need."""


@torch.no_grad()
def residuals_at(
    lm: LanguageModel | nn.Module,
    input_ids: torch.Tensor,
    layer: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Residual stream after `layer` [batch, seq, d_model], running the model only up to that layer."""
    captured: list[torch.Tensor] = []

    def grab(x: torch.Tensor) -> None:
        captured.append(x)
        raise _StopForward

    model = _model_of(lm)
    with hook_resid_post(model, layer, grab):
        try:
            getattr(model, "base_model", model)(input_ids=input_ids, attention_mask=attention_mask)
        except _StopForward:
            pass
    return captured[0]
