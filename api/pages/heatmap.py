"""Token heatmaps: a path's tokens (or an atlas context's) as cells coloured by activation.

Colours are discrete levels (CSS classes `h0`..`h8`), so the pages need no inline styles and the
CSP can forbid them. Level 0 means "nothing flagged fires here".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from diagnostics.atlas.records import ContextExample
from diagnostics.report import DriftReport, PathToken, TokenPath

HEAT_LEVELS = 9  # h0 .. h8


@dataclass(frozen=True)
class TokenCell:
    """One token as the page shows it."""

    text: str  # visible text: newlines and tabs as symbols, an empty token as '∅'
    level: int  # colour level, 0 .. HEAT_LEVELS - 1
    title: str  # tooltip (hover and keyboard focus): the token's strongest latents, labelled
    marked: bool = False  # the divergence token, or the peak of a context
    prompt: bool = False  # a prompt token (the model path starts with the prompt)
    wrong_step: bool = False  # part of the first wrong step of the model's output


def display_text(token: str) -> str:
    """Whitespace a reader can see: newline '↵', tab '→', a token of spaces '␣', nothing '∅'."""
    if token == "":
        return "∅"
    if token.strip(" ") == "":
        return "␣" * len(token)
    return token.replace("\n", "↵").replace("\t", "→")


def heat_level(value: float, scale: float) -> int:
    """Bucket `value` in (0, scale] into 1 .. HEAT_LEVELS - 1; 0 for nothing or no scale."""
    if value <= 0 or scale <= 0:
        return 0
    return max(1, min(HEAT_LEVELS - 1, math.ceil(value / scale * (HEAT_LEVELS - 1))))


def flagged_activation(token: PathToken, feature: int | None) -> float:
    """The strongest flagged latent at `token` (only `feature` when one is given)."""
    acts = [f.activation for f in token.flagged if feature is None or f.feature == feature]
    return max(acts, default=0.0)


def report_scale(report: DriftReport, feature: int | None) -> float:
    """The largest flagged activation on either path: the top of the colour scale."""
    paths = [report.model_path] + ([report.expected_path] if report.expected_path else [])
    return max(
        (flagged_activation(t, feature) for p in paths for t in p.tokens),
        default=0.0,
    )


def prompt_length(report: DriftReport) -> int | None:
    """Tokens of the prompt at the start of the model path (known from the expected path)."""
    if report.expected_path and report.expected_path.tokens:
        return report.expected_path.tokens[0].index
    if report.divergence is not None:
        return report.divergence.position - report.divergence.path_index
    return None


def output_char_starts(path: TokenPath, prompt_len: int) -> dict[int, tuple[int, int]]:
    """[start, end) characters of each output token (sequence index -> span) in the path's
    text, from the token strings (the path starts with the prompt)."""
    spans, at = {}, 0
    for tok in path.tokens:
        if tok.index < prompt_len:
            continue
        spans[tok.index] = (at, at + len(tok.token))
        at += len(tok.token)
    return spans


def path_cells(
    path: TokenPath,
    *,
    scale: float,
    feature: int | None = None,
    divergence_at: int | None = None,
    prompt_len: int | None = None,
    wrong_span: tuple[int, int] | None = None,
    tokens: list[PathToken] | None = None,
    label_of: Callable[[int], str] | None = None,
) -> list[TokenCell]:
    """The cells of a report path (or of `tokens`, a slice of it); the token at sequence index
    `divergence_at` is marked, the output tokens inside `wrong_span` (characters of the output)
    are the wrong step; `label_of` names the latents in the tooltips."""
    chars = output_char_starts(path, prompt_len) if wrong_span and prompt_len is not None else {}
    cells = []
    for tok in path.tokens if tokens is None else tokens:
        span = chars.get(tok.index)
        wrong = bool(span and wrong_span and span[0] < wrong_span[1] and span[1] > wrong_span[0])
        value = flagged_activation(tok, feature)
        cells.append(
            TokenCell(
                text=display_text(tok.token),
                level=heat_level(value, scale),
                title=token_tip(tok, label_of),
                marked=tok.index == divergence_at,
                prompt=prompt_len is not None and tok.index < prompt_len,
                wrong_step=wrong and tok.token.strip() != "",
            )
        )
    return cells


def token_tip(tok: PathToken, label_of: Callable[[int], str] | None = None) -> str:
    """A token's tooltip: its position, its strongest latents with labels, the flagged ones."""
    lines = [f"position {tok.index} · token {display_text(tok.token)!r}"]
    for f in tok.top_features:
        label = (label_of(f.feature) if label_of else "") or "(no label)"
        lines.append(f"#{f.feature} {f.activation:.3g} · {label}")
    if not tok.top_features:
        lines.append("no latent fires here")
    notes = ", ".join(f"#{f.feature} {f.activation:.3g}" for f in tok.flagged) or "none"
    lines.append(f"flagged: {notes}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Branches:
    """Where the two paths part: the shared context, then each path's branch."""

    shared: list[TokenCell]
    model: list[TokenCell]
    corrected: list[TokenCell]


def branch_cells(
    report: DriftReport,
    *,
    scale: float,
    feature: int | None,
    context: int = 12,
    ahead: int = 24,
    label_of: Callable[[int], str] | None = None,
) -> Branches | None:
    """The last `context` shared tokens before the divergence, and up to `ahead` tokens of each
    branch after it (the corrected branch is the corrected step)."""
    d, corrected = report.divergence, report.expected_path
    if d is None or corrected is None:
        return None
    at = d.position
    shared = [t for t in report.model_path.tokens if at - context <= t.index < at]
    model = [t for t in report.model_path.tokens if at <= t.index < at + ahead]
    fixed = [t for t in corrected.tokens if at <= t.index < at + ahead]
    cells = {"scale": scale, "feature": feature, "divergence_at": at, "label_of": label_of}
    return Branches(
        shared=path_cells(report.model_path, tokens=shared, **cells),
        model=path_cells(report.model_path, tokens=model, **cells),
        corrected=path_cells(corrected, tokens=fixed, **cells),
    )


def context_cells(ctx: ContextExample, scale: float) -> list[TokenCell]:
    """The cells of an atlas context window, its peak token marked."""
    acts: Iterable[float] = ctx.token_activations or [0.0] * len(ctx.tokens)
    return [
        TokenCell(
            text=display_text(tok),
            level=heat_level(act, scale),
            title=f"{tok!r}: {act:.3g}",
            marked=i == ctx.peak_index,
        )
        for i, (tok, act) in enumerate(zip(ctx.tokens, acts, strict=False))
    ]
