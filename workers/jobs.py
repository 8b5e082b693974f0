"""Run one job by id: the single code path of the Celery task, the local worker and the in-process
`driftscope audit`.

1. claim: `deliveries += 1`, status -> running, heartbeat now (an atomic UPDATE); a job already
   done or failed is left alone (a redelivered message is a no-op), a running job only when its
   lease expired (no heartbeat for `settings.lease_s`: its worker died), and a job delivered more
   than `settings.max_deliveries` times (its worker kept dying) is failed instead of run again;
2. run the diagnosis (or steering, or a feature search) with the process's runtime while a
   thread renews the lease (diagnoses in batches: `run_jobs`);
3. store the report idempotently (one per job) and mark the job done, or failed with a message,
   retrying the write while the database is unreachable (up to `settings.result_write_retry_s`).

The delivery count taken at the claim is the lease token: heartbeats and the final write apply
only while the job is still this delivery's, so a worker that lost its lease cannot undo the
work of the one that took it over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, func, select

from service.db import DB_ERRORS, session_scope
from service.job_payloads import DiagnosisPayload, SearchPayload, SteerPayload, read_payload
from service.models import TERMINAL, Audit, Job, JobStatus
from service.report_store import store_report
from service.settings import Settings, get_settings
from workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    commit: bool = True,
) -> bool:
    """Set a final status, only while delivery `delivery` holds the job (a late duplicate or a
    worker that lost its lease cannot undo a finished job); True when it did. `commit=False`
    leaves the transaction open for the write that goes with it (the report)."""
    values: dict = {"status": str(status), "finished_at": datetime.now(UTC)}
    if error is not None:  # storable whatever the failure quoted (a NUL, a lone surrogate)
        values["error"] = error[:4000].encode("utf-8", "replace").decode().replace("\x00", "?")
    if result is not None:
        values["result"] = result
    done = session.execute(
        sa.update(Job.__table__).where(*_mine(job_id, delivery)).values(**values)
    )
    if commit:
        session.commit()
    return bool(done.rowcount)


class Heartbeat:
    """Renews a running job's lease every `settings.heartbeat_interval_s` in a thread; `lost`
    turns True once a beat finds the job no longer this delivery's (cancelled by its owner, or
    failed or re-queued by the reconciler): the work then stops at its next stage boundary."""

    def __init__(self, settings: Settings, job_id: str, delivery: int) -> None:
        self.settings, self.job_id, self.delivery = settings, job_id, delivery
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                with session_scope(self.settings.database_url) as session:
                    beat = session.execute(
                        sa.update(Job.__table__)
                        .where(*_mine(self.job_id, self.delivery))
                        .values(heartbeat_at=datetime.now(UTC))
                    )
                    session.commit()
            except Exception as err:  # the database is away: the next beat retries
                log.warning("heartbeat of job %s failed: %s", self.job_id, err)
                continue
            if beat.rowcount == 0:
                self.lost = True
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def write_with_retry(settings: Settings, write: Callable[[Session], T]) -> T:
    """Run `write` in a fresh session, again while the database is unreachable, for up to
    `settings.result_write_retry_s` (then the error is raised; the lease lapses and the
    reconciler re-queues the job); returns what `write` returns."""
    deadline = time.monotonic() + settings.result_write_retry_s
    delay = 0.5
    while True:
        try:
            with session_scope(settings.database_url) as session:
                return write(session)
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
    its own). Each job keeps its own lease, outcome and write, exactly as a job run alone: one
    that fails never fails the others, and each is stored as it finishes. Returns each job's
    final status (None: nothing to do); `on_done(job_id, status)` is called as each finishes."""
    settings = settings or get_settings()
    statuses: dict[str, str | None] = {}

    def done(job: Job, delivery: int, status: JobStatus, write: Callable[[Session], bool]):
        audit_id = job.audit_id

        def write_and_close(s: Session) -> bool:
            applied = write(s)
            _maybe_finish_audit(s, audit_id)
            return applied

        final: str | None = str(status)
        if not write_with_retry(settings, write_and_close):
            log.warning(
                "job %s: delivery %d no longer holds the job (cancelled, or re-queued or failed "
                "meanwhile); its %s result was discarded", job.id, delivery, status,
            )  # fmt: skip
            final = None
        statuses[job.id] = final
        if on_done is not None:
            on_done(job.id, final)

    for start in range(0, len(job_ids), batch_size):
        chunk = job_ids[start : start + batch_size]
        with session_scope(settings.database_url) as session:
            claimed = [(i, claim(session, i, settings, allow_running=allow_running)) for i in chunk]
        diagnoses: list[tuple[Job, int, DiagnosisPayload]] = []
        for job_id, job in claimed:
            if job is None:
                statuses[job_id] = None
                if on_done is not None:
                    on_done(job_id, None)
                continue
            delivery = job.deliveries
            if delivery > settings.max_deliveries:
                error = (
                    f"gave up after {delivery - 1} deliveries: the worker running this job "
                    "died or hit the time limit each time"
                )
                done(job, delivery, JobStatus.failed, _failure(job.id, delivery, error))
                continue
            try:
                payload = read_payload(job.kind, job.payload)
            except Exception as err:  # a stored payload that does not fit: the job fails alone
                done(job, delivery, JobStatus.failed, _failure(job.id, delivery, _message(err)))
                continue
            if isinstance(payload, SteerPayload | SearchPayload):
                with Heartbeat(settings, job.id, delivery):
                    status, write = _result_job(job, delivery, payload, settings, runtime, timeout)
                done(job, delivery, status, write)
            else:
                diagnoses.append((job, delivery, payload))
        _diagnose_jobs(diagnoses, settings, runtime, timeout, done)
    return statuses


