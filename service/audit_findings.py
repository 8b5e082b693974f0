"""What an audit found, in the order a person reads it: how often each kind of first error occurs
(one example step each), which parts of the problems carried the failures (responsible spans by
kind, one example each), and the per-failure evidence the concept test needs (the flagged set's
flip, the null draws' fixes and flips), all read from the stored report bodies."""

from __future__ import annotations

from typing import Any

import pandas as pd

from diagnostics.concept_evidence import NullCounts

NOT_LOCATED = "not located"
"""First-error kind of a wrong answer whose first wrong step was not found."""
SPAN_KINDS = {
    "distracting": "a distracting sentence (deleting it fixes the answer)",
    "turning": "a sentence the wrong step hinges on (deleting it makes the model take the "
    "corrected turn; the answer stays wrong)",
    "quantity": "a quantity the wrong step hinges on (changing it alone makes the model take the "
    "corrected turn)",
    "none": "no single sentence or quantity (no deletion or change takes the corrected turn)",
    "not_measured": "not measured (the context test did not run)",
}
"""Kinds of responsible span, keyed as the summary keys them, with what each means."""
EVIDENCE_COLUMNS = [
    "span_kind", "span_text", "flipped", "null_fixed", "null_fix_draws", "null_flipped",
    "null_flip_draws",
]  # fmt: skip
"""Per-report columns derived from the body (`evidence_columns`)."""


def evidence_columns(context: Any, draws: Any, metric_before: Any, metric_after: Any) -> tuple:
    """A report's EVIDENCE_COLUMNS from its stored context attribution, null draws and gaps."""
    kind, text = span_of(context)
    flipped = None if metric_after is None or pd.isna(metric_after) else bool(metric_after > 0)
    null = null_counts(draws, metric_before)
    if null is None:
        return kind, text, flipped, None, None, None, None
    return kind, text, flipped, null.fixed, null.fix_draws, null.flipped, null.flip_draws


def span_of(context: Any) -> tuple[str, str]:
    """(kind, text) of a report's responsible span (see SPAN_KINDS)."""
    if not isinstance(context, dict):
        return "not_measured", ""
    effects = context.get("effects") or []
    span = context.get("responsible_span")
    if span is not None:
        chosen = next((e for e in effects if list(e.get("span") or []) == list(span)), None)
        fixed = bool(chosen and chosen.get("fixed"))
        return ("distracting" if fixed else "turning"), (chosen or {}).get("text", "")
    numbers = [e for e in effects if e.get("kind") == "number" and (e.get("gap") or 0) > 0]
    if numbers:
        best = max(numbers, key=lambda e: e.get("gap_change") or 0)
        return "quantity", f"{best.get('text', '')} → {best.get('replacement', '')}"
    return "none", ""


def null_counts(draws: Any, metric_before: Any) -> NullCounts | None:
    """The null draws' fixes (of those with a continuation) and flips (gap crosses zero)."""
    if not isinstance(draws, list) or not draws:
        return None
    before = None if metric_before is None or pd.isna(metric_before) else float(metric_before)
    continued = [d for d in draws if d.get("fixed") is not None]
    flips = (
        [before + float(d.get("metric_change", 0.0)) > 0 for d in draws]
        if before is not None
        else []
    )
    return NullCounts(
        fixed=sum(bool(d["fixed"]) for d in continued),
        fix_draws=len(continued),
        flipped=sum(flips),
        flip_draws=len(flips),
    )


def first_errors(wrong: pd.DataFrame) -> list[dict]:
    """How often each first-error kind occurs among the wrong answers, most frequent first, each
    with one example step (one with a correction when there is one)."""
    if not len(wrong):
        return []
    kinds = _column(wrong, "first_error_kind").fillna(NOT_LOCATED).replace("", NOT_LOCATED)
    out = []
    for kind, n in kinds.value_counts().items():
        rows = wrong[kinds == kind]
        should = _column(rows, "first_error_should_be").fillna("")
        pick = rows[should != ""] if (should != "").any() else rows
        row = pick.iloc[0]
        out.append(
            {
                "kind": str(kind),
                "count": int(n),
                "share": round(int(n) / len(wrong), 4),
                "example": {
                    "report_id": str(row["report_id"]),
                    "step": _text(row.get("first_error_step")),
                    "should_be": _text(row.get("first_error_should_be")),
                },
            }
        )
    return out


def responsible_spans(wrong: pd.DataFrame) -> list[dict]:
    """Responsible spans of the wrong answers by kind (SPAN_KINDS), most frequent first, with
    one example span each."""
    if not len(wrong) or "span_kind" not in wrong:
        return []
    out = []
    kinds = wrong["span_kind"].fillna("not_measured")
    for kind, n in kinds.value_counts().items():
        rows = wrong[kinds == kind]
        texts = rows["span_text"].fillna("")
        row = (rows[texts != ""] if (texts != "").any() else rows).iloc[0]
        out.append(
            {
                "kind": str(kind),
                "meaning": SPAN_KINDS.get(str(kind), str(kind)),
                "count": int(n),
                "share": round(int(n) / len(wrong), 4),
                "example": {"report_id": str(row["report_id"]), "text": _text(row["span_text"])},
            }
        )
    return out


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
