"""Cancel queued and running work: one job, or every open job of an audit.

A queued job is marked `cancelled` and never claimed (claims take queued or running jobs only).
A running job is marked `cancelled` at once; its worker's next heartbeat finds the job no longer
its own, the diagnosis stops at its next stage boundary, and whatever it had is discarded (a
result is stored only while the delivery holds the job), so status and report never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session

from service.models import Audit, Job, JobStatus

OPEN = (str(JobStatus.queued), str(JobStatus.running))
CANCELLED_MESSAGE = "cancelled by its owner"


def cancel_job(session: Session, job_id: str) -> bool:
    """Cancel the job if it is queued or running; False when it had already finished."""
    cancelled = _cancel(session, Job.__table__.c.id == job_id)
    job = session.get(Job, job_id, populate_existing=True)
    if cancelled and job is not None and job.audit_id is not None:
        _close_audit(session, job.audit_id)
    return bool(cancelled)


def cancel_audit(session: Session, audit_id: str) -> int:
    """Cancel every queued or running job of the audit and stamp it finished; how many."""
    cancelled = _cancel(session, Job.__table__.c.audit_id == audit_id)
    _close_audit(session, audit_id)
    return cancelled


def _cancel(session: Session, which: sa.ColumnElement) -> int:
    table = Job.__table__
    done = session.execute(
        sa.update(table)
        .where(which, table.c.status.in_(OPEN))
        .values(
            status=str(JobStatus.cancelled),
            finished_at=datetime.now(UTC),
            error=CANCELLED_MESSAGE,
        )
    )
    session.commit()
    return done.rowcount


def _close_audit(session: Session, audit_id: str) -> None:
    """Stamp the audit finished once none of its jobs is open (as a worker does)."""
    table = Job.__table__
    still_open = session.execute(
        sa.select(sa.func.count()).where(table.c.audit_id == audit_id, table.c.status.in_(OPEN))
    ).scalar_one()
    audit = session.get(Audit, audit_id, populate_existing=True)
    if still_open == 0 and audit is not None and audit.finished_at is None:
        audit.finished_at = datetime.now(UTC)
        session.add(audit)
        session.commit()
