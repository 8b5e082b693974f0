"""Every MLP's input and output from one forward pass: what transcoders read and predict.

The MLP input is the output of `post_attention_layernorm` (circuit-tracer's `mlp.hook_in`), the
output is what the MLP adds to the residual stream (`mlp.hook_out`). The forward stops after the
last MLP asked for, so the unembedding is never computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from diagnostics.language_model import LanguageModel, decoder_layers

MlpFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]
"""Called with an MLP's (input, output) [batch, seq, d_model]; may return a replacement output."""


def mlp_of(model: nn.Module, layer: int) -> nn.Module:
    block = decoder_layers(model)[layer]
    mlp = getattr(block, "mlp", None)
    if mlp is None:
        raise TypeError(f"decoder layer {layer} of {type(model).__name__} has no .mlp")
    return mlp


@contextmanager
def hook_mlps(model: nn.Module, fns: dict[int, MlpFn]) -> Iterator[None]:
    """Call fns[layer](mlp_input, mlp_output) after each listed layer's MLP, inside the block."""
    handles = []
    for layer, fn in fns.items():

        def hook(_module, inputs, output, fn=fn):
            return fn(inputs[0], output)

        handles.append(mlp_of(model, layer).register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Done(Exception):
    """Raised after the last MLP needed, to skip the rest of the forward."""


@torch.no_grad()
def mlp_inputs_outputs(
    lm: LanguageModel | nn.Module,
    input_ids: torch.Tensor,
    layers: list[int],
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MLP inputs and outputs at `layers`, each [n_layers, batch, seq, d_model] (model dtype)."""
    model = lm.model if isinstance(lm, LanguageModel) else lm
    last = max(layers)
    ins: dict[int, torch.Tensor] = {}
    outs: dict[int, torch.Tensor] = {}

    def grab(layer: int) -> MlpFn:
        def fn(x: torch.Tensor, y: torch.Tensor) -> None:
            ins[layer], outs[layer] = x.detach(), y.detach()
            if layer == last:
                raise _Done

        return fn

    with hook_mlps(model, {layer: grab(layer) for layer in layers}):
        try:
            base = getattr(model, "base_model", model)
            base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _Done:
            pass
    return torch.stack([ins[lay] for lay in layers]), torch.stack([outs[lay] for lay in layers])
