"""How a report names its flagged latents: specific ones only, each by its card, and what the
flagged table's numbers mean where they could mislead.

A flagged latent is confirmed by its own ablation (zeroing it alone moves the gap toward the
corrected token); its attribution is a linear estimate (activation x gradient) that can disagree
in sign, for instance when the latent fires far above its usual level and saturates its gradient.
Its max activation is often the same on both paths: it peaks on a token before the paths part,
which both share, so what sets it apart is its level against its usual one.
"""

from __future__ import annotations

from collections.abc import Sequence

from diagnostics.report import FlaggedFeature

ONLY_GENERIC = "only generic latents were found: no specific concept explains this turn"
"""What a verdict says when every flagged latent is generic (dense, or firing on formatting or
special positions)."""
SAME_ACTIVATION = 1e-3
"""Relative difference below which the two paths' max activations count as the same."""


def specific(flagged: Sequence[FlaggedFeature]) -> list[FlaggedFeature]:
    """The flagged latents a verdict may name: not generic, in their order."""
    return [f for f in flagged if not f.generic]


def latent_phrase(f: FlaggedFeature) -> str:
    """'#id "its description"' (its card's description, else its label); a latent without a
    description is named for its card's contexts, shown with the card."""
    card = f.card
    text = (card.description if card is not None else "") or f.label
    if text:
        return f"#{f.feature} '{text}'"
    if card is not None and card.contexts:
        return f"#{f.feature} (no description: see its contexts)"
    return f"#{f.feature} (no atlas card)"


def activation_note(f: FlaggedFeature) -> str:
    """Why the two paths' activations look as they do, in words."""
    fail, exp = f.activation_failing, f.activation_expected
    usual = f.atlas_mean_activation
    level = f", {fail / usual:.1f}x its usual {usual:.2f}" if usual else ""
    if abs(fail - exp) <= SAME_ACTIVATION * max(abs(fail), abs(exp), 1e-9):
        return f"{fail:.2f} on both paths: it peaks before they part, on text both share{level}"
    return f"{fail:.2f} on the model's path, {exp:.2f} on the corrected one{level}"


def attribution_note(f: FlaggedFeature) -> str:
    """'' when the attribution agrees with the ablation (negative: toward the wrong token);
    otherwise why a flagged latent can have a positive one."""
    if f.attribution < 0:
        return ""
    return (
        "its linear attribution is positive, but ablating it moves the gap toward the corrected "
        "token: the ablation is the measurement, the attribution only an estimate"
    )
