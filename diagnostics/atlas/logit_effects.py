"""Output-side effects of latents: decoder direction through the final norm and the unembedding.

For a Llama-style model the logit effect of latent i is (W_dec[i] * norm.weight) @ W_U.T: the
scale-free part of the final RMSNorm (its weight) applied to the decoder direction, then the
unembedding (the "VocabProj" / logit-lens view of a feature).
"""

from __future__ import annotations

import torch
from torch import nn

from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm applied before the unembedding (Llama `model.norm`, GPT-2 `transformer.ln_f`)."""
    base = getattr(model, "base_model", model)
    for attr in ("norm", "ln_f", "final_layernorm", "final_layer_norm"):
        found = getattr(base, attr, None)
        if isinstance(found, nn.Module):
            return found
    return None


def unembedding(model: nn.Module) -> torch.Tensor:
    """The unembedding matrix W_U [vocab, d_model]."""
    head = model.get_output_embeddings()
    if head is None:
        raise TypeError(f"{type(model).__name__} has no output embeddings")
    return head.weight


@torch.no_grad()
def logit_effects(
    lm: LanguageModel, sae: SparseAutoencoder, *, k: int = 10, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k promoted and suppressed tokens of every latent (special tokens left out).

    Returns (promoted_ids [d_sae, k], promoted_values [d_sae, k], suppressed_ids [d_sae, k],
    suppressed_values [d_sae, k]); suppressed values are the most negative logit effects.
    """
    W_U = unembedding(lm.model).float().cpu()  # [vocab, d]
    norm = final_norm(lm.model)
    scale = getattr(norm, "weight", None) if norm is not None else None
    scale = scale.float().cpu() if scale is not None else torch.ones(W_U.shape[1])  # [d]
    W_dec = sae.W_dec.float().cpu()  # [d_sae, d]
    special = [t for t in lm.tokenizer.all_special_ids if t < W_U.shape[0]]
    k = min(k, W_U.shape[0] - len(special))
    outs: list[list[torch.Tensor]] = [[], [], [], []]
    for start in range(0, W_dec.shape[0], chunk):
        logits = (W_dec[start : start + chunk] * scale) @ W_U.T  # [chunk, vocab]
        top = logits.index_fill(1, torch.tensor(special, dtype=torch.long), -torch.inf).topk(k, 1)
        low = (-logits).index_fill(1, torch.tensor(special, dtype=torch.long), -torch.inf)
        bottom = low.topk(k, dim=1)
        parts = (top.indices, top.values, bottom.indices, -bottom.values)
        for out, t in zip(outs, parts, strict=True):
            out.append(t)
    return tuple(torch.cat(o) for o in outs)  # type: ignore[return-value]
