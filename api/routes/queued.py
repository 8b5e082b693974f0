"""POSTs that queue work (diagnoses, steering, audits): 202 + Location, retry-safe with an
Idempotency-Key; and the state of a job row as the API shows it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session

from api.auth import Caller
from api.problem_details import Problem
from api.schemas import JobState
from service.db import as_aware
from service.idempotency import (
    BadIdempotencyKey,
    Idempotency,
    IdempotencyInFlight,
    IdempotencyMismatch,
)
from service.job_payloads import JobPayload
from service.models import Job
from service.settings import get_settings
from service.submissions import create_job, lock_key_quota, open_jobs
from workers.queue import enqueue

RETRY_AFTER_S = "5"
T = TypeVar("T")


def accept_queued(
    session: Session,
    idempotency_key: str | None,
    scope: str,
    fingerprint: bytes,
    write: Callable[[], T],
    answer: Callable[[T], tuple[dict, str]],
) -> JSONResponse:
    """Answer 202 with `answer(write())` = (body, location), or replay the stored answer.

    `write` commits the rows (the key is released if it fails, so the client may retry);
    `answer` enqueues the work and describes it. `scope` is caller + method + route and
    `fingerprint` the request's content: the same key with another fingerprint is a 422.
    """
    try:
        in_flight_s = get_settings().idempotency_in_flight_s
        idem = Idempotency(session, idempotency_key, scope, fingerprint, in_flight_s)
        replay = idem.begin()
    except BadIdempotencyKey as err:
        raise Problem(400, "Bad Idempotency-Key", str(err)) from None
    except IdempotencyMismatch as err:
        raise Problem(422, "Idempotency-Key reused", str(err), "idempotency-mismatch") from None
    except IdempotencyInFlight as err:
        raise Problem(409, "Request in progress", str(err), "idempotency-in-flight") from None
    if replay is not None:
        headers = {"Location": replay.location} if replay.location else None
        response = JSONResponse(replay.body, status_code=replay.status_code, headers=headers)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        written = write()
    except Exception:
        idem.abandon()
        raise
    body, location = answer(written)
    idem.store(body, 202, location)
    return JSONResponse(
        body, status_code=202, headers={"Location": location, "Retry-After": RETRY_AFTER_S}
    )


def check_quota(session: Session, caller: Caller, new_jobs: int) -> None:
    """429 when the caller's queued and running jobs plus `new_jobs` pass its quota. Holds the
    key's quota lock from the count to the commit of the caller's insert (lock_key_quota)."""
    if caller.scope.key_id is None:
        return  # auth off: no keys, no quotas
    quota = get_settings().max_open_jobs_per_key
    lock_key_quota(session, caller.scope.key_id)
    waiting = open_jobs(session, caller.scope.key_id)
    if waiting + new_jobs > quota:
        problem = Problem(
            429, "Quota exceeded",
            f"{waiting} jobs of this key are queued or running and {new_jobs} more were asked "
            f"for; the quota is {quota}: retry when some have finished", "quota",
        )  # fmt: skip
        problem.headers = {"Retry-After": "60"}
        raise problem


def accept_job(
    session: Session,
    caller: Caller,
    idempotency_key: str | None,
    request: BaseModel,
    payload: JobPayload,
    out: type[JobState],
    location_base: str,
) -> JSONResponse:
    """accept_queued for one job: write it, enqueue it, answer its state (`out`) at
    `location_base/<id>`; the idempotency fingerprint is the request body."""

    def write() -> Job:
        check_quota(session, caller, 1)
        return create_job(session, payload, caller.scope.key_id)

    def answer(job: Job) -> tuple[dict, str]:
        enqueue([job.id])
        return out(**job_state(job)).model_dump(mode="json"), f"{location_base}/{job.id}"

    return accept_queued(
        session, idempotency_key, f"{caller.prefix}:POST:{location_base}",
        request.model_dump_json().encode(), write, answer,
    )  # fmt: skip


def find_job(session: Session, job_id: str, kind: str, caller: Caller) -> Job | None:
    """The job of that id and kind if the caller may see it."""
    job = session.get(Job, job_id)
    if job is None or job.kind != kind or not caller.scope.sees(job.owner_key_id):
        return None
    return job


def job_state(job: Job) -> dict:
    return JobState(
        id=job.id,
        status=job.status,
        error=job.error,
        deliveries=job.deliveries,
        created_at=as_aware(job.created_at),
        started_at=as_aware(job.started_at),
        finished_at=as_aware(job.finished_at),
        audit_id=job.audit_id,
    ).model_dump()
