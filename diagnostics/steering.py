"""Steer generation by clamping SAE features, error term kept, next to the unsteered output.

A clamp is a multiple of the feature's max activation in the atlas (Anthropic steers at -10x..10x,
Neuronpedia defaults to -1x); negative multiples push the residual against the feature's decoder
direction. The clamp applies at every position except the first of the prompt (the BOS / attention
sink, which SAEs are not trained on) and at every generated token. The SAE is spliced with
`splice_sae`, so the residual is x + decode(f_clamped) - decode(f): the model is unchanged apart
from the edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from diagnostics.atlas.store import FeatureAtlas
from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.splice import FeatureEdit, splice_sae


@dataclass
class ConceptShift:
    """Next-token probability of a set of concept tokens with and without the clamp."""

    tokens: list[str]
    token_ids: list[int]
    p_baseline: float  # mean over positions of p(next token in `token_ids`), unsteered
    p_steered: float
    positions: int = 1  # next-token predictions averaged

    @property
    def ratio(self) -> float:
        return self.p_steered / max(self.p_baseline, 1e-12)


@dataclass
class SteeringResult:
    """A steered and an unsteered greedy continuation of the same prompt."""

    prompt: str
    clamps: dict[int, float]  # feature -> multiple of its max activation
    values: dict[int, float]  # feature -> the activation it was clamped to
    steered_text: str
    baseline_text: str
    steered_ids: list[int] = field(default_factory=list)
    baseline_ids: list[int] = field(default_factory=list)
    concept: ConceptShift | None = None
    labels: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON-ready values, the concept shift with its ratio (CLI --json, steer jobs)."""
        out = asdict(self)
        if self.concept is not None:
            out["concept"]["ratio"] = self.concept.ratio
        return out


def clamp_values(
    clamps: dict[int, float], atlas: FeatureAtlas | None, d_sae: int
) -> dict[int, float]:
    """Activation values of the clamps: multiple x atlas max activation (x 1.0 without an atlas)."""
    values = {}
    for i, mult in clamps.items():
        if not 0 <= int(i) < d_sae:
            raise ValueError(f"feature {i} out of range: the SAE has {d_sae} latents")
        scale = float(np.asarray(atlas.max_activation)[i]) if atlas is not None else 1.0
        values[int(i)] = float(mult) * scale
    return values


def clamp_edit(values: dict[int, float]) -> FeatureEdit:
    """A feature edit setting each feature to its value (skipping position 0 of a prompt pass)."""
    ids = torch.tensor(list(values), dtype=torch.long)
    vals = torch.tensor(list(values.values()))

    def edit(f: torch.Tensor) -> torch.Tensor:  # [batch, seq, d_sae]
        f = f.clone()
        start = 1 if f.shape[1] > 1 else 0
        f[:, start:, ids] = vals.to(f.dtype)
        return f

    return edit


def concept_token_ids(tokenizer, concept: Sequence[str | int]) -> tuple[list[str], list[int]]:
    """Token ids of concept words (first token of the word, with and without a leading space /
    capital), or ids given directly."""
    ids: list[int] = []
    for item in concept:
        if isinstance(item, int):
            variants_ids = [[item]]
        else:
            w = item.strip()
            variants = {
                w,
                " " + w,
                w.capitalize(),
                " " + w.capitalize(),
                w.lower(),
                " " + w.lower(),
            }
            variants_ids = [tokenizer(v, add_special_tokens=False)["input_ids"] for v in variants]
        for v in variants_ids:
            if v and v[0] not in ids and v[0] not in tokenizer.all_special_ids:
                ids.append(int(v[0]))
    return [tokenizer.decode([t]) for t in ids], ids


@torch.no_grad()
def next_token_probs(
    lm: LanguageModel, ids: torch.Tensor, edit: FeatureEdit | None, sae: SparseAutoencoder
) -> torch.Tensor:
    """Next-token distributions [seq, vocab] along ids [seq], with the edit spliced in if given."""
    batch = ids.to(lm.device).unsqueeze(0)  # [1, seq]
    if edit is None:
        logits = lm.model(input_ids=batch).logits
    else:
        with splice_sae(lm, sae, edit=edit):
            logits = lm.model(input_ids=batch).logits  # [1, seq, vocab]
    return logits[0].float().softmax(-1).cpu()


def concept_probability(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    prompt: str,
    clamps: dict[int, float],
    concept: Sequence[str | int],
    *,
    atlas: FeatureAtlas | None = None,
    chat: bool = True,
    continuation: torch.Tensor | None = None,
) -> ConceptShift:
    """The measured effect of a clamp: p(next token is a concept token) with vs without it.

    Averaged over the next-token predictions after the prompt and along `continuation` [n] (the
    unsteered output, teacher-forced, so both runs are read at the same positions); with no
    continuation, only the token right after the prompt.
    """
    prompt_ids = lm.prompt_ids(prompt, chat=chat)
    tokens, ids = concept_token_ids(lm.tokenizer, concept)
    if not ids:
        raise ValueError("no concept tokens")
    tail = continuation[:-1] if continuation is not None else torch.zeros(0, dtype=torch.long)
    seq = torch.cat([prompt_ids, tail.to(prompt_ids.dtype)])  # [P + n - 1]
    read = slice(len(prompt_ids) - 1, len(seq))  # predictions of the continuation's tokens
    edit = clamp_edit(clamp_values(clamps, atlas, sae.cfg.d_sae))
    base = next_token_probs(lm, seq, None, sae)[read][:, ids].sum(-1)  # [n]
    steered = next_token_probs(lm, seq, edit, sae)[read][:, ids].sum(-1)  # [n]
    return ConceptShift(
        tokens=tokens,
        token_ids=ids,
        p_baseline=float(base.mean()),
        p_steered=float(steered.mean()),
        positions=len(base),
    )


def steer(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    prompt: str,
    clamps: dict[int, float],
    atlas: FeatureAtlas | None = None,
    max_new_tokens: int = 40,
    chat: bool = True,
    *,
    concept: Sequence[str | int] | None = None,
) -> SteeringResult:
    """Greedy generation with features clamped (multiples of max activation) and without."""
    values = clamp_values(clamps, atlas, sae.cfg.d_sae)
    prompt_ids = lm.prompt_ids(prompt, chat=chat)
    baseline = lm.generate_ids(prompt_ids, max_new_tokens=max_new_tokens)
    with splice_sae(lm, sae, edit=clamp_edit(values)):
        steered = lm.generate_ids(prompt_ids, max_new_tokens=max_new_tokens)
    decode = lm.tokenizer.decode
    return SteeringResult(
        prompt=prompt,
        clamps={int(k): float(v) for k, v in clamps.items()},
        values=values,
        steered_text=decode(steered, skip_special_tokens=True),
        baseline_text=decode(baseline, skip_special_tokens=True),
        steered_ids=steered.tolist(),
        baseline_ids=baseline.tolist(),
        concept=concept_probability(
            lm, sae, prompt, clamps, concept, atlas=atlas, chat=chat, continuation=baseline
        )
        if concept
        else None,
        labels={i: atlas.label(i) for i in values} if atlas is not None else {},
    )
