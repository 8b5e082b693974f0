"""A feature card: how a latent is shown wherever it is named (verdict, report, audit, CLI).

A person judges a feature from its examples, as on Neuronpedia: the card holds the latent's short
description, its strongest contexts with the peak token marked (from the atlas's scoring split,
which no label was written from, when the atlas kept them), and the description's label score
(detection AUROC on those scoring contexts). A card with neither a description nor a
context is never built (`has_content`); a latent without an atlas has no card.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

PEAK_OPEN, PEAK_CLOSE = "[[", "]]"
"""How plain text marks the peak token of a context."""


class CardContext(BaseModel):
    """One max-activating context: the text before the peak token, the token, the text after."""

    before: str
    peak: str  # the token the latent peaks on, as a person reads it (whitespace made visible)
    after: str
    activation: float  # the latent's activation on the peak token

    def marked(self) -> str:
        """The context on one line with the peak token in [[ ]]."""
        return f"{self.before}{PEAK_OPEN}{self.peak}{PEAK_CLOSE}{self.after}"


class FeatureCard(BaseModel):
    """What is shown of a named latent (see the module doc)."""

    feature: int
    description: str = ""  # the short input-side description ('' when the latent has no rule)
    label: str = ""  # the description plus the output tokens that passed the causal test
    label_score: float | None = None  # detection AUROC of the description; None: unscored
    generic: bool = False  # dense, or firing mostly on formatting or special positions
    generic_reason: str = ""
    contexts: list[CardContext] = Field(default_factory=list)  # strongest first, at most 3
    contexts_held_out: bool = False  # from text no label was written from (else the label's own)

    @property
    def has_content(self) -> bool:
        return bool(self.description or self.contexts)

    @property
    def title(self) -> str:
        """'#id description [AUROC 0.93]', or '#id (no description; see its contexts)'."""
        score = f" [AUROC {self.label_score:.2f}]" if self.label_score is not None else ""
        text = self.label or self.description or "(no description; see its contexts)"
        return f"#{self.feature} {text}{score}"

    def lines(self, indent: str = "  ") -> list[str]:
        """The card as plain text: its title, then one line per context (peak in [[ ]])."""
        out = [self.title + (f"  [generic: {self.generic_reason}]" if self.generic else "")]
        out += [f"{indent}{c.activation:7.2f}  {c.marked()}" for c in self.contexts]
        return out
