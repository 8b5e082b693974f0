"""POST /v1/diagnoses (202 + Location) and GET /v1/diagnoses/{id} (status and report)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import select

from api.auth import CallerKey
from api.deps import IdempotencyKey, SessionDep, SettingsDep
from api.problem_details import ITEM_PROBLEMS, WRITE_PROBLEMS, check_text_length, not_found
from api.routes.queued import accept_job, find_job, job_state
from api.schemas import Diagnosis, DiagnosisRequest
from service.job_payloads import DiagnosisPayload
from service.models import JobKind, Report
from service.report_store import load_report

router = APIRouter(prefix="/v1/diagnoses", tags=["diagnoses"])


@router.post(
    "",
    status_code=202,
    response_model=Diagnosis,
    responses={202: {"headers": {"Location": {"description": "The diagnosis resource."}}}}
    | WRITE_PROBLEMS,
)
def create_diagnosis(
    body: DiagnosisRequest,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerKey,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue a diagnosis of a (failing) prompt; poll the Location for status and report."""
    check_text_length(
        settings.max_prompt_chars, prompt=body.prompt, reference=body.reference, output=body.output
    )
    payload = DiagnosisPayload(
        prompt=body.prompt,
        expected=body.expected,
        reference=body.reference,
        output=body.output,
        options=body.resolved_options(),
    )
    return accept_job(session, caller, idempotency_key, body, payload, Diagnosis, "/v1/diagnoses")


@router.get("/{diagnosis_id}", response_model=Diagnosis, responses=ITEM_PROBLEMS)
def get_diagnosis(diagnosis_id: str, session: SessionDep, caller: CallerKey) -> Diagnosis:
    """The diagnosis job's status and, once done, its drift report."""
    job = find_job(session, diagnosis_id, JobKind.diagnosis, caller)
    if job is None:
        raise not_found("diagnosis", diagnosis_id)
    report = session.exec(select(Report).where(Report.job_id == job.id)).first()
    return Diagnosis(
        **job_state(job),
        report_id=report.id if report else None,
        report=load_report(report.body) if report else None,
    )
