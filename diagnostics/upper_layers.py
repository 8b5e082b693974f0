"""Run only the layers above the SAE, from a cached residual, and read the logits at one position.

An edit of SAE latents at layer L changes nothing below it, so a batch of single-latent
ablations needs layers L+1.. only, fed the edited residual stream, and the unembedding only at
the position whose logit gap is read. The model's own forward does this when its decoder stack
is temporarily cut to the upper layers and the residual goes in as `inputs_embeds` (positions,
rotary embeddings, the causal mask, the final norm and `logits_to_keep` are the model's own).
`UpperLayers.check` compares that path with a full forward once, so a model whose forward
transforms `inputs_embeds` (Gemma scales them) falls back to full forwards instead of giving
wrong numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from diagnostics.language_model import LanguageModel, decoder_layers


@contextmanager
def _only_layers_from(lm: LanguageModel, start: int) -> Iterator[None]:
    """The model's decoder stack cut to layers[start:] inside the block."""
    layers = decoder_layers(lm.model)
    owner = next(m for m in lm.model.modules() if any(c is layers for c in m.children()))
    name = next(n for n, c in owner.named_children() if c is layers)
    setattr(owner, name, nn.ModuleList(list(layers)[start:]))
    try:
        yield
    finally:
        setattr(owner, name, layers)


@dataclass
class UpperLayers:
    """Logits at the last position from a residual after layer `layer` [batch, seq, d_model]."""

    lm: LanguageModel
    layer: int
    exact: bool | None = None  # None until `check` ran

    @torch.no_grad()
    def last_logits(self, resid: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] logits at the last position of resid [batch, seq, d_model]."""
        with _only_layers_from(self.lm, self.layer + 1):
            out = self.lm.model(inputs_embeds=resid.to(self.lm.device), logits_to_keep=1)
        return out.logits[:, -1].float().cpu()

    def check(self, resid: torch.Tensor, full_logits: torch.Tensor, atol: float = 1e-3) -> bool:
        """Does the cut path reproduce the full forward's last logits [vocab] for resid [1, seq, d]?"""
        got = self.last_logits(resid)[0]
        self.exact = bool((got - full_logits.float().cpu()).abs().max() <= atol)
        return self.exact
