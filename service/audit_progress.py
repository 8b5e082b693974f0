"""Progress of an audit from its job rows: done / failed / queued / running and an ETA; the list
of audits newest first."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel import Session, func, select

from service.db import as_aware
from service.models import Audit, Job, JobKind, JobStatus
from service.ownership import Scope


class AuditProgress(BaseModel):
    id: str
    name: str
    source: str
    status: Literal["queued", "running", "done", "cancelled"]
    total: int
    done: int
    failed: int
    cancelled: int = Field(0, description="Jobs cancelled by their owner (never run, or stopped).")
    queued: int
    running: int
    eta_s: float | None = Field(
        description="Estimated seconds left: from this audit's pace, or before its first item "
        "from the median duration of recent diagnoses (see eta_basis)."
    )
    eta_basis: Literal["this audit", "recent diagnoses"] | None = None
    created_at: datetime
    finished_at: datetime | None
    options: dict[str, Any]


def audit_progress(session: Session, audit: Audit, now: datetime | None = None) -> AuditProgress:
    counts = dict(
        session.exec(
            select(Job.status, func.count()).where(Job.audit_id == audit.id).group_by(Job.status)
        ).all()
    )
    done, failed = counts.get(JobStatus.done, 0), counts.get(JobStatus.failed, 0)
    queued, running = counts.get(JobStatus.queued, 0), counts.get(JobStatus.running, 0)
    cancelled = counts.get(JobStatus.cancelled, 0)
    finished, left = done + failed, queued + running
    now = now or datetime.now(UTC)
    created = as_aware(audit.created_at)
    eta, basis = None, None
    if left == 0:
        eta = 0.0
    elif finished:
        eta, basis = (now - created).total_seconds() / finished * left, "this audit"
    elif (typical := typical_job_seconds(session, JobKind.diagnosis)) is not None:
        eta, basis = typical * left, "recent diagnoses"
    status = "done" if left == 0 else ("running" if finished or running else "queued")
    if left == 0 and cancelled:
        status = "cancelled"
    return AuditProgress(
        id=audit.id,
        name=audit.name,
        source=audit.source,
        status=status,
        total=audit.total,
        done=done,
        failed=failed,
        cancelled=cancelled,
        queued=queued,
        running=running,
        eta_s=eta,
        eta_basis=basis,
        created_at=created,
        finished_at=as_aware(audit.finished_at),
        options=audit.options,
    )


def find_audit(session: Session, audit_id: str, *, scope: Scope) -> Audit | None:
    """The audit with that id if `scope` may see it."""
    audit = session.get(Audit, audit_id)
    return audit if audit is not None and scope.sees(audit.owner_key_id) else None


def typical_job_seconds(session: Session, kind: JobKind, last: int = 20) -> float | None:
    """The median run time of the last `last` finished jobs of `kind` (None: none finished)."""
    rows = session.exec(
        select(Job.started_at, Job.finished_at)
        .where(Job.kind == str(kind), Job.status == str(JobStatus.done))
        .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))  # type: ignore[union-attr]
        .order_by(Job.finished_at.desc())  # type: ignore[union-attr]
        .limit(last)
    ).all()
    durations = [(as_aware(f) - as_aware(s)).total_seconds() for s, f in rows]
    return statistics.median(durations) if durations else None


def recent_audits(
    session: Session, *, scope: Scope, limit: int = 50, offset: int = 0
) -> tuple[list[AuditProgress], int]:
    """One page of the audits `scope` sees, newest first, with their progress, and their number."""
    visible = scope.clauses(Audit.__table__.c.owner_key_id)
    count = session.exec(select(func.count()).select_from(Audit).where(*visible)).one()
    audits = session.exec(
        select(Audit).where(*visible).order_by(Audit.created_at.desc()).limit(limit).offset(offset)  # type: ignore[attr-defined]
    ).all()
    return [audit_progress(session, a) for a in audits], int(count)
