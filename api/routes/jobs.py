"""POST /v1/jobs/{id}/cancel: cancel a queued or running job of any kind (diagnosis, steering,
feature search) by its id, the id its POST answered."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import CallerKey
from api.deps import SessionDep
from api.problem_details import Problem, not_found, problems
from api.routes.queued import job_state
from api.schemas import JobState
from service.cancellation import cancel_job
from service.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
CANCEL_PROBLEMS = problems(401, 404, 409, 422, 429, 503)
CANCEL_PROBLEMS[409] = CANCEL_PROBLEMS[409] | {
    "description": "The work has already finished (done, failed or cancelled): nothing to cancel."
}


@router.post("/{job_id}/cancel", response_model=JobState, responses=CANCEL_PROBLEMS)
def cancel(job_id: str, session: SessionDep, caller: CallerKey) -> JobState:
    """Cancel the job: a queued one never runs; a running one stops at its next stage boundary
    and stores nothing. Only its owner (or an admin key) may; 409 once it has finished."""
    job = session.get(Job, job_id)
    if job is None or not caller.scope.sees(job.owner_key_id):
        raise not_found("job", job_id)
    if not cancel_job(session, job_id):
        raise Problem(409, "Already finished", f"the job is {job.status}", "already-finished")
    session.refresh(job)
    return JobState(**job_state(job))
