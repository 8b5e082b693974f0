"""Run only the layers above the SAE, from a cached residual, and read the logits at one position.

An edit of SAE latents at layer L changes nothing below it, and nothing before the first
position it touches, so a batch of single-latent ablations needs layers L+1.. only, fed the
edited residual stream from that position on (the keys and values of the positions before it
are the unedited ones, cached once), and the unembedding only at the position whose logit gap is
read. The model's own forward does this when its decoder stack is temporarily cut to the upper
layers and the residual goes in as `inputs_embeds` (positions, rotary embeddings, the causal
mask, the final norm and `logits_to_keep` are the model's own). `UpperLayers.check` compares that
path with a full forward once, so a model whose forward transforms `inputs_embeds` (Gemma scales
them) falls back to full forwards instead of giving wrong numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import DynamicCache

from diagnostics.language_model import LanguageModel, decoder_layers


@contextmanager
def _only_layers_from(lm: LanguageModel, start: int) -> Iterator[None]:
    """The model's decoder stack cut to layers[start:] inside the block (their cache slots
    renumbered from 0, so a cache holds the upper layers only)."""
    layers = decoder_layers(lm.model)
    owner = next(m for m in lm.model.modules() if any(c is layers for c in m.children()))
    name = next(n for n, c in owner.named_children() if c is layers)
    upper = list(layers)[start:]
    attns = [getattr(layer, "self_attn", None) for layer in upper]
    saved = [getattr(a, "layer_idx", None) for a in attns]
    setattr(owner, name, nn.ModuleList(upper))
    for i, attn in enumerate(attns):
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = i
    try:
        yield
    finally:
        setattr(owner, name, layers)
        for attn, idx in zip(attns, saved, strict=True):
            if attn is not None and idx is not None:
                attn.layer_idx = idx


@dataclass
class UpperLayers:
    """Logits at the last position from a residual after layer `layer` [batch, seq, d_model]."""

    lm: LanguageModel
    layer: int
    exact: bool | None = None  # None until `check` ran
    _cache: DynamicCache | None = field(default=None, repr=False)

    @torch.no_grad()
    def cache_prefix(self, resid: torch.Tensor) -> None:
        """Keep the upper layers' keys and values of the unedited residual [1, seq, d_model]."""
        with _only_layers_from(self.lm, self.layer + 1):
            out = self.lm.model(inputs_embeds=resid.to(self.lm.device), use_cache=True)
        cache = out.past_key_values
        # the cache is sized from the model's config (every layer); only the upper ones were run
        cache.layers = cache.layers[: len(decoder_layers(self.lm.model)) - self.layer - 1]
        self._cache = cache

    @torch.no_grad()
    def last_logits(self, resid: torch.Tensor, start: int = 0) -> torch.Tensor:
        """[batch, vocab] logits at the last position of resid [batch, seq, d_model], whose
        positions before `start` equal the cached unedited residual (needs `cache_prefix`)."""
        seq = resid.shape[1]
        kwargs: dict = {}
        if start > 0:
            assert self._cache is not None, "cache_prefix first"
            cache = copy.deepcopy(self._cache)
            cache.crop(start - seq)  # keep the first `start` positions
            cache.batch_repeat_interleave(resid.shape[0])
            positions = torch.arange(start, seq, device=self.lm.device)[None]
            kwargs = {
                "past_key_values": cache,
                "position_ids": positions.expand(resid.shape[0], -1),
            }
        with _only_layers_from(self.lm, self.layer + 1):
            out = self.lm.model(
                inputs_embeds=resid[:, start:].to(self.lm.device),
                logits_to_keep=1,
                use_cache=start > 0,
                **kwargs,
            )
        return out.logits[:, -1].float().cpu()

    def check(self, resid: torch.Tensor, full_logits: torch.Tensor, atol: float = 1e-3) -> bool:
        """Do the cut paths (whole and from the middle) reproduce the full forward's last logits
        [vocab] for resid [1, seq, d_model]? Caches the prefix as a side effect."""
        self.cache_prefix(resid)
        whole = self.last_logits(resid)[0]
        middle = self.last_logits(resid, start=resid.shape[1] // 2)[0]
        want = full_logits.float().cpu()
        self.exact = bool(
            (whole - want).abs().max() <= atol and (middle - want).abs().max() <= atol
        )
        return self.exact
