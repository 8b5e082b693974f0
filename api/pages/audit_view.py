"""What the audit page draws: the accuracy bar, bar charts (failure kinds, recurring concepts or
labels, fix rates) as inline SVG geometry, and the per-item rows with readable prompts."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pandas as pd

from diagnostics.gold_solution import last_question

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


def recurring_concepts(summary: dict, items: pd.DataFrame, features: pd.DataFrame, audit_id: str):
    """Bars of what recurs across the failures: the summary's `concepts` when it has them, else
    the flagged latents' descriptions (labels) counted over distinct failures."""
    concepts = summary.get("concepts")
    if concepts:
        rows = []
        for c in concepts:
            name = str(c.get("label") or c.get("concept") or c.get("name") or "")
            n = c.get("n_failures", c.get("count", 0)) or 0
            rows.append((name, float(n), str(n), None, "concept"))
        return "concepts", bar_chart(rows)
    wrong = items[items["report_id"].notna() & (items["correct"] == False)]  # noqa: E712
    if not len(wrong) or not len(features):
        return "labels", []
    merged = features.merge(wrong[["report_id"]], on="report_id")
    merged = merged[merged["label"].astype(bool)]
    counts = merged.groupby("label")["report_id"].nunique().sort_values(ascending=False)
    counts = counts[counts >= 2].head(15)
    rows = [
        (
            str(label),
            float(n),
            f"{n} failures",
            f"/reports?audit_id={audit_id}&label={quote(label)}",
            "",
        )
        for label, n in counts.items()
    ]
    return "labels", bar_chart(rows)


def fix_rate_bars(summary: dict) -> list[Bar]:
    """Failures the flagged set's ablation fixed, against the selection-matched null's draws."""
    rows = []
    for name, key, kind in (
        ("flagged, ablated", "ablation_fix_rate", "flagged"),
        ("selection-matched null", "null_fix_rate", "null"),
        ("plain random control", "control_fix_rate", "control"),
    ):
        value = summary.get(key)
        if value is not None:
            rows.append((name, float(value), f"{100 * value:.1f}%", None, kind))
    return bar_chart(rows, scale=1.0)


def item_prompt(prompt: str | None) -> str:
    """The question a person recognises (an eval prompt's last question, not its examples)."""
    return last_question(prompt)[:300] if prompt else ""
