"""Run one job by id: the single code path of the Celery task, the local worker and the in-process
`driftscope audit`.

1. claim: `deliveries += 1`, status -> running (atomic UPDATE); a job already done or failed is
   left alone (a redelivered message is a no-op), and a job delivered more than
   `settings.max_deliveries` times (its worker kept dying) is failed instead of run again;
2. run the diagnosis (or steering, or a feature search) with the process's runtime;
3. store the report idempotently (one per job) and mark the job done, or failed with a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, func, select

from service.db import session_scope
from service.job_payloads import DiagnosisPayload, SearchPayload, SteerPayload, read_payload
from service.models import TERMINAL, Audit, Job, JobStatus
from service.report_store import store_report
from service.settings import Settings, get_settings
from workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)


class JobTimeout(Exception):
    """Raised by a caller's time limit (the Celery task maps SoftTimeLimitExceeded to it)."""


def claim(session: Session, job_id: str, *, allow_running: bool = True) -> Job | None:
    """Mark the job running and count the delivery; None when it is finished or unknown.

    `allow_running` accepts a job left `running` by a worker that died (a redelivery); the local
    poller claims only `queued` jobs.
    """
    states = [JobStatus.queued, JobStatus.running] if allow_running else [JobStatus.queued]
    table = Job.__table__
    result = session.execute(
        sa.update(table)
        .where(table.c.id == job_id, table.c.status.in_([str(s) for s in states]))
        .values(
            status=str(JobStatus.running),
            deliveries=table.c.deliveries + 1,
            started_at=datetime.now(UTC),
        )
    )
    session.commit()
    if result.rowcount == 0:
        return None
    return session.get(Job, job_id, populate_existing=True)


def finish(
    session: Session,
    job_id: str,
    status: JobStatus,
    *,
    error: str | None = None,
    result: dict | None = None,
) -> None:
    """Set a final status (only from running: a late duplicate cannot undo a finished job)."""
    table = Job.__table__
    values: dict = {"status": str(status), "finished_at": datetime.now(UTC)}
    if error is not None:
        values["error"] = error[:4000]
    if result is not None:
        values["result"] = result
    session.execute(
        sa.update(table)
        .where(table.c.id == job_id, table.c.status == str(JobStatus.running))
        .values(**values)
    )
    session.commit()


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
        job = claim(session, job_id, allow_running=allow_running)
        if job is None:
            return None
        if job.deliveries > settings.max_deliveries:
            error = (
                f"gave up after {job.deliveries - 1} deliveries: the worker running this job "
                "died or hit the time limit each time"
            )
            finish(session, job_id, JobStatus.failed, error=error)
            _maybe_finish_audit(session, job.audit_id)
            return str(JobStatus.failed)
        try:
            rt = (runtime or (lambda: get_runtime(settings)))()
            payload = read_payload(job.kind, job.payload)
            if isinstance(payload, SteerPayload):
                finish(session, job_id, JobStatus.done, result=_steer(rt, payload))
            elif isinstance(payload, SearchPayload):
                finish(session, job_id, JobStatus.done, result=_search(rt, payload))
            else:
                report = _diagnose(rt, payload)
                store_report(session, report, job_id, job.audit_id)
                finish(session, job_id, JobStatus.done)
            status = JobStatus.done
        except sa.exc.OperationalError:
            raise  # the database is unreachable: leave the job to the reconciler
        except timeout:
            session.rollback()
            finish(session, job_id, JobStatus.failed, error="the job exceeded its time limit")
            status = JobStatus.failed
        except Exception as err:  # a bad input or a model error: recorded, not retried
            log.exception("job %s failed", job_id)
            session.rollback()
            finish(session, job_id, JobStatus.failed, error=f"{type(err).__name__}: {err}")
            status = JobStatus.failed
        _maybe_finish_audit(session, job.audit_id)
        return str(status)


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
        output=payload.output,
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


def _search(rt: Runtime, payload: SearchPayload) -> dict:
    from diagnostics.atlas import search_text

    hits = search_text(
        rt.lm, rt.sae, payload.text, versus=payload.versus or None, top=payload.top, atlas=rt.atlas
    )
    return {"hits": [h.model_dump() for h in hits]}


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
