"""Each token's embedding-node influence on the gap, placed on the characters of the prompt or
of the model's output (chat-template tokens are left out)."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from diagnostics.paths import token_char_spans
from diagnostics.trace.records import TokenInfluence


def prompt_token_spans(
    tok: PreTrainedTokenizerBase, prompt_ids: torch.Tensor, prompt: str
) -> list[tuple[int, int] | None]:
    """[start, end) characters of `prompt` covered by each token of prompt_ids [P]; None for a
    token outside the prompt's text (the chat template's own tokens, BOS).

    The ids are matched against a re-tokenisation with character offsets of the prompt as
    rendered by the chat template, or of the raw prompt (after a BOS-like token); when neither
    reproduces them, the spans come from incremental decoding (exact for tokenizers whose
    decoding gives the text back)."""
    ids = [int(i) for i in prompt_ids]
    for text, lead in _renderings(tok, prompt):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        if enc["input_ids"] != ids[lead:]:
            continue
        offset = text.rfind(prompt)
        return [None] * lead + [
            _clip(start, end, offset, len(prompt)) for start, end in enc["offset_mapping"]
        ]
    decoded = tok.decode(prompt_ids, skip_special_tokens=True)
    offset = decoded.rfind(prompt) if prompt else -1
    spans = token_char_spans(tok, prompt_ids)
    if offset < 0:
        return [None] * len(spans)
    return [_clip(start, end, offset, len(prompt)) for start, end in spans]


def _renderings(tok, prompt: str) -> list[tuple[str, int]]:
    """(text, tokens before it) the prompt ids may come from: chat-rendered, raw after BOS."""
    out = []
    if tok.chat_template:
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        out.append((rendered, 0))
    out.append((prompt, 1))
    return out


def _clip(start: int, end: int, offset: int, length: int) -> tuple[int, int] | None:
    s, e = max(start, offset) - offset, min(end, offset + length) - offset
    return (s, e) if e > s and offset >= 0 else None


def token_influences(
    influence: torch.Tensor,
    spans: list[tuple[int, int] | None],
    text: str,
    first: int,
) -> list[TokenInfluence]:
    """TokenInfluence of tokens first..first+len(spans)-1 of the traced sequence, whose spans
    (into `text`) are given; `influence` [seq] holds the embedding nodes' influence."""
    out = []
    for k, span in enumerate(spans):
        if span is None:
            continue
        start, end = span
        out.append(
            TokenInfluence(
                start=start,
                end=end,
                token=text[start:end],
                influence=float(influence[first + k]),
            )
        )
    return out


def share_inside(influences: list[TokenInfluence], start: int, end: int) -> float:
    """The share of the total influence held by tokens overlapping characters [start, end)."""
    total = sum(t.influence for t in influences)
    inside = sum(t.influence for t in influences if t.start < end and t.end > start)
    return inside / total if total > 0 else 0.0
