"""Helpers for the job-backed resources (diagnoses, steering): submit and describe."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.idempotency import Idempotency
from service.models import Job, JobKind
from service.report_store import as_aware
from api.schemas import JobState
from service.submissions import create_job
from workers.queue import enqueue

RETRY_AFTER_S = "5"


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


def submit(
    idem: Idempotency, kind: JobKind, payload: dict, location_base: str, out: type[BaseModel]
) -> JSONResponse:
    """Write the job, enqueue it, answer 202 + Location (replaying a stored answer if any)."""
    if (replay := idem.begin()) is not None:
        return replay
    try:
        job = create_job(idem.session, kind, payload)
    except Exception:
        idem.abandon()
        raise
    enqueue([job.id])
    location = f"{location_base}/{job.id}"
    body = out.model_validate(job_state(job)).model_dump(mode="json")
    idem.store(body, 202, location)
    return JSONResponse(
        body, status_code=202, headers={"Location": location, "Retry-After": RETRY_AFTER_S}
    )
