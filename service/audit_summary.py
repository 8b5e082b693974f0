"""Audit aggregates with pandas: accuracy, failure classes, recurring flagged features with their
labels and fix rates (against the random control), the flagged latents grouped into concepts
(`diagnostics.concepts`) with flagged vs selection-matched-null fix rates per failure class, and
the per-item export (CSV / Parquet).

Fix rate of a feature = the share of the failures that flag it where zero-ablating the flagged set
(which includes it) made the model reach the expected answer; the control fix rate next to it is
the same for matched random latents in the same reports.
"""

from __future__ import annotations

import csv
import io
import math
import re

import pandas as pd
import sqlalchemy as sa
from sqlmodel import Session

from diagnostics.concept_evidence import NullCounts
from diagnostics.concepts import ConceptBasis, FlaggedFailure, audit_concepts
from service.audit_findings import (
    EVIDENCE_COLUMNS,
    evidence_columns,
    first_errors,
    responsible_spans,
)
from service.models import Audit, Job, Report, ReportFeature

ITEM_COLUMNS = [
    "item_index", "job_id", "status", "error", "report_id", "correct", "failure_class",
    "format_ok", "ablation_fixed", "null_fix_rate", "n_flagged", "prompt",
    "expected", "extracted", "verdict",
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
            r.body["null"]["fix_rate"].as_float().label("null_fix_rate"),
            r.n_flagged,
            r.prompt_preview.label("prompt"),
            r.expected,
            r.extracted,
            r.verdict,
            *[
                _body_value(r.body, path, kind).label(name)
                for name, (path, kind) in BODY_COLUMNS.items()
            ],
            r.body["context"].label("context"),
            r.body["null"]["draws"].label("null_draws"),
            r.body["verification"]["metric_before"].as_float().label("metric_before"),
            r.body["verification"]["metric_after"].as_float().label("metric_after"),
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
    n = len(ITEM_COLUMNS) + len(BODY_COLUMNS)
    items_df = pd.DataFrame(
        [tuple(row)[:n] + evidence_columns(*tuple(row)[n:]) for row in items],
        columns=ITEM_COLUMNS + list(BODY_COLUMNS) + EVIDENCE_COLUMNS,
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
    """A scalar inside the report's JSON body, on SQLite and PostgreSQL alike (indexed key by
    key: a tuple path reads NULL on PostgreSQL JSONB)."""
    node = body
    for key in path:
        node = node[key]
    return node.as_float() if kind == "float" else node.as_string()


def summarize(
    items: pd.DataFrame,
    features: pd.DataFrame,
    basis: ConceptBasis | None = None,
    *,
    min_count: int = 2,
    top: int = 20,
) -> dict:
    """The audit summary as plain JSON-ready values, what it found first.

    - `first_errors`: [{kind, count, share, example: {report_id, step, should_be}}] over the
      wrong answers, most frequent first (`service.audit_findings`);
    - `responsible_spans`: [{kind, meaning, count, share, example: {report_id, text}}];
    - `concepts` (empty without `basis`, the SAE's decoder and atlas): only the recurring
      concepts whose ablation beats the selection-matched null in their failures
      (`diagnostics.concept_evidence`), most failures first, each {concept, description,
      latents (specific first), failures, flagged_fix_rate, null_fix_rate, verified, with_null,
      by_kind, generic_latents, fix and flip: {count, of, null_expected, p_value, rate,
      null_rate}, p_value (corrected), beats_null, cards: [FeatureCard]};
      `concepts_tested` says how many recurring concepts were tested, `concepts_generic` how
      many were left out because all their latents are generic;
    - `recurring_features`: single latents flagged in at least `min_count` failures (generic
      ones left out when the basis knows them), with their card; counts, not evidence.
    A fix rate is over the failures where it was measured, None when none."""
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
        "null_fix_rate": _mean(wrong["null_fix_rate"]) if "null_fix_rate" in wrong else None,
        "first_errors": first_errors(wrong),
        "responsible_spans": responsible_spans(wrong),
        "concepts": [],
        "concepts_tested": 0,
        "concepts_generic": 0,
        "recurring_features": [],
    }
    if len(wrong) and len(features):
        generic = set() if basis is None else {j for j, g in enumerate(basis.generic) if g}
        specific = features[~features["feature_id"].isin(generic)]
        merged = specific.merge(wrong[["report_id", "ablation_fixed"]], on="report_id")
        if len(merged):
            merged["ablation_fixed"] = merged["ablation_fixed"].astype("float")
            grouped = merged.groupby("feature_id").agg(
                n_failures=("report_id", "nunique"),
                label=("label", _most_common),
                mean_attribution=("attribution", "mean"),
                mean_ablation_effect=("ablation_effect", "mean"),
                fix_rate=("ablation_fixed", "mean"),
                n_verified=("ablation_fixed", "count"),
            )
            grouped = grouped[grouped["n_failures"] >= min_count]
            grouped["share_of_failures"] = grouped["n_failures"] / len(wrong)
            grouped = grouped.sort_values(
                ["n_failures", "mean_attribution"], ascending=[False, True]
            ).head(top)
            out["recurring_features"] = [
                {"feature": int(fid)}
                | {k: _plain(v) for k, v in row.items()}
                | {"card": _card(basis, int(fid))}
                for fid, row in grouped.iterrows()
            ]
        if basis is not None:
            concepts, n_generic = audit_concepts(
                flagged_failures(wrong, features), basis, min_failures=min_count, top=top
            )
            out["concepts"] = [c.as_json() for c in concepts if c.beats_null]
            out["concepts_tested"], out["concepts_generic"] = len(concepts), n_generic
    return out


def _card(basis: ConceptBasis | None, j: int) -> dict | None:
    card = basis.card_of(j) if basis is not None else None
    return card.model_dump() if card is not None else None


def flagged_failures(wrong: pd.DataFrame, features: pd.DataFrame) -> list[FlaggedFailure]:
    """The wrong answers with their flagged latents (those with none are left out)."""
    latents = features.sort_values("rank").groupby("report_id")["feature_id"].agg(list)
    return [
        FlaggedFailure(
            report_id=str(row.report_id),
            kind=str(row.failure_class),
            latents=[int(j) for j in latents[row.report_id]],
            fixed=None if pd.isna(row.ablation_fixed) else bool(row.ablation_fixed),
            null_fix_rate=None if pd.isna(row.null_fix_rate) else float(row.null_fix_rate),
            flipped=_opt_bool(getattr(row, "flipped", None)),
            null=_null_counts(row),
        )
        for row in wrong.itertuples()
        if row.report_id in latents.index
    ]


def _opt_bool(value) -> bool | None:
    return None if value is None or pd.isna(value) else bool(value)


def _null_counts(row) -> NullCounts | None:
    """The failure's null draw counts (columns from `evidence_columns`), None without a null."""
    draws = getattr(row, "null_flip_draws", None)
    if draws is None or pd.isna(draws):
        return None
    return NullCounts(
        fixed=int(row.null_fixed or 0),
        fix_draws=int(row.null_fix_draws or 0),
        flipped=int(row.null_flipped or 0),
        flip_draws=int(draws),
    )


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


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")


def neutralise_cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (`=HYPERLINK(...)`, `+cmd|...`) gets a
    leading apostrophe; plain numbers such as `-3` are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        if not PLAIN_NUMBER.fullmatch(value):
            return "'" + value
    return value


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as CSV, text cells neutralised against formula injection."""
    text_columns = frame.select_dtypes(include=["object", "string"]).columns
    safe = frame.copy()
    for column in text_columns:
        safe[column] = safe[column].map(neutralise_cell)
    # every text cell quoted: pandas leaves a lone "\r" unquoted, which splits the row
    return safe.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode()


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
