"""Progress of an audit from its job rows: done / failed / queued / running and an ETA; the list
of audits newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel import Session, func, select

from service.db import as_aware
from service.models import Audit, Job, JobStatus
from service.ownership import Scope


class AuditProgress(BaseModel):
    id: str
    name: str
    source: str
    status: Literal["queued", "running", "done"]
    total: int
    done: int
    failed: int
    queued: int
    running: int
    eta_s: float | None = Field(description="Estimated seconds left (from the pace so far).")
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
    finished, left = done + failed, queued + running
    now = now or datetime.now(UTC)
    created = as_aware(audit.created_at)
    eta = None
    if left == 0:
        eta = 0.0
    elif finished:
        eta = (now - created).total_seconds() / finished * left
    status = "done" if left == 0 else ("running" if finished or running else "queued")
    return AuditProgress(
        id=audit.id,
        name=audit.name,
        source=audit.source,
        status=status,
        total=audit.total,
        done=done,
        failed=failed,
        queued=queued,
        running=running,
        eta_s=eta,
        created_at=created,
        finished_at=as_aware(audit.finished_at),
        options=audit.options,
    )


def find_audit(session: Session, audit_id: str, *, scope: Scope) -> Audit | None:
    """The audit with that id if `scope` may see it."""
    audit = session.get(Audit, audit_id)
    return audit if audit is not None and scope.sees(audit.owner_key_id) else None


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
