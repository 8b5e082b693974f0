"""Find features by the text they fire on (optionally contrastive); by label keyword:
FeatureAtlas.search_label."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel

from diagnostics.atlas.store import FeatureAtlas
from diagnostics.hooks import residuals_at
from diagnostics.language_model import LanguageModel, bos_like_id
from diagnostics.sae.modules import SparseAutoencoder


class FeatureHit(BaseModel):
    """A latent found by a text search."""

    id: int
    score: float  # ranking score: (activation - versus_activation), over max_activation if known
    activation: float  # max activation over the text's tokens
    versus_activation: float | None  # max activation over the contrast text
    peak_token: str  # the text token where it peaks
    label: str | None = None
    detection_auroc: float | None = None


@torch.no_grad()
def text_activations(
    lm: LanguageModel, sae: SparseAutoencoder, text: str
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per-latent max activation [d_sae] over the text tokens of `text`, its argmax [d_sae]
    (index into the returned text tokens), and those tokens' strings (a BOS is prepended and
    ignored, as in the atlas windows)."""
    tok = lm.tokenizer
    body = tok(text, add_special_tokens=False)["input_ids"]
    if not body:
        raise ValueError("the search text has no tokens")
    ids = torch.tensor([[bos_like_id(tok), *body]], device=lm.device)  # [1, 1 + n]
    resid = residuals_at(lm, ids, sae.cfg.hook_layer)  # [1, 1 + n, d]
    feats = sae.encode(resid[0, 1:].cpu()).float()  # [n, d_sae]
    special = torch.isin(ids[0, 1:].cpu(), torch.tensor(sorted(set(tok.all_special_ids))))
    feats[special] = 0
    best, where = feats.max(dim=0)  # [d_sae]
    return best, where, [tok.decode([t]) for t in body]


def search_text(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    text: str,
    versus: str | None = None,
    top: int = 10,
    *,
    atlas: FeatureAtlas | None = None,
    normalize: bool = True,
) -> list[FeatureHit]:
    """Latents that fire on `text` (but not on `versus`), strongest difference first.

    With an atlas and `normalize`, activations are divided by each latent's max activation in the
    atlas, so a latent at 80% of its usual peak outranks a loud dense latent at 5% of its own.
    """
    act, where, strings = text_activations(lm, sae, text)
    vs = text_activations(lm, sae, versus)[0] if versus else torch.zeros_like(act)
    diff = act - vs  # [d_sae]
    if atlas is not None and normalize:
        scale = torch.from_numpy(np.asarray(atlas.max_activation, dtype=np.float32)).clamp(min=1e-6)
        diff = torch.where(scale > 1e-6, diff / scale, torch.zeros(()))
    order = torch.argsort(diff, descending=True)[:top]
    hits = []
    for i in order.tolist():
        if float(diff[i]) <= 0:
            break
        auroc = None
        if atlas is not None:
            a = float(atlas.detection_auroc[i])
            auroc = None if np.isnan(a) else round(a, 4)
        hits.append(
            FeatureHit(
                id=i,
                score=round(float(diff[i]), 4),
                activation=round(float(act[i]), 4),
                versus_activation=round(float(vs[i]), 4) if versus else None,
                peak_token=strings[int(where[i])],
                label=atlas.label(i) if atlas is not None else None,
                detection_auroc=auroc,
            )
        )
    return hits
