"""Run one job by id: the single code path of the Celery task, the local worker and the in-process
`driftscope audit`.

1. claim: `deliveries += 1`, status -> running, heartbeat now (an atomic UPDATE); a job already
   done or failed is left alone (a redelivered message is a no-op), a running job only when its
   lease expired (no heartbeat for `settings.lease_s`: its worker died), and a job delivered more
   than `settings.max_deliveries` times (its worker kept dying) is failed instead of run again;
2. run the diagnosis (or steering) with the process's runtime while a thread renews the lease;
3. store the report idempotently (one per job) and mark the job done, or failed with a message,
   retrying the write while the database is unreachable (up to `settings.result_write_retry_s`).

The delivery count taken at the claim is the lease token: heartbeats and the final write apply
only while the job is still this delivery's, so a worker that lost its lease cannot undo the
work of the one that took it over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, func, select

from service.db import DB_ERRORS, session_scope
from service.job_payloads import DiagnosisPayload, SteerPayload, read_payload
from service.models import TERMINAL, Audit, Job, JobStatus
from service.report_store import store_report
from service.settings import Settings, get_settings
from workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)


class JobTimeout(Exception):
    """Raised by a caller's time limit (the Celery task maps SoftTimeLimitExceeded to it)."""


def lease_expired(table: sa.Table, stale_before: datetime) -> sa.ColumnElement:
    """A running job whose worker has not renewed its lease since `stale_before`."""
    c = table.c
    return sa.or_(
        c.heartbeat_at < stale_before,
        sa.and_(
            c.heartbeat_at.is_(None),
            sa.or_(c.started_at.is_(None), c.started_at < stale_before),
        ),
    )


def claim(
    session: Session, job_id: str, settings: Settings, *, allow_running: bool = True
) -> Job | None:
    """Mark the job running and count the delivery; None when it is finished, unknown, or
    running under a live lease.

    `allow_running` lets a job whose lease expired be taken over (a redelivery after its worker
    died); the local poller claims only `queued` jobs.
    """
    table = Job.__table__
    now = datetime.now(UTC)
    takeable = table.c.status == str(JobStatus.queued)
    if allow_running:
        stale = now - timedelta(seconds=settings.lease_s)
        takeable = sa.or_(
            takeable,
            sa.and_(table.c.status == str(JobStatus.running), lease_expired(table, stale)),
        )
    result = session.execute(
        sa.update(table)
        .where(table.c.id == job_id, takeable)
        .values(
            status=str(JobStatus.running),
            deliveries=table.c.deliveries + 1,
            started_at=now,
            heartbeat_at=now,
        )
    )
    session.commit()
    if result.rowcount == 0:
        return None
    return session.get(Job, job_id, populate_existing=True)


def _mine(job_id: str, delivery: int) -> list:
    c = Job.__table__.c
    return [c.id == job_id, c.status == str(JobStatus.running), c.deliveries == delivery]


def finish(
    session: Session,
    job_id: str,
    delivery: int,
    status: JobStatus,
    *,
    error: str | None = None,
    result: dict | None = None,
) -> bool:
    """Set a final status, only while delivery `delivery` holds the job (a late duplicate or a
    worker that lost its lease cannot undo a finished job); True when it did."""
    values: dict = {"status": str(status), "finished_at": datetime.now(UTC)}
    if error is not None:
        values["error"] = error[:4000]
    if result is not None:
        values["result"] = result
    done = session.execute(
        sa.update(Job.__table__).where(*_mine(job_id, delivery)).values(**values)
    )
    session.commit()
    return bool(done.rowcount)


