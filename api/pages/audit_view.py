"""What the audit page draws: the accuracy bar, the fix-rate bars as inline SVG geometry, and the
per-item rows with readable prompts (first errors, spans and concepts come from the summary)."""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.prompts import last_question

CHART_WIDTH = 400.0


@dataclass(frozen=True)
class Bar:
    name: str
    value: float
    text: str  # the value as shown
    width: float  # in viewBox units of CHART_WIDTH
    href: str | None = None
    kind: str = ""  # a CSS class


def bar_chart(rows: list[tuple[str, float, str, str | None, str]], scale: float | None = None):
    """Bars for (name, value, text, href, kind) rows, scaled to the largest value (or `scale`)."""
    top = scale if scale is not None else max((v for _, v, _, _, _ in rows), default=0.0)
    return [
        Bar(name, value, text, (value / top * CHART_WIDTH) if top > 0 else 0.0, href, kind)
        for name, value, text, href, kind in rows
    ]


@dataclass(frozen=True)
class Segment:
    kind: str  # correct | wrong | failed | pending
    n: int
    x: float
    width: float


def accuracy_segments(summary: dict, progress) -> list[Segment]:
    """One bar over every item: correct, wrong, failed jobs, not yet run."""
    n_correct = summary["n_reports"] - summary["n_wrong"]
    parts = [
        ("correct", n_correct),
        ("wrong", summary["n_wrong"]),
        ("failed", progress.failed),
        ("pending", progress.queued + progress.running),
    ]
    total = max(sum(n for _, n in parts), 1)
    out, x = [], 0.0
    for kind, n in parts:
        w = n / total * CHART_WIDTH
        out.append(Segment(kind, n, x, w))
        x += w
    return out


def fix_rate_bars(summary: dict) -> list[Bar]:
    """Failures the flagged set's ablation fixed, against the selection-matched null's draws."""
    rows = []
    for name, key, kind in (
        ("flagged, ablated", "ablation_fix_rate", "flagged"),
        ("selection-matched null", "null_fix_rate", "null"),
    ):
        value = summary.get(key)
        if value is not None:
            rows.append((name, float(value), f"{100 * value:.1f}%", None, kind))
    return bar_chart(rows, scale=1.0)


def item_prompt(prompt: str | None) -> str:
    """The question a person recognises (an eval prompt's last question, not its examples)."""
    return last_question(prompt)[:300] if prompt else ""
