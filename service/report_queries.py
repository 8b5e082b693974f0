"""List, filter and fetch stored reports (used by /v1/reports, the web pages and the benchmark)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlmodel import Session, func, select

from diagnostics.report import DriftReport
from service.db import as_aware
from service.models import Report, ReportFeature
from service.ownership import Scope
from service.report_store import load_report


class FlaggedBrief(BaseModel):
    feature: int
    label: str
    attribution: float


class ReportSummary(BaseModel):
    """One row of the report list (the full report is at /v1/reports/{id})."""

    id: str
    job_id: str
    audit_id: str | None
    created_at: datetime
    correct: bool
    failure_class: str
    model_id: str
    sae_id: str
    n_flagged: int
    ablation_fixed: bool | None
    prompt: str
    expected: str
    extracted: str | None
    verdict: str
    first_wrong_step: str | None = Field(
        None, description="The model's first wrong step (its text), when one was located."
    )
    flagged: list[FlaggedBrief] = Field(default_factory=list)


class StoredReport(BaseModel):
    id: str
    job_id: str
    audit_id: str | None
    created_at: datetime
    report: DriftReport


@dataclass
class ReportFilters:
    """Every filter is optional; given ones are combined with AND."""

    correct: bool | None = None
    failure_class: str | None = None
    feature: int | None = None  # flagged feature id
    label: str | None = None  # text inside a flagged feature's label (case-insensitive)
    audit_id: str | None = None
    model_id: str | None = None
    sae_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def clauses(self) -> list:
        out: list = []
        if self.correct is not None:
            out.append(Report.correct == self.correct)
        if self.failure_class:
            out.append(Report.failure_class == self.failure_class)
        if self.audit_id:
            out.append(Report.audit_id == self.audit_id)
        if self.model_id:
            out.append(Report.model_id == self.model_id)
        if self.sae_id:
            out.append(Report.sae_id == self.sae_id)
        if self.created_after:
            out.append(Report.created_at >= self.created_after)
        if self.created_before:
            out.append(Report.created_at < self.created_before)
        if self.feature is not None or self.label:
            rf = ReportFeature.__table__.c
            sub = sa.select(rf.report_id).where(rf.report_id == Report.id)
            if self.feature is not None:
                sub = sub.where(rf.feature_id == self.feature)
            if self.label:
                pattern = "%" + _escape_like(self.label.lower()) + "%"
                sub = sub.where(func.lower(rf.label).like(pattern, escape="\\"))
            out.append(sa.exists(sub))
        return out


def _order(sort: str) -> list:
    column = SORT_KEYS[sort.lstrip("-")]
    first = column.desc() if sort.startswith("-") else column.asc()
    return [first, Report.__table__.c.created_at.desc(), Report.__table__.c.id.desc()]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


FIRST_WRONG_STEP = Report.__table__.c.body["first_error"]["step_text"].as_string()
SUMMARY_COLUMNS = [c for c in Report.__table__.c if c.name != "body"] + [
    FIRST_WRONG_STEP.label("first_wrong_step")
]  # the list reads one field of the body, never the whole of it
SORT_KEYS = {
    "created": Report.__table__.c.created_at,
    "correct": Report.__table__.c.correct,
    "failure_class": Report.__table__.c.failure_class,
    "n_flagged": Report.__table__.c.n_flagged,
    "ablation_fixed": Report.__table__.c.ablation_fixed,
}
"""Columns the report list can be ordered by (`sort=key`, `-key` for descending)."""


def list_reports(
    session: Session,
    filters: ReportFilters,
    *,
    scope: Scope,
    limit: int = 50,
    offset: int = 0,
    sort: str = "-created",
) -> tuple[list[ReportSummary], int]:
    """One page of the reports `scope` may see that match, in `sort` order (newest first by
    default; ties newest first), and their number."""
    clauses = filters.clauses() + scope.clauses(Report.__table__.c.owner_key_id)
    count = session.execute(
        sa.select(func.count()).select_from(Report.__table__).where(*clauses)
    ).scalar_one()
    rows = session.execute(
        sa.select(*SUMMARY_COLUMNS)
        .where(*clauses)
        .order_by(*_order(sort))
        .limit(limit)
        .offset(offset)
    ).all()
    flagged = _flagged_of(session, [r.id for r in rows])
    return [_summary(r, flagged.get(r.id, [])) for r in rows], int(count)


def _flagged_of(session: Session, report_ids: list[str]) -> dict[str, list[FlaggedBrief]]:
    out: dict[str, list[FlaggedBrief]] = defaultdict(list)
    if not report_ids:
        return out
    rows = session.exec(
        select(ReportFeature)
        .where(ReportFeature.report_id.in_(report_ids))  # type: ignore[attr-defined]
        .order_by(ReportFeature.report_id, ReportFeature.rank)  # type: ignore[arg-type]
    ).all()
    for f in rows:
        out[f.report_id].append(
            FlaggedBrief(feature=f.feature_id, label=f.label, attribution=f.attribution)
        )
    return out


def _summary(row, flagged: list[FlaggedBrief]) -> ReportSummary:
    return ReportSummary(
        id=row.id,
        job_id=row.job_id,
        audit_id=row.audit_id,
        created_at=row.created_at,
        correct=row.correct,
        failure_class=row.failure_class,
        model_id=row.model_id,
        sae_id=row.sae_id,
        n_flagged=row.n_flagged,
        ablation_fixed=row.ablation_fixed,
        prompt=row.prompt_preview,
        expected=row.expected,
        extracted=row.extracted,
        verdict=row.verdict,
        first_wrong_step=(row.first_wrong_step or None) and row.first_wrong_step[:300],
        flagged=flagged,
    )


def feature_stats(session: Session, feature: int, *, scope: Scope) -> tuple[int, int, float | None]:
    """(reports `scope` sees flagging `feature`, of which wrong answers, share where the
    ablation fixed it)."""
    rf = ReportFeature.__table__.c
    r = Report.__table__.c
    row = session.execute(
        sa.select(
            func.count(),
            func.sum(sa.case((r.correct.is_(False), 1), else_=0)),
            func.avg(
                sa.case((r.ablation_fixed.is_(True), 1.0), (r.ablation_fixed.is_(False), 0.0))
            ),
        )
        .select_from(Report.__table__.join(ReportFeature.__table__, rf.report_id == r.id))
        .where(rf.feature_id == feature, *scope.clauses(r.owner_key_id))
    ).one()
    return int(row[0] or 0), int(row[1] or 0), None if row[2] is None else float(row[2])


def stored_report(session: Session, report_id: str, *, scope: Scope) -> StoredReport | None:
    """One stored report in full, or None when there is none with that id that `scope` sees."""
    row = session.get(Report, report_id)
    if row is None or not scope.sees(row.owner_key_id):
        return None
    return StoredReport(
        id=row.id,
        job_id=row.job_id,
        audit_id=row.audit_id,
        created_at=as_aware(row.created_at),
        report=load_report(row.body),
    )
