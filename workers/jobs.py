"""Run one job by id: the single code path of the Celery task, the local worker and the in-process
`driftscope audit`.

1. claim: `deliveries += 1`, status -> running (atomic UPDATE); a job already done or failed is
   left alone (a redelivered message is a no-op), and a job delivered more than
   `settings.max_deliveries` times (its worker kept dying) is failed instead of run again;
2. run the diagnosis (or steering) with the process's runtime;
3. store the report idempotently (one per job) and mark the job done, or failed with a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, func, select

from service.db import session_scope
from service.job_payloads import DiagnosisPayload, SteerPayload, read_payload
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
    return run_jobs(
        [job_id], settings=settings, runtime=runtime, allow_running=allow_running, timeout=timeout
    )[job_id]


def run_jobs(
    job_ids: list[str],
    *,
    settings: Settings | None = None,
    runtime: Callable[[], Runtime] | None = None,
    allow_running: bool = True,
    timeout: type[BaseException] = JobTimeout,
    batch_size: int = 8,
    on_done: Callable[[str, str | None], None] | None = None,
) -> dict[str, str | None]:
    """Claim and run several jobs, the diagnoses `batch_size` at a time through
    `diagnose_batch` (answers generated together, left-padded; each problem then diagnosed on
    its own). Each job is claimed, stored and finished on its own, exactly as one job alone:
    one that fails never fails the others. Returns each job's final status (None: nothing to
    do); `on_done(job_id, status)` is called as each finishes (for progress)."""
    settings = settings or get_settings()
    statuses: dict[str, str | None] = {}

    def done(job_id: str, status: str | None) -> None:
        statuses[job_id] = status
        if on_done is not None:
            on_done(job_id, status)

    with session_scope(settings.database_url) as session:
        for start in range(0, len(job_ids), batch_size):
            claimed: list[tuple[Job, DiagnosisPayload]] = []
            for job_id in job_ids[start : start + batch_size]:
                job = claim(session, job_id, allow_running=allow_running)
                if job is None:
                    done(job_id, None)
                elif job.deliveries > settings.max_deliveries:
                    error = (
                        f"gave up after {job.deliveries - 1} deliveries: the worker running "
                        "this job died or hit the time limit each time"
                    )
                    finish(session, job_id, JobStatus.failed, error=error)
                    _maybe_finish_audit(session, job.audit_id)
                    done(job_id, str(JobStatus.failed))
                else:
                    try:
                        payload = read_payload(job.kind, job.payload)
                    except Exception as err:  # noqa: BLE001 - a bad stored payload fails its job
                        done(job_id, _failed(session, job, err))
                        continue
                    if isinstance(payload, SteerPayload):
                        done(job_id, _run_one(session, job, runtime, settings, timeout,
                                              lambda rt, p=payload: _steer(rt, p)))  # fmt: skip
                    else:
                        claimed.append((job, payload))
            _run_diagnoses(session, claimed, runtime, settings, timeout, done)
    return statuses


def _run_one(session, job: Job, runtime, settings, timeout, work) -> str:
    """Run `work(runtime)` (a steering job), store its result, finish the job."""
    try:
        rt = (runtime or (lambda: get_runtime(settings)))()
        finish(session, job.id, JobStatus.done, result=work(rt))
        status = str(JobStatus.done)
    except sa.exc.OperationalError:
        raise  # the database is unreachable: leave the job to the reconciler
    except timeout:
        session.rollback()
        finish(session, job.id, JobStatus.failed, error="the job exceeded its time limit")
        status = str(JobStatus.failed)
    except Exception as err:  # a bad input or a model error: recorded, not retried
        status = _failed(session, job, err)
    _maybe_finish_audit(session, job.audit_id)
    return status


def _run_diagnoses(session, claimed, runtime, settings, timeout, done) -> None:
    """Diagnose the claimed jobs together (grouped by options), storing and finishing each as
    its report comes (so progress moves and a later crash loses nothing already stored)."""
    if not claimed:
        return
    from diagnostics.diagnose import Problem, diagnose_batch

    try:
        rt = (runtime or (lambda: get_runtime(settings)))()
    except Exception as err:  # the model cannot load: every claimed job fails with the reason
        for job, _ in claimed:
            done(job.id, _failed(session, job, err))
            _maybe_finish_audit(session, job.audit_id)
        return
    groups: dict[str, list[tuple[Job, DiagnosisPayload]]] = {}
    for job, payload in claimed:
        groups.setdefault(payload.options.model_dump_json(), []).append((job, payload))
    for members in groups.values():
        finished: set[int] = set()

        def on_report(i: int, result, members=members, finished=finished) -> None:
            job = members[i][0]
            finished.add(i)
            done(job.id, _store_result(session, job, result, timeout))
            _maybe_finish_audit(session, job.audit_id)

        try:
            diagnose_batch(
                rt.lm, rt.sae,
                [Problem(p.prompt, p.expected, p.reference, p.output) for _, p in members],
                atlas=rt.atlas, options=members[0][1].options, sae_id=rt.sae_id,
                batch_size=len(members), on_report=on_report,
            )  # fmt: skip
        except timeout as err:  # the time limit hit the batched generation itself
            for i in range(len(members)):
                if i not in finished:
                    on_report(i, err)


def _store_result(session, job: Job, result, timeout: type[BaseException]) -> str:
    if isinstance(result, timeout):
        session.rollback()
        finish(session, job.id, JobStatus.failed, error="the job exceeded its time limit")
        return str(JobStatus.failed)
    if isinstance(result, Exception):
        return _failed(session, job, result)
    store_report(session, result, job.id, job.audit_id)
    finish(session, job.id, JobStatus.done)
    return str(JobStatus.done)


def _failed(session, job: Job, err: BaseException) -> str:
    log.error("job %s failed: %s: %s", job.id, type(err).__name__, err)
    session.rollback()
    finish(session, job.id, JobStatus.failed, error=f"{type(err).__name__}: {err}")
    return str(JobStatus.failed)


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
