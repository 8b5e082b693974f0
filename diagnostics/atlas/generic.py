"""Generic latents: dense ones, and those that fire mostly on formatting or at special positions.

Such a latent fires in nearly every sentence ("?", "=", a bare space, the first token of a
window), so finding it active on a failing prompt says little about the failure. It is marked
`generic` with the reason, and a diagnosis ranks it below specific latents.

- dense: fires on more than `DENSITY` of held-out tokens;
- formatting: at least `SHARE` of its firings (explain split) are on whitespace, punctuation or
  symbol tokens (no letter or digit) or special tokens;
- position: at least `SHARE` of its firings are on the first text token of a window (right after
  the BOS), where the model has no context;
- formatting peaks: at least `SHARE` of its max-activating contexts peak on a formatting token.
  A latent can fire on words most of the time and still be strongest on a bare space before a
  number (its firing share just under half, its top contexts all spaces); what it is shown by is
  its strongest firings, so those decide too.
"""

from __future__ import annotations

import numpy as np

from diagnostics.atlas.surface import is_format_text

DENSITY = 0.05
SHARE = 0.5


def format_tokens(strings: list[str], special_ids: list[int]) -> np.ndarray:
    """[vocab] bool: tokens with no letter or digit (whitespace, punctuation, symbols), specials."""
    mask = np.array([is_format_text(s) for s in strings], dtype=bool)
    mask[[t for t in special_ids if t < len(mask)]] = True
    return mask


def format_share(
    latent_of_pair: np.ndarray, token_of_pair: np.ndarray, fires: np.ndarray, mask: np.ndarray,
    d_sae: int,
) -> np.ndarray:  # fmt: skip
    """[d_sae] share of each latent's firings on format tokens, from sparse (latent, token) counts."""
    total = np.bincount(latent_of_pair, weights=fires, minlength=d_sae)
    on = np.bincount(latent_of_pair, weights=fires * mask[token_of_pair], minlength=d_sae)
    return (on / np.maximum(total, 1)).astype(np.float32)


def peak_format_share(
    ctx_tokens: np.ndarray, ctx_vals: np.ndarray, peak: int, mask: np.ndarray, pad: int
) -> np.ndarray:
    """[d_sae] share of each latent's stored max-activating contexts (ctx_tokens [d_sae, k, width],
    ctx_vals [d_sae, k], the peak at column `peak`) whose peak token is a format token."""
    tokens = ctx_tokens[:, :, peak].astype(np.int64)  # [d_sae, k]
    real = (ctx_vals > 0) & (tokens != pad) & (tokens >= 0)
    on = real & mask[np.where(real, tokens, 0)]
    return (on.sum(1) / np.maximum(real.sum(1), 1)).astype(np.float32)


def generic_reason(
    density: float, fmt_share: float, first_share: float, peak_share: float = 0.0
) -> str:
    """Why a latent is generic ('' when it is not)."""
    if density > DENSITY:
        return f"dense: fires on {density:.1%} of tokens"
    if fmt_share >= SHARE:
        return f"formatting: {fmt_share:.0%} of its firings are on whitespace or punctuation"
    if first_share >= SHARE:
        return f"position: {first_share:.0%} of its firings are on the first token of a text"
    if peak_share >= SHARE:
        return (
            f"formatting: {peak_share:.0%} of its strongest firings are on whitespace or "
            "punctuation"
        )
    return ""


def generic_mask(
    density: np.ndarray, fmt_share: np.ndarray, first_share: np.ndarray, peak_share=0.0
) -> np.ndarray:
    """[d_sae] bool, vectorised `generic_reason(...) != ''`."""
    return (
        (density > DENSITY) | (fmt_share >= SHARE) | (first_share >= SHARE) | (peak_share >= SHARE)
    )
