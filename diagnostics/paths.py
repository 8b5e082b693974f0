"""The model's path and the corrected path, and the token where they part.

The corrected path is the model's own tokens up to the first character that the first-error
correction changes, then the corrected text re-tokenised from the last kept token boundary. Both
paths share every token before the divergence, so the logit gap there is read on the model's own
prefix, and a continuation from there starts exactly where the model went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from diagnostics.corrections import Correction
from diagnostics.report import NEAR_TIE, Divergence, NextToken

TOP_NEXT = 5  # candidates kept of the model's next-token distribution at the divergence


@dataclass(frozen=True)
class CorrectedPath:
    """The corrected continuation and where it leaves the model's own."""

    ids: torch.Tensor  # [n] int64 token ids of the corrected continuation
    divergence: int  # index of its first token that differs from the model's continuation


def token_char_spans(tok: PreTrainedTokenizerBase, ids: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) characters of each token of ids [n] in `decode(ids, skip_special_tokens)`
    (special tokens are empty spans)."""
    spans, prev = [], 0
    for i in range(len(ids)):
        end = len(tok.decode(ids[: i + 1], skip_special_tokens=True))
        spans.append((prev, end))
        prev = end
    return spans


def corrected_path(
    tok: PreTrainedTokenizerBase, output_ids: torch.Tensor, output: str, correction: Correction
) -> CorrectedPath | None:
    """The model's continuation output_ids [n] (decoded: `output`) with `correction` applied,
    or None when the correction changes nothing the model would predict differently."""
    text = correction.apply(output)
    spans = token_char_spans(tok, output_ids)
    kept = 0
    while kept < len(spans) and spans[kept][1] <= correction.start:
        kept += 1
    kept_end = spans[kept - 1][1] if kept else 0
    tail = tok(text[kept_end:], add_special_tokens=False)["input_ids"]
    ids = torch.cat([output_ids[:kept], torch.tensor(tail, dtype=torch.long)])
    d = kept
    while d < len(ids) and d < len(output_ids) and int(ids[d]) == int(output_ids[d]):
        d += 1
    if d >= len(ids):
        return None
    return CorrectedPath(ids=ids, divergence=d)


def divergence_at(
    tok: PreTrainedTokenizerBase,
    prompt_len: int,
    output_ids: torch.Tensor,
    corrected: CorrectedPath,
    logits: torch.Tensor,
    output_spans: list[tuple[int, int]],
) -> Divergence:
    """The divergence record at corrected.divergence, from the model path's logits
    [prompt_len + n, vocab] (row t predicts token t + 1)."""
    d = corrected.divergence
    row = logits[prompt_len + d - 1].float()  # [vocab]
    probs = row.softmax(-1)
    exp_id = int(corrected.ids[d])
    model_id = int(output_ids[d]) if d < len(output_ids) else int(row.argmax())
    offset = (
        output_spans[d][0]
        if d < len(output_spans)
        else (output_spans[-1][1] if output_spans else 0)
    )
    p_model, p_exp = float(probs[model_id]), float(probs[exp_id])
    top = probs.topk(min(TOP_NEXT, len(probs)))
    return Divergence(
        position=prompt_len + d,
        path_index=d,
        output_offset=offset,
        expected_token=tok.decode([exp_id]),
        expected_token_id=exp_id,
        model_token=tok.decode([model_id]),
        model_token_id=model_id,
        logit_expected=float(row[exp_id]),
        logit_model=float(row[model_id]),
        metric=float(row[exp_id] - row[model_id]),
        prob_expected=p_exp,
        prob_model=p_model,
        near_tie=p_model - p_exp < NEAR_TIE,
        context=tok.decode(output_ids[max(0, d - 12) : d], skip_special_tokens=True),
        top_next=[
            NextToken(token=tok.decode([int(i)]), token_id=int(i), prob=float(p))
            for p, i in zip(top.values, top.indices, strict=True)
        ],
    )
