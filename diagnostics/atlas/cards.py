"""Feature cards from an atlas: description, strongest held-out contexts (peak marked), score.

The contexts are the latent's strongest on the atlas's scoring split (text no label was written
from); an atlas built before those were kept gives its explain-split contexts instead, and the
card says so (`contexts_held_out`). All of it is text the SAE never trained on when the atlas was
built with `--split heldout`."""

from __future__ import annotations

import math

from diagnostics.atlas.surface import show_token
from diagnostics.feature_card import CardContext, FeatureCard

CARD_CONTEXTS = 3
"""Contexts on a card (the strongest, distinct by their text around the peak)."""
CARD_BEFORE, CARD_AFTER = 12, 4
"""Tokens shown before and after the peak token of a card's context."""


def feature_card(atlas, i: int, n: int = CARD_CONTEXTS) -> FeatureCard | None:
    """The card of latent i from a FeatureAtlas; None for a dead latent or one with neither a
    description nor a context (nothing a person could judge it by)."""
    if not atlas.live[i]:
        return None
    held = atlas.contexts(i, held_out=True)
    contexts: list[CardContext] = []
    seen: set[str] = set()
    for ctx in held or atlas.contexts(i):
        p, token = ctx.peak_index, ctx.tokens[ctx.peak_index]
        lead = " " if token[:1] == " " and token.strip() else ""  # outside the mark: " [[by]]"
        card = CardContext(
            before=_text(ctx.tokens[max(0, p - CARD_BEFORE) : p]) + lead,
            peak=show_token(token),
            after=_text(ctx.tokens[p + 1 : p + 1 + CARD_AFTER]),
            activation=round(ctx.activation, 3),
        )
        if card.marked() in seen:  # the same text twice (a repeated sentence) shows nothing new
            continue
        seen.add(card.marked())
        contexts.append(card)
        if len(contexts) == n:
            break
    score = float(atlas.description_auroc[i])
    out = FeatureCard(
        feature=int(i),
        description=atlas.description(i),
        label=atlas.label(i),
        label_score=None if math.isnan(score) else round(score, 3),
        generic=atlas.is_generic(i),
        generic_reason=atlas.generic_reason(i),
        contexts=contexts,
        contexts_held_out=bool(held),
    )
    return out if out.has_content else None


def _text(tokens: list[str]) -> str:
    return "".join(tokens).replace("\n", "⏎").replace("\t", "⇥")