class Heartbeat:
    """Renews a running job's lease every `settings.heartbeat_interval_s` in a thread."""

    def __init__(self, settings: Settings, job_id: str, delivery: int) -> None:
        self.settings, self.job_id, self.delivery = settings, job_id, delivery
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                with session_scope(self.settings.database_url) as session:
                    session.execute(
                        sa.update(Job.__table__)
                        .where(*_mine(self.job_id, self.delivery))
                        .values(heartbeat_at=datetime.now(UTC))
                    )
                    session.commit()
            except Exception as err:  # the database is away: the next beat retries
                log.warning("heartbeat of job %s failed: %s", self.job_id, err)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def write_with_retry(settings: Settings, write: Callable[[Session], None]) -> None:
    """Run `write` in a fresh session, again while the database is unreachable, for up to
    `settings.result_write_retry_s` (then the error is raised; the lease lapses and the
    reconciler re-queues the job)."""
    deadline = time.monotonic() + settings.result_write_retry_s
    delay = 0.5
    while True:
        try:
            with session_scope(settings.database_url) as session:
                write(session)
            return
        except DB_ERRORS as err:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while storing a result (%s); retrying", err)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def run_job(
    job_id: str,
    *,
    settings: Settings | None = None,
    runtime: Callable[[], Runtime] | None = None,
    allow_running: bool = True,
    timeout: type[BaseException] = JobTimeout,
) -> str | None:
    """Claim and run job `job_id`; returns its final status (None: nothing to do).

    `timeout` is the exception a caller's soft time limit raises (Celery's SoftTimeLimitExceeded).
    """
    settings = settings or get_settings()
    with session_scope(settings.database_url) as session:
        job = claim(session, job_id, settings, allow_running=allow_running)
    if job is None:
        return None
    delivery, audit_id = job.deliveries, job.audit_id
    outcome: Callable[[Session], object]
    if delivery > settings.max_deliveries:
        error = (
            f"gave up after {delivery - 1} deliveries: the worker running this job "
            "died or hit the time limit each time"
        )
        status = JobStatus.failed
        outcome = lambda s: finish(s, job_id, delivery, status, error=error)  # noqa: E731
    else:
        with Heartbeat(settings, job_id, delivery):
            status, outcome = _run(job, delivery, settings, runtime, timeout)
    write_with_retry(settings, lambda s: (outcome(s), _maybe_finish_audit(s, audit_id)))
    return str(status)


def _run(
    job: Job,
    delivery: int,
    settings: Settings,
    runtime: Callable[[], Runtime] | None,
    timeout: type[BaseException],
) -> tuple[JobStatus, Callable[[Session], object]]:
    """Do the work; (final status, the write that records it)."""
    job_id = job.id
    try:
        rt = (runtime or (lambda: get_runtime(settings)))()
        payload = read_payload(job.kind, job.payload)
        if isinstance(payload, SteerPayload):
            result = _steer(rt, payload)
            return JobStatus.done, lambda s: finish(
                s, job_id, delivery, JobStatus.done, result=result
            )
        report = _diagnose(rt, payload)

        def store(s: Session) -> None:
            store_report(s, report, job_id, job.audit_id, job.owner_key_id)
            finish(s, job_id, delivery, JobStatus.done)

        return JobStatus.done, store
    except timeout:
        message = "the job exceeded its time limit"
    except Exception as err:  # a bad input or a model error: recorded, not retried
        log.exception("job %s failed", job_id)
        message = f"{type(err).__name__}: {err}"
    return JobStatus.failed, lambda s: finish(s, job_id, delivery, JobStatus.failed, error=message)


def _diagnose(rt: Runtime, payload: DiagnosisPayload):
    from diagnostics.diagnose import diagnose

    return diagnose(
        rt.lm,
        rt.sae,
        payload.prompt,
        payload.expected,
        reference=payload.reference,
        atlas=rt.atlas,
        options=payload.options,
        sae_id=rt.sae_id,
    )


def _steer(rt: Runtime, payload: SteerPayload) -> dict:
    from diagnostics.steering import steer

    result = steer(
        rt.lm,
        rt.sae,
        payload.prompt,
        payload.clamps,
        atlas=rt.atlas,
        max_new_tokens=payload.max_new_tokens,
        chat=payload.chat,
        concept=payload.concept or None,
    )
    return result.to_json()


def _maybe_finish_audit(session: Session, audit_id: str | None) -> None:
    """Stamp the audit finished once none of its jobs is queued or running."""
    if audit_id is None:
        return
    open_jobs = session.exec(
        select(func.count())
        .select_from(Job)
        .where(Job.audit_id == audit_id, Job.status.not_in([str(s) for s in TERMINAL]))  # type: ignore[union-attr]
    ).one()
    if open_jobs == 0:
        audit = session.get(Audit, audit_id)
        if audit is not None and audit.finished_at is None:
            audit.finished_at = datetime.now(UTC)
            session.add(audit)
            session.commit()
