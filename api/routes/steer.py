"""POST /v1/steer (202 + Location) and GET /v1/steer/{id}: generation with features clamped."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import CallerKey
from api.deps import IdempotencyKey, SessionDep, SettingsDep
from api.problem_details import ITEM_PROBLEMS, WRITE_PROBLEMS, check_text_length, not_found
from api.routes.queued import accept_job, find_job, job_state
from api.schemas import Steering, SteerRequest
from service.models import JobKind

router = APIRouter(prefix="/v1/steer", tags=["steering"])


@router.post("", status_code=202, response_model=Steering, responses=WRITE_PROBLEMS)
def create_steering(
    body: SteerRequest,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerKey,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue a steered + unsteered greedy generation (clamps are multiples of max activation)."""
    check_text_length(settings.max_prompt_chars, prompt=body.prompt)
    return accept_job(session, caller, idempotency_key, body, body, Steering, "/v1/steer")


@router.get("/{steer_id}", response_model=Steering, responses=ITEM_PROBLEMS)
def get_steering(steer_id: str, session: SessionDep, caller: CallerKey) -> Steering:
    job = find_job(session, steer_id, JobKind.steer, caller)
    if job is None:
        raise not_found("steering run", steer_id)
    return Steering(**job_state(job), result=job.result)
