"""Re-enqueue jobs whose worker or message was lost (`python -m workers.reconciler`).

- running with an expired lease (no heartbeat for `lease_s`: its worker died, or lost the
  database past the result-write retries): back to queued and sent again, or failed if its
  delivery cap is used up;
- queued longer than `queued_deadline_s` with no message in the broker (neither waiting nor
  delivered: lost, e.g. Redis restarted without persistence): sent again, however long the
  queue is. A job whose message is still there is waiting its turn and is left alone.

Each change is a compare-and-set (on the delivery count, or on `enqueued_at`), so a worker
claiming the job at the same moment wins; a duplicate message is harmless anyway: a claim takes
a running job only when its lease expired.
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
from workers.jobs import _maybe_finish_audit, lease_expired
from workers.queue import enqueue, ids_in_broker

log = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def reconcile_once(
    settings: Settings | None = None, *, now: datetime | None = None, batch: int = 500
) -> ReconcileResult:
    """One pass: reset and re-send lost jobs; returns what changed."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    out = ReconcileResult()
    table = Job.__table__
    stale = now - timedelta(seconds=settings.lease_s)
    queued_before = now - timedelta(seconds=settings.queued_deadline_s)
    with session_scope(settings.database_url) as session:
        lost_workers = session.exec(
            select(Job.id, Job.deliveries)
            .where(Job.status == str(JobStatus.running), lease_expired(table, stale))
            .limit(batch)
        ).all()
        for job_id, deliveries in lost_workers:
            base = sa.update(table).where(
                table.c.id == job_id,
                table.c.status == str(JobStatus.running),
                table.c.deliveries == deliveries,
                lease_expired(table, stale),
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

        in_broker = ids_in_broker(settings)
        if settings.queue_backend == "celery" and in_broker is not None:
            waiting = session.exec(
                select(Job.id, Job.enqueued_at)
                .where(Job.status == str(JobStatus.queued), Job.enqueued_at < queued_before)
                .order_by(Job.enqueued_at)  # type: ignore[arg-type]
                .limit(batch)
            ).all()
            for job_id, enqueued_at in waiting:
                if job_id in in_broker:
                    continue
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
        with session_scope(settings.database_url) as session:
            job = session.get(Job, job_id)
            if job is not None:
                _maybe_finish_audit(session, job.audit_id)
    if out.requeued or out.failed:
        log.info("reconciler: re-enqueued %d, failed %d", len(out.requeued), len(out.failed))
    return out


def run_forever(interval_s: float = 10.0, stop=None) -> None:
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
