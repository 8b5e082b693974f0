"""Feature interventions on the real model, as circuit-tracer's `feature_intervention` does them
without freezing (its iterative patching): at each intervened layer the features are re-encoded
from the MLP's current input, and the MLP's output gains (value - activation) x decoder at the
intervened positions, so downstream layers see the change. The real MLPs run; the transcoders
only read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from diagnostics.language_model import LanguageModel
from diagnostics.trace.records import FeatureRef

Setting = tuple[FeatureRef, float]
"""A feature and the value it is set to."""


@contextmanager
def feature_intervention(
    lm: LanguageModel, transcoders, settings: Sequence[Setting]
) -> Iterator[None]:
    """Within the block, lm's forward passes run with `settings` applied (a pass shorter than a
    setting's position, e.g. a cached generation step, leaves that setting out)."""
    by_layer: dict[int, list[Setting]] = defaultdict(list)
    for ref, value in settings:
        by_layer[ref.layer].append((ref, value))
    handles = []
    for layer, items in by_layer.items():
        mlp = lm.decoder_layers[layer].mlp
        handles.append(mlp.register_forward_hook(_hook(transcoders[layer], items)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _hook(transcoder, items: list[Setting]):
    feats = torch.tensor([r.feature for r, _ in items])
    positions = torch.tensor([r.position for r, _ in items])
    values = torch.tensor([v for _, v in items])

    def hook(module, inputs, output):
        x = inputs[0]  # [batch, seq, d_model]: the MLP input (post_attention_layernorm output)
        keep = positions < x.shape[1]
        if not bool(keep.any()):
            return output
        pos, f, val = positions[keep], feats[keep], values[keep]
        acts = transcoder.encode(x[:, pos].float())  # [batch, n, d_tc]
        current = acts[:, torch.arange(len(f)), f]  # [batch, n]
        dec = transcoder._get_decoder_vectors(f.to(x.device)).float()  # [n, d_model]
        delta = (val.to(current) - current)[..., None] * dec  # [batch, n, d_model]
        out = output.clone()
        out.index_add_(1, pos.to(x.device), delta.to(out.dtype))
        return out

    return hook


@torch.no_grad()
def gap_and_top(
    lm: LanguageModel, ids: torch.Tensor, corrected_id: int, model_id: int
) -> tuple[float, int]:
    """logit(corrected) - logit(model's token) after ids [seq], and the top token id there."""
    logits = lm.model(ids[None].to(lm.device)).logits[0, -1].float()  # [vocab]
    return float(logits[corrected_id] - logits[model_id]), int(logits.argmax())
