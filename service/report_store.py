"""Write a DriftReport idempotently: at most one report per job, features written with it.

The insert is `INSERT ... ON CONFLICT (job_id) DO NOTHING` on both SQLite and PostgreSQL, in the
same transaction as the report's feature rows, so a redelivered task (or two workers racing on the
same job) stores one report and never duplicates its features.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from diagnostics.prompts import last_question
from diagnostics.report import DriftReport
from service.models import Report, ReportFeature, new_id


def report_columns(
    report: DriftReport, job_id: str, audit_id: str | None, owner_key_id: int | None = None
) -> dict:
    """The report row: indexed scalars for filtering plus the whole report as JSON."""
    return {
        "id": new_id(),
        "job_id": job_id,
        "audit_id": audit_id,
        "owner_key_id": owner_key_id,
        "correct": report.judgement.correct,
        "failure_class": str(report.failure_class.value),
        "model_id": report.identity.model_id[:300],
        "sae_id": report.identity.sae_id[:300],
        "format_ok": report.judgement.format_ok,
        "ablation_fixed": report.verification.fixed if report.verification else None,
        "n_flagged": len(report.flagged),
        "prompt_preview": last_question(report.prompt)[:300],  # an eval prompt: not its examples
        "expected": report.expected[:1000],
        "extracted": (report.judgement.extracted or None) and report.judgement.extracted[:200],
        "verdict": report.verdict,
        "created_at": report.created_at,
        "body": report.model_dump(mode="json"),
    }


def feature_rows(report: DriftReport, report_id: str) -> list[dict]:
    return [
        {
            "report_id": report_id,
            "feature_id": f.feature,
            "rank": rank,
            "label": f.label[:500],
            "attribution": f.attribution,
            "ablation_effect": f.ablation_effect,
        }
        for rank, f in enumerate(report.flagged)
    ]


def store_report(
    session: Session,
    report: DriftReport,
    job_id: str,
    audit_id: str | None = None,
    owner_key_id: int | None = None,
) -> tuple[str, bool]:
    """Store `report` for `job_id` unless the job has one; returns (report id, newly stored).

    Commits. Safe to call any number of times for the same job (SQLite and PostgreSQL).
    """
    values = report_columns(report, job_id, audit_id, owner_key_id)
    table = Report.__table__
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = insert(table).values(**values).on_conflict_do_nothing(index_elements=["job_id"])
    inserted = session.execute(stmt.returning(table.c.id)).scalar_one_or_none()
    if inserted is None:  # the job has its report; what else the transaction holds is kept
        existing = session.exec(select(Report.id).where(Report.job_id == job_id)).one()
        session.commit()
        return existing, False
    rows = feature_rows(report, inserted)
    if rows:
        session.execute(sa.insert(ReportFeature.__table__), rows)
    session.commit()
    return inserted, True


def load_report(body: dict) -> DriftReport:
    return DriftReport.from_stored(body)
