"""Audit aggregates with pandas: accuracy, failure classes, recurring flagged features with their
labels and fix rates (against the random control), and the per-item export (CSV / Parquet).

Fix rate of a feature = the share of the failures that flag it where zero-ablating the flagged set
(which includes it) made the model reach the expected answer; the control fix rate next to it is
the same for matched random latents in the same reports.
"""

from __future__ import annotations

import io
import math

import pandas as pd
import sqlalchemy as sa
from sqlmodel import Session

from service.models import Audit, Job, Report, ReportFeature

ITEM_COLUMNS = [
    "item_index", "job_id", "status", "error", "report_id", "correct", "failure_class",
    "format_ok", "ablation_fixed", "control_fix_rate", "n_flagged", "prompt", "expected",
    "extracted", "verdict",
]  # fmt: skip
BODY_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "first_error_kind": (("first_error", "kind"), "str"),
    "first_error_step": (("first_error", "step_text"), "str"),
    "first_error_should_be": (("first_error", "should_be"), "str"),
    "divergence_model_token": (("divergence", "model_token"), "str"),
    "divergence_expected_token": (("divergence", "expected_token"), "str"),
    "gap": (("divergence", "metric"), "float"),
    "ablation_gain": (("verification", "metric_change"), "float"),
    "null_percentile": (("null", "percentile"), "float"),
    "null_fix_rate": (("null", "fix_rate"), "float"),
    "evidence": (("evidence",), "str"),
}
"""Export columns read from the stored report body: (JSON path, type). `gap` is logit(corrected
token) - logit(model's token) at the divergence; `ablation_gain` is its change when the flagged
latents are zero-ablated together; `null_percentile` ranks that change among the null's draws."""


def audit_frames(session: Session, audit_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per audit item with its report columns, one row per flagged feature)."""
    j, r = Job.__table__.c, Report.__table__.c
    items = session.execute(
        sa.select(
            j.item_index,
            j.id.label("job_id"),
            j.status,
            j.error,
            r.id.label("report_id"),
            r.correct,
            r.failure_class,
            r.format_ok,
            r.ablation_fixed,
            r.control_fix_rate,
            r.n_flagged,
            r.prompt_preview.label("prompt"),
            r.expected,
            r.extracted,
            r.verdict,
            *[
                _body_value(r.body, path, kind).label(name)
                for name, (path, kind) in BODY_COLUMNS.items()
            ],
        )  # fmt: skip
        .select_from(Job.__table__.outerjoin(Report.__table__, r.job_id == j.id))
        .where(j.audit_id == audit_id)
        .order_by(j.item_index)
    ).all()
    f = ReportFeature.__table__.c
    feats = session.execute(
        sa.select(f.report_id, f.feature_id, f.rank, f.label, f.attribution, f.ablation_effect)
        .select_from(ReportFeature.__table__.join(Report.__table__, r.id == f.report_id))
        .where(r.audit_id == audit_id)
    ).all()
    items_df = pd.DataFrame(
        [tuple(row) for row in items], columns=ITEM_COLUMNS + list(BODY_COLUMNS)
    )
    audit = session.get(Audit, audit_id)
    if audit is not None and audit.options.get("kind") == "lm-eval":
        items_df.insert(0, "doc_id", items_df["item_index"])  # the harness's document id
    feats_df = pd.DataFrame(
        [tuple(row) for row in feats],
        columns=["report_id", "feature_id", "rank", "label", "attribution", "ablation_effect"],
    )
    return items_df, feats_df


def _body_value(body, path: tuple[str, ...], kind: str):
    """A scalar inside the report's JSON body, on SQLite and PostgreSQL alike."""
    node = body[path]
    return node.as_float() if kind == "float" else node.as_string()


def summarize(
    items: pd.DataFrame, features: pd.DataFrame, *, min_count: int = 2, top: int = 20
) -> dict:
    """The audit summary as plain JSON-ready values."""
    reports = items[items["report_id"].notna()]
    n = len(reports)
    correct = reports["correct"].astype(bool) if n else pd.Series(dtype=bool)
    wrong = reports[~correct] if n else reports
    out: dict = {
        "n_items": int(len(items)),
        "n_reports": int(n),
        "n_failed_jobs": int((items["status"] == "failed").sum()),
        "n_pending": int(items["status"].isin(["queued", "running"]).sum()),
        "accuracy": _ratio(int(correct.sum()), n),
        "strict_accuracy": _ratio(int((correct & reports["format_ok"].astype(bool)).sum()), n)
        if n
        else None,
        "format_ok_rate": _ratio(int(reports["format_ok"].astype(bool).sum()), n) if n else None,
        "n_wrong": int(len(wrong)),
        "failure_classes": {
            str(k): int(v) for k, v in wrong["failure_class"].value_counts().sort_index().items()
        },
        "ablation_fix_rate": _mean(wrong["ablation_fixed"]),
        "control_fix_rate": _mean(wrong["control_fix_rate"]),
        "null_fix_rate": _mean(wrong["null_fix_rate"]) if "null_fix_rate" in wrong else None,
        "recurring_features": [],
    }
    if len(wrong) and len(features):
        merged = features.merge(
            wrong[["report_id", "ablation_fixed", "control_fix_rate"]], on="report_id"
        )
        if len(merged):
            merged["ablation_fixed"] = merged["ablation_fixed"].astype("float")
            grouped = merged.groupby("feature_id").agg(
                n_failures=("report_id", "nunique"),
                label=("label", _most_common),
                mean_attribution=("attribution", "mean"),
                mean_ablation_effect=("ablation_effect", "mean"),
                fix_rate=("ablation_fixed", "mean"),
                n_verified=("ablation_fixed", "count"),
                control_fix_rate=("control_fix_rate", "mean"),
            )
            grouped = grouped[grouped["n_failures"] >= min_count]
            grouped["share_of_failures"] = grouped["n_failures"] / len(wrong)
            grouped = grouped.sort_values(
                ["n_failures", "mean_attribution"], ascending=[False, True]
            ).head(top)
            out["recurring_features"] = [
                {"feature": int(fid)} | {k: _plain(v) for k, v in row.items()}
                for fid, row in grouped.iterrows()
            ]
    return out


def export_frame(items: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """One row per item, flagged features joined as 'id:label' strings."""
    if len(features):
        ordered = features.sort_values(["report_id", "rank"])
        joined = ordered.groupby("report_id").agg(
            flagged_features=("feature_id", lambda s: ";".join(map(str, s))),
            flagged_labels=("label", lambda s: ";".join(s)),
        )
        out = items.merge(joined, left_on="report_id", right_index=True, how="left")
    else:
        out = items.assign(flagged_features=None, flagged_labels=None)
    out["flagged_features"] = out["flagged_features"].fillna("")
    out["flagged_labels"] = out["flagged_labels"].fillna("")
    return out.reset_index(drop=True)


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table = frame.astype(
        {
            "correct": "boolean",
            "format_ok": "boolean",
            "ablation_fixed": "boolean",
            "n_flagged": "Int64",
            "item_index": "Int64",
        }  # fmt: skip
    )
    table.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _mean(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _most_common(labels: pd.Series) -> str:
    labels = labels[labels.astype(bool)]
    return str(labels.mode().iloc[0]) if len(labels) else ""


def _plain(value):
    """A numpy/pandas scalar as a JSON-ready Python value (NaN -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value
