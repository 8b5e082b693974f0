"""Generic latents: dense ones, and those that fire mostly on formatting or at special positions.

Such a latent fires in nearly every sentence ("?", "=", a bare space, the first token of a
window), so finding it active on a failing prompt says little about the failure. It is marked
`generic` with the reason, and a diagnosis ranks it below specific latents.

- dense: fires on more than `DENSITY` of held-out tokens;
- formatting: at least `SHARE` of its firings (explain split) are on whitespace, punctuation or
  symbol tokens (no letter or digit) or special tokens;
- position: at least `SHARE` of its firings are on the first text token of a window (right after
  the BOS), where the model has no context.
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


def generic_reason(density: float, fmt_share: float, first_share: float) -> str:
    """Why a latent is generic ('' when it is not)."""
    if density > DENSITY:
        return f"dense: fires on {density:.1%} of tokens"
    if fmt_share >= SHARE:
        return f"formatting: {fmt_share:.0%} of its firings are on whitespace or punctuation"
    if first_share >= SHARE:
        return f"position: {first_share:.0%} of its firings are on the first token of a text"
    return ""


def generic_mask(density: np.ndarray, fmt_share: np.ndarray, first_share: np.ndarray) -> np.ndarray:
    """[d_sae] bool, vectorised `generic_reason(...) != ''`."""
    return (density > DENSITY) | (fmt_share >= SHARE) | (first_share >= SHARE)
