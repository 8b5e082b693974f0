"""What the report page draws beyond the token heatmaps: the output text with its first wrong step
and its correction marked, the next-token distribution at the divergence, the per-position
attribution strip and the ablation-against-null chart (inline SVG geometry, computed here so the
templates only place shapes)."""

from __future__ import annotations

from dataclasses import dataclass

from api.pages.heatmap import display_text, prompt_length
from diagnostics.report import DriftReport

PREFIX_CHARS = 160  # of the model's text shown before a continuation


@dataclass(frozen=True)
class TextPiece:
    """A run of text and how it is marked: '' (plain), 'wrong' (the first wrong step), 'fix'
    (the corrected path after the divergence)."""

    text: str
    mark: str = ""


def marked(text: str, span: tuple[int, int] | None, mark: str) -> list[TextPiece]:
    """`text` in up to three pieces, the characters [start, end) of `span` marked."""
    if span is None:
        return [TextPiece(text)]
    start, end = max(0, min(span[0], len(text))), max(0, min(span[1], len(text)))
    pieces = [TextPiece(text[:start]), TextPiece(text[start:end], mark), TextPiece(text[end:])]
    return [p for p in pieces if p.text]


@dataclass(frozen=True)
class AlignedTexts:
    """The model's output and the corrected path, both from the first output character, so the
    shared text lines up and the two part at the divergence."""

    model: list[TextPiece]
    corrected: list[TextPiece]


def aligned_texts(report: DriftReport) -> AlignedTexts | None:
    d, corrected = report.divergence, report.expected_path
    if d is None or corrected is None:
        return None
    wrong = report.first_error.output_span if report.first_error else None
    offset = d.output_offset if d.output_offset is not None else len(corrected.text)
    return AlignedTexts(
        model=marked(report.model_path.text, wrong, "wrong"),
        corrected=marked(corrected.text, (offset, len(corrected.text)), "fix"),
    )


@dataclass(frozen=True)
class NextTokenRow:
    token: str  # as displayed
    prob: float
    role: str  # 'model' (what it wrote), 'expected' (the corrected token), '' (neither)


def next_token_rows(report: DriftReport) -> list[NextTokenRow]:
    """The model's top next tokens at the divergence; the corrected token is appended when it is
    outside them (its probability is in the report either way)."""
    d = report.divergence
    if d is None or not d.top_next:
        return []

    def role(token_id: int) -> str:
        return {d.model_token_id: "model", d.expected_token_id: "expected"}.get(token_id, "")

    rows = [NextTokenRow(display_text(t.token), t.prob, role(t.token_id)) for t in d.top_next]
    if all(t.token_id != d.expected_token_id for t in d.top_next):
        rows.append(NextTokenRow(display_text(d.expected_token), d.prob_expected, "expected"))
    return rows


@dataclass(frozen=True)
class StripCell:
    x: float  # left edge, in viewBox units (0..STRIP_WIDTH)
    width: float
    height: float  # bar height from the middle line, up (toward the corrected token) or down
    y: float
    sign: str  # 'pos' | 'neg'
    title: str


STRIP_WIDTH, STRIP_HEIGHT = 1000.0, 48.0


@dataclass(frozen=True)
class AttributionStrip:
    cells: list[StripCell]
    prompt_x: float | None  # where the output starts
    largest: float  # |attribution| of the tallest bar
    n: int


def attribution_strip(report: DriftReport) -> AttributionStrip | None:
    """One bar per position before the divergence: the gap's linear attribution to the latents
    and the error term there (up: toward the corrected token, down: toward the model's)."""
    a = report.attribution
    if a is None or not a.per_position:
        return None
    values = a.per_position
    tokens = {t.index: t.token for t in report.model_path.tokens}
    largest = max((abs(v) for v in values), default=0.0)
    w = STRIP_WIDTH / len(values)
    half = STRIP_HEIGHT / 2
    cells = []
    for i, v in enumerate(values):
        h = abs(v) / largest * (half - 1) if largest > 0 else 0.0
        cells.append(
            StripCell(
                x=i * w,
                width=max(w * 0.9, 0.5),
                height=h,
                y=half - h if v >= 0 else half,
                sign="pos" if v >= 0 else "neg",
                title=f"position {i} {display_text(tokens.get(i, ''))!r}: {v:+.3g}",
            )
        )
    p = prompt_length(report)
    return AttributionStrip(
        cells=cells, prompt_x=p * w if p is not None else None, largest=largest, n=len(values)
    )


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class EvidenceChart:
    """Gap changes on one axis: the null's draws (dots), the plain control's (squares), the
    flagged set's (a bar), zero and the threshold percentile's value."""

    width: float
    height: float
    zero_x: float
    flagged_x: float
    flagged_value: float
    null: list[ChartPoint]
    control: list[ChartPoint]
    ticks: list[tuple[float, str]]
    percentile: float | None


def evidence_chart(report: DriftReport, width: float = 600, height: float = 96) -> EvidenceChart:
    """The chart of the report's ablation evidence (call only when it has a verification)."""
    v = report.verification
    assert v is not None
    null = [d.metric_change for d in report.null.draws] if report.null else []
    control = [d.metric_change for d in report.control.draws] if report.control else []
    values = [v.metric_change, 0.0, *null, *control]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    low, high = low - 0.06 * span, high + 0.06 * span
    pad = 12

    def x(value: float) -> float:
        return pad + (value - low) / (high - low) * (width - 2 * pad)

    def jitter(k: int) -> float:
        return ((k * 7) % 5 - 2) * 4.0

    ticks = [(x(t), f"{t:+.2g}") for t in _ticks(low, high)]
    return EvidenceChart(
        width=width,
        height=height,
        zero_x=x(0.0),
        flagged_x=x(v.metric_change),
        flagged_value=v.metric_change,
        null=[
            ChartPoint(x(c), 34 + jitter(k), f"null draw {k + 1}: {c:+.3g}")
            for k, c in enumerate(null)
        ],
        control=[
            ChartPoint(x(c), 58 + jitter(k), f"random control {k + 1}: {c:+.3g}")
            for k, c in enumerate(control)
        ],
        ticks=ticks,
        percentile=report.null.percentile if report.null else None,
    )


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    step = (high - low) / (n - 1)
    return [low + k * step for k in range(n)]


def continuation_prefix(report: DriftReport) -> str:
    """The end of the model's text before the divergence: where continuations start."""
    d = report.divergence
    if d is None:
        return ""
    text = report.model_path.text[: d.output_offset if d.output_offset is not None else None]
    return ("…" + text[-PREFIX_CHARS:]) if len(text) > PREFIX_CHARS else text