def _diagnose_jobs(diagnoses, settings, runtime, timeout, done) -> None:
    """Diagnose claimed jobs together (grouped by options), each job's lease renewed until its
    own report is stored."""
    if not diagnoses:
        return
    from diagnostics.diagnose import Problem, diagnose_batch

    with contextlib.ExitStack() as leases:
        beats = {
            job.id: leases.enter_context(Heartbeat(settings, job.id, d)) for job, d, _ in diagnoses
        }
        try:
            rt = (runtime or (lambda: get_runtime(settings)))()
        except Exception as err:  # the model cannot load: every claimed job fails with the reason
            for job, delivery, _ in diagnoses:
                done(job, delivery, JobStatus.failed, _failure(job.id, delivery, _message(err)))
            return
        groups: dict[str, list[tuple[Job, int, DiagnosisPayload]]] = {}
        for item in diagnoses:
            groups.setdefault(item[2].options.model_dump_json(), []).append(item)
        for members in groups.values():
            finished: set[int] = set()

            def on_report(i: int, result, members=members, finished=finished) -> None:
                job, delivery, _ = members[i]
                finished.add(i)
                if isinstance(result, BaseException):
                    if not isinstance(result, timeout):
                        log.error("job %s failed: %s", job.id, _message(result))
                    message = (
                        "the job exceeded its time limit"
                        if isinstance(result, timeout)
                        else _message(result)
                    )
                    done(job, delivery, JobStatus.failed, _failure(job.id, delivery, message))
                else:
                    done(job, delivery, JobStatus.done, _store(job, delivery, result))
                beats.pop(job.id).__exit__(None, None, None)

            try:
                diagnose_batch(
                    rt.lm, rt.sae,
                    [Problem(p.prompt, p.expected, p.reference, p.output) for _, _, p in members],
                    atlas=rt.atlas, options=members[0][2].options, sae_id=rt.sae_id,
                    batch_size=len(members), on_report=on_report, tracer=rt.tracer,
                    should_stop=lambda i, members=members: _lost(beats, members[i][0].id),
                )  # fmt: skip
            except timeout as err:  # the time limit hit the batched generation itself
                for i in range(len(members)):
                    if i not in finished:
                        on_report(i, err)


def _lost(beats: dict[str, Heartbeat], job_id: str) -> bool:
    """Whether the job's delivery no longer holds it (its result would be discarded)."""
    beat = beats.get(job_id)
    return beat is not None and beat.lost


def _store(job: Job, delivery: int, report) -> Callable[[Session], bool]:
    """The write of a finished diagnosis: the job marked done and its report stored in one
    transaction, only while this delivery holds the lease (else neither; False), so a job's
    status and its report never disagree."""

    def store(s: Session) -> bool:
        if not finish(s, job.id, delivery, JobStatus.done, commit=False):
            s.rollback()
            return False
        store_report(s, report, job.id, job.audit_id, job.owner_key_id)  # commits both
        return True

    return store


def _failure(job_id: str, delivery: int, message: str) -> Callable[[Session], bool]:
    return lambda s: finish(s, job_id, delivery, JobStatus.failed, error=message)


def _message(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _result_job(job, delivery, payload, settings, runtime, timeout):
    """Run a steering or feature-search job; (final status, the write that records it)."""
    try:
        rt = (runtime or (lambda: get_runtime(settings)))()
        result = _steer(rt, payload) if isinstance(payload, SteerPayload) else _search(rt, payload)
        return JobStatus.done, lambda s: finish(s, job.id, delivery, JobStatus.done, result=result)
    except timeout:
        message = "the job exceeded its time limit"
    except Exception as err:  # a bad input or a model error: recorded, not retried
        log.exception("job %s failed", job.id)
        message = _message(err)
    return JobStatus.failed, _failure(job.id, delivery, message)


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
