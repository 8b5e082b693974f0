"""Which part of the prompt carries the failure: counterfactual deletion of each sentence.

For every sentence of the question (its final question sentence excepted) the prompt is edited:
the sentence deleted; and every number replaced by another value. Each edited prompt is run with
the model's own output up to the divergence appended, in one left-padded batch, and the logit
gap at the divergence is read again: how much that span pushed the model toward its wrong
token. Then every sentence deletion (up to REGENERATIONS, those moving the gap most toward the
corrected token first) is regenerated from scratch, in one batch with the stopping rule, and
judged: a sentence whose deletion fixes the answer is the responsible span. The gap at one
token is only a proxy (a distractor can act later in the solution than the first wrong step),
so no deletion is skipped for moving it too little. Gradient attribution at one middle layer can miss an
influence that flows through later attention; deletion measures it directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diagnostics.attribution import AttributionResult, LogitGap
from diagnostics.equations import format_number
from diagnostics.language_model import LanguageModel, StopRule
from diagnostics.paths import token_char_spans
from diagnostics.prompts import last_question
from diagnostics.report import ContextAttribution, FeatureAttribution, SpanEffect
from diagnostics.solution_steps import sentence_spans

REGENERATIONS = 6
"""Sentence deletions regenerated and judged, at most (those moving the gap most first): every
one for a word problem of up to six context sentences."""

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class PromptEdit:
    """A counterfactual prompt: one sentence deleted, or one number replaced."""

    kind: str  # sentence | number
    start: int
    end: int
    text: str  # the span's text in the prompt
    prompt: str  # the edited prompt
    replacement: str | None = None


def prompt_edits(prompt: str) -> list[PromptEdit]:
    """Deletions of the question's sentences (not its closing question) and replacements of the
    numbers in them, with spans in `prompt`'s characters. For a prompt with worked examples, only
    the last question is edited."""
    question = last_question(prompt)
    offset = prompt.rfind(question) if question else -1
    if offset < 0:
        offset, question = 0, prompt
    sentences = [(offset + a, offset + b) for a, b in sentence_spans(question)]
    if len(sentences) == 1 or prompt[sentences[-1][0] : sentences[-1][1]].rstrip().endswith("?"):
        sentences = sentences[:-1]  # deleting the question itself (or all of it) asks nothing
    edits = []
    for a, b in sentences:
        end = b
        while end < len(prompt) and prompt[end] == " ":
            end += 1
        edits.append(PromptEdit("sentence", a, b, prompt[a:b], prompt[:a] + prompt[end:]))
    for m in _NUMBER.finditer(prompt, offset):
        value = float(m.group(0).replace(",", ""))
        other = format_number(value + max(1.0, round(value * 0.5)))  # a different, plausible value
        edits.append(
            PromptEdit(
                "number",
                m.start(),
                m.end(),
                m.group(0),
                prompt[: m.start()] + other + prompt[m.end() :],
                replacement=other,
            )
        )
    return edits


def context_attribution(
    lm: LanguageModel,
    prompt: str,
    chat: bool,
    gap: LogitGap,
    output_prefix: torch.Tensor,
    attr: AttributionResult,
    *,
    judge_fn: Callable[[str], tuple[bool, str | None]],
    stop: StopRule,
    max_new_tokens: int,
    regenerations: int = REGENERATIONS,
) -> ContextAttribution:
    """Per-span effects on the gap at the divergence, and the responsible span if one is found.

    output_prefix [d]: the model's output tokens before the divergence; gap: the divergence's
    logit gap on the original prompt; judge_fn: (correct, extracted answer) of a regenerated
    output."""
    t0 = time.perf_counter()
    edits = prompt_edits(prompt)
    if not edits:
        return ContextAttribution(
            effects=[], responsible_span=None, responsible_reason="the prompt has one sentence",
            responsible_latents=[], seconds=time.perf_counter() - t0,
        )  # fmt: skip
    prompts = [lm.prompt_ids(e.prompt, chat=chat) for e in edits]
    logits = lm.last_logits([torch.cat([p, output_prefix]) for p in prompts])  # [n, vocab]
    before = float(attr.metric)
    gaps = (logits[:, gap.target] - logits[:, gap.other]).tolist()
    sentence_rows = [i for i, e in enumerate(edits) if e.kind == "sentence"]
    helps = sorted(sentence_rows, key=lambda i: gaps[i], reverse=True)[:regenerations]
    judged: dict[int, tuple[bool, str | None]] = {}
    if helps:
        rows = lm.generate_rows(
            [prompts[i] for i in helps], max_new_tokens=max_new_tokens, stop=stop
        ).ids
        for i, ids in zip(helps, rows, strict=True):
            judged[i] = judge_fn(lm.tokenizer.decode(ids, skip_special_tokens=True))
    effects = [
        SpanEffect(
            kind=e.kind,
            span=(e.start, e.end),
            text=e.text,
            replacement=e.replacement,
            gap=gaps[i],
            gap_change=gaps[i] - before,
            fixed=judged[i][0] if i in judged else None,
            answer=judged[i][1] if i in judged else None,
        )
        for i, e in enumerate(edits)
    ]
    span, reason = _responsible(effects, before)
    latents = _latents_in(lm, prompt, chat, attr, span) if span else []
    return ContextAttribution(
        effects=effects,
        responsible_span=span,
        responsible_reason=reason,
        responsible_latents=latents,
        seconds=time.perf_counter() - t0,
    )


def _responsible(effects: list[SpanEffect], before: float) -> tuple[tuple[int, int] | None, str]:
    """The sentence whose deletion fixes the answer (the largest gap gain among them); else the
    one whose deletion alone makes the model take the corrected turn; else none."""
    sentences = [e for e in effects if e.kind == "sentence"]
    fixing = [e for e in sentences if e.fixed]
    if fixing:
        best = max(fixing, key=lambda e: e.gap_change)
        return best.span, (
            f"deleting it fixes the answer (gap at the divergence {before:+.2f} -> {best.gap:+.2f})"
        )
    # only a gap that was negative can be turned (a given output the model itself would not
    # write already has the corrected token ahead)
    turning = [e for e in sentences if e.gap > 0] if before <= 0 else []
    if turning:
        best = max(turning, key=lambda e: e.gap_change)
        return best.span, (
            f"deleting it makes the model take the corrected turn at the divergence (gap "
            f"{before:+.2f} -> {best.gap:+.2f}), though the answer is not fixed"
        )
    return None, "no single sentence's deletion fixes the answer or the turn at the divergence"


def _latents_in(
    lm: LanguageModel,
    prompt: str,
    chat: bool,
    attr: AttributionResult,
    span: tuple[int, int],
    n: int = 5,
) -> list[FeatureAttribution]:
    """The latents pushing hardest toward the wrong token from the span's prompt tokens
    (attribution summed over those positions only)."""
    positions = prompt_token_positions(lm, prompt, chat, span)
    positions = [p for p in positions if p < attr.attribution.shape[0]]
    if not positions:
        return []
    per = attr.attribution[positions].sum(0)  # [d_sae]
    top = per.topk(min(n, len(per)), largest=False)
    return [
        FeatureAttribution(feature=int(i), attribution=float(v))
        for v, i in zip(top.values, top.indices, strict=True)
        if v < 0
    ]


def prompt_token_positions(
    lm: LanguageModel, prompt: str, chat: bool, span: tuple[int, int]
) -> list[int]:
    """The positions of the prompt's tokens (chat template included) that overlap the
    characters `span` of the user's prompt text."""
    ids = lm.prompt_ids(prompt, chat=chat)
    text = lm.tokenizer.decode(ids, skip_special_tokens=True)
    offset = text.find(prompt)
    if offset < 0:
        return []
    a, b = offset + span[0], offset + span[1]
    return [i for i, (s, e) in enumerate(token_char_spans(lm.tokenizer, ids)) if s < b and e > a]
