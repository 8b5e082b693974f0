"""Re-enqueue jobs stuck in `queued` or `running` past a deadline (`python -m workers.reconciler`).

- running longer than `running_deadline_s` (above the hard time limit: its worker died and the
  message is gone): back to queued and sent again, or failed if its delivery cap is used up;
- queued longer than `queued_deadline_s` while the broker queue is empty (the message was lost,
  e.g. Redis restarted without persistence): sent again. While the queue still holds messages,
  queued jobs are waiting their turn and are left alone.

Each change is a compare-and-set on (status, timestamp), so a worker claiming the job at the same
moment wins, and the job is never both re-sent and run from the old message twice over.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import select

from service.db import session_scope
from service.models import Job, JobStatus
from service.settings import Settings, get_settings
from workers.queue import enqueue, queue_depth

log = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def reconcile_once(
    settings: Settings | None = None, *, now: datetime | None = None, batch: int = 500
) -> ReconcileResult:
    """One pass: reset and re-send stuck jobs; returns what changed."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    out = ReconcileResult()
    running_before = now - timedelta(seconds=settings.running_deadline_s)
    queued_before = now - timedelta(seconds=settings.queued_deadline_s)
    table = Job.__table__
    with session_scope(settings.database_url) as session:
        stuck_running = session.exec(
            select(Job.id, Job.started_at, Job.deliveries)
            .where(Job.status == str(JobStatus.running), Job.started_at < running_before)
            .limit(batch)
        ).all()
        for job_id, started_at, deliveries in stuck_running:
            base = sa.update(table).where(
                table.c.id == job_id,
                table.c.status == str(JobStatus.running),
                table.c.started_at == started_at,
            )
            if deliveries >= settings.max_deliveries:
                values = {
                    "status": str(JobStatus.failed),
                    "finished_at": now,
                    "error": f"no result after {deliveries} deliveries (worker lost or timed out)",
                }
                target = out.failed
            else:
                values = {"status": str(JobStatus.queued), "enqueued_at": now}
                target = out.requeued
            if session.execute(base.values(**values)).rowcount:
                target.append(job_id)
        session.commit()

        depth = queue_depth(settings)
        if settings.queue_backend == "celery" and depth == 0:
            stale = session.exec(
                select(Job.id, Job.enqueued_at)
                .where(Job.status == str(JobStatus.queued), Job.enqueued_at < queued_before)
                .limit(batch)
            ).all()
            for job_id, enqueued_at in stale:
                moved = session.execute(
                    sa.update(table)
                    .where(
                        table.c.id == job_id,
                        table.c.status == str(JobStatus.queued),
                        table.c.enqueued_at == enqueued_at,
                    )
                    .values(enqueued_at=now)
                ).rowcount
                if moved:
                    out.requeued.append(job_id)
            session.commit()
    enqueue(out.requeued, settings)
    for job_id in out.failed:
        _finish_audit_of(settings, job_id)
    if out.requeued or out.failed:
        log.info("reconciler: re-enqueued %d, failed %d", len(out.requeued), len(out.failed))
    return out


def _finish_audit_of(settings: Settings, job_id: str) -> None:
    from workers.jobs import _maybe_finish_audit

    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        if job is not None:
            _maybe_finish_audit(session, job.audit_id)


def run_forever(interval_s: float = 60.0, stop=None) -> None:
    """Reconcile every `interval_s` seconds until `stop` (a threading.Event) is set."""
    while stop is None or not stop.is_set():
        try:
            reconcile_once()
        except Exception:  # keep going: the next pass retries
            log.exception("reconciler pass failed")
        if stop is not None:
            stop.wait(interval_s)
        else:
            time.sleep(interval_s)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_forever(get_settings().reconcile_interval_s)
