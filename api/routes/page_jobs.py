"""Pages that start work and follow it: the feature index and its searches, steering from a
feature page, the forms that submit a diagnosis or upload an audit, and the pages of queued and
running jobs (they refresh themselves until the job is done; the CSP runs no script).

The forms go through the same route functions as the API (validation, limits, idempotency scope),
so there is one way to submit each kind of work; a form posted from another site is refused."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, func, select

from api.atlas_cache import atlas_of, transcoder_atlas_of
from api.deps import SessionDep, SettingsDep
from api.pages.auth import PageCaller, same_origin
from api.pages.templating import render
from api.problem_details import Problem, not_found
from api.routes.audits import cancel_audit_route, create_audit_route
from api.routes.diagnoses import create_diagnosis
from api.routes.jobs import cancel as cancel_job_route
from api.routes.queued import accept_job, find_job
from api.routes.steer import create_steering
from api.schemas import DiagnosisRequest, JobState, SteerRequest
from diagnostics.answers import ANSWER_MODES
from diagnostics.atlas.store import AtlasError
from diagnostics.atlas.transcoder_atlas import feature_id
from diagnostics.options import DiagnosisOptions
from service.audit_progress import typical_job_seconds
from service.db import as_aware
from service.job_payloads import SearchPayload, read_payload
from service.models import TERMINAL, Job, JobKind, JobStatus, Report, ReportFeature
from service.ownership import Scope
from service.validation import INT32_MAX, text_problem, whole_number

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
REFRESH_S = 3  # a job page reloads itself this often until the job is finished
INDEX_SHOWN = 50


def _check_origin(request: Request) -> None:
    if not same_origin(request):
        raise Problem(403, "Forbidden", "the form was posted from another site")


def _invalid(err: ValidationError) -> Problem:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "form"
    return Problem(422, "Invalid request", f"{where}: {first['msg']}", "validation")


def _created_id(response: Response) -> str:
    """The id at the end of a 202's Location."""
    return response.headers["Location"].rsplit("/", 1)[-1]


def _job(session: Session, job_id: str, kind: JobKind, caller) -> Job:
    """The caller's job of that id and kind (another key's is not found, as in the API)."""
    job = find_job(session, job_id, str(kind), caller)
    if job is None:
        raise not_found(str(kind), job_id)
    return job


def job_progress(session: Session, job: Job, scope: Scope) -> dict:
    """Where a job stands: its status, time queued or running, the jobs `scope` sees ahead of it
    (another key's work is not told, not even as a count), an ETA from the median duration of
    the last finished jobs of its kind."""
    now = datetime.now(UTC)
    typical = typical_job_seconds(session, JobKind(job.kind))
    ahead = 0
    if job.status == JobStatus.queued:
        ahead = session.exec(
            select(func.count())
            .select_from(Job)
            .where(Job.status.in_([str(JobStatus.queued), str(JobStatus.running)]))  # type: ignore[union-attr]
            .where(Job.created_at < job.created_at)
            .where(*scope.clauses(Job.__table__.c.owner_key_id))
        ).one()
    started = as_aware(job.started_at)
    elapsed = (now - started).total_seconds() if started and job.status == "running" else None
    eta = None
    if typical is not None and job.status in (JobStatus.queued, JobStatus.running):
        eta = max(0.0, typical - (elapsed or 0.0)) + (ahead * typical)
    return {
        "status": job.status,
        "ahead": int(ahead),
        "elapsed_s": elapsed,
        "typical_s": typical,
        "eta_s": eta,
        "finished": job.status in TERMINAL,
    }


def _job_page(
    request: Request, template: str, job: Job, session: Session, scope: Scope, **context
) -> Response:
    progress = job_progress(session, job, scope)
    context = {"job": job, "progress": progress, "refresh_s": REFRESH_S} | context
    return render(request, template, context)


# -- features ---------------------------------------------------------------------------------
@router.get("/features")
def features_index(
    request: Request, session: SessionDep, settings: SettingsDep, caller: PageCaller, q: str = ""
) -> Response:
    """The latents: a label search over the atlas (and over the transcoder set's atlas, ids
    layer/feature), the search by text (contrastive), and the latents flagged most often in the
    stored reports the caller sees."""
    atlas = atlas_of(settings)
    q = q.strip()[:200]
    matches = []
    if q and atlas is not None:
        matches = [_atlas_row(atlas, i) for i in atlas.search_label(q)[:INDEX_SHOWN]]
    rf, r = ReportFeature.__table__.c, Report.__table__.c
    flagged = session.execute(
        select(rf.feature_id, func.count(func.distinct(rf.report_id)).label("n"))
        .join(Report.__table__, r.id == rf.report_id)
        .where(*caller.scope.clauses(r.owner_key_id))
        .group_by(rf.feature_id)
        .order_by(func.count(func.distinct(rf.report_id)).desc(), rf.feature_id)
        .limit(INDEX_SHOWN)
    ).all()
    often = []
    for fid, n in flagged:
        row = _atlas_row(atlas, fid) if atlas is not None and fid < atlas.d_sae else None
        label = row["label"] if row else _stored_label(session, fid, caller.scope)
        often.append({"id": fid, "n_reports": n, "label": label, "generic": row and row["generic"]})
    tc_atlas, tc_matches = transcoder_atlas_of(settings), []
    if q and tc_atlas is not None:
        try:
            tc_matches = [
                _atlas_row(tc_atlas.layer(layer), i) | {"id": feature_id(layer, i)}
                for layer, i in tc_atlas.search_label(q)[:INDEX_SHOWN]
            ]
        except AtlasError:  # built for another set: logged, searched as if absent
            log.exception("the transcoder atlas cannot be searched")
            tc_atlas = None
    return render(
        request,
        "features.html",
        {"q": q, "matches": matches, "often": often, "has_atlas": atlas is not None,
         "tc_matches": tc_matches, "has_tc_atlas": tc_atlas is not None,
         "transcoders": settings.transcoders},
    )  # fmt: skip


def _atlas_row(atlas, fid: int) -> dict:
    return {"id": fid, "label": atlas.label(fid), "generic": atlas.generic_reason(fid)}


def _stored_label(session: Session, fid: int, scope: Scope) -> str:
    """The label a report `scope` sees stored for latent `fid` ('' when none)."""
    return (
        session.exec(
            select(ReportFeature.label)
            .join(Report, Report.id == ReportFeature.report_id)  # type: ignore[arg-type]
            .where(ReportFeature.feature_id == fid, ReportFeature.label != "")
            .where(*scope.clauses(Report.__table__.c.owner_key_id))
            .limit(1)
        ).first()
        or ""
    )


@router.post("/features/search")
def features_search(
    request: Request,
    session: SessionDep,
    caller: PageCaller,
    text: Annotated[str, Form(max_length=4000)],
    versus: Annotated[str, Form(max_length=4000)] = "",
    top: Annotated[int, Form(ge=1, le=200)] = 20,
) -> Response:
    """Queue a search by text (minus `versus`), as `driftscope features search`; 303 to it."""
    _check_origin(request)
    if not text.strip():
        raise Problem(422, "Invalid request", "text: give the text the features fire on")
    try:
        payload = SearchPayload(text=text, versus=versus.strip() or None, top=top)
    except ValidationError as err:
        raise _invalid(err) from None
    response = accept_job(session, caller, None, payload, payload, JobState, "/features/search")
    return RedirectResponse(f"/features/search/{_created_id(response)}", status_code=303)


@router.get("/features/search/{job_id}")
def features_search_page(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep, caller: PageCaller
) -> Response:
    job = _job(session, job_id, JobKind.search, caller)
    payload = read_payload(job.kind, job.payload)
    hits = (job.result or {}).get("hits", [])
    return _job_page(request, "search.html", job, session, caller.scope, query=payload, hits=hits)


@router.post("/features/{feature_id}/steer")
def feature_steer(
    feature_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: PageCaller,
    prompt: Annotated[str, Form(max_length=8000)],
    clamp: Annotated[float, Form(ge=-100, le=100)] = 5.0,
    max_new_tokens: Annotated[int, Form(ge=1, le=200)] = 40,
    chat: Annotated[bool, Form()] = False,
) -> Response:
    """Queue POST /v1/steer with this latent clamped; 303 to the run's page."""
    _check_origin(request)
    try:
        body = SteerRequest(
            prompt=prompt, clamps={feature_id: clamp}, max_new_tokens=max_new_tokens, chat=chat
        )
    except ValidationError as err:
        raise _invalid(err) from None
    response = create_steering(body, session, settings, caller, None)
    return RedirectResponse(f"/steer/{_created_id(response)}", status_code=303)


@router.get("/steer/{job_id}")
def steer_page(job_id: str, request: Request, session: SessionDep, caller: PageCaller) -> Response:
    """A steering run: the unsteered and the steered text side by side once it is done."""
    job = _job(session, job_id, JobKind.steer, caller)
    payload = read_payload(job.kind, job.payload)
    return _job_page(
        request, "steer.html", job, session, caller.scope, query=payload, result=job.result
    )


# -- diagnoses --------------------------------------------------------------------------------
def _form_options(*, chat: bool, verify: bool, **fields: str) -> DiagnosisOptions:
    """The cost options of a form (empty fields: the defaults), validated like the API's."""
    given = {name: value.strip() for name, value in fields.items() if value.strip()}
    return DiagnosisOptions.model_validate({"chat": chat, "verify": verify} | given)


@router.get("/diagnoses/new")
def diagnosis_form(request: Request, _: PageCaller) -> Response:
    return render(request, "diagnose.html", {"modes": ANSWER_MODES})


@router.post("/diagnoses/new")
def submit_diagnosis(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: PageCaller,
    prompt: Annotated[str, Form()],
    expected: Annotated[str, Form()],
    reference: Annotated[str, Form()] = "",
    output: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "",
    chat: Annotated[bool, Form()] = False,
    pattern: Annotated[str, Form()] = "",
    max_new_tokens: Annotated[str, Form()] = "",
    null_draws: Annotated[str, Form()] = "",
    verify: Annotated[bool, Form()] = False,
) -> Response:
    """The form's diagnosis, queued as POST /v1/diagnoses (validated as it is); 303 to its
    page."""
    _check_origin(request)
    try:
        body = DiagnosisRequest(
            prompt=prompt,
            expected=expected,
            reference=reference.strip() or None,
            output=output or None,
            mode=mode or None,
            options=_form_options(
                chat=chat, verify=verify, pattern=pattern, max_new_tokens=max_new_tokens,
                null_draws=null_draws,
            ),
        )  # fmt: skip
    except ValidationError as err:
        raise _invalid(err) from None
    response = create_diagnosis(body, session, settings, caller, None)
    return RedirectResponse(f"/diagnoses/{_created_id(response)}", status_code=303)


@router.get("/diagnoses/{job_id}")
def diagnosis_page(
    job_id: str, request: Request, session: SessionDep, caller: PageCaller
) -> Response:
    """A diagnosis: its progress while queued or running, then a link to (303: on to) its
    report; a failed one shows its error."""
    job = _job(session, job_id, JobKind.diagnosis, caller)
    report_id = session.exec(select(Report.id).where(Report.job_id == job.id)).first()
    if report_id is not None:
        return RedirectResponse(f"/reports/{report_id}", status_code=303)
    payload = read_payload(job.kind, job.payload)
    return _job_page(request, "diagnosis.html", job, session, caller.scope, query=payload)


# -- audits -----------------------------------------------------------------------------------
@router.get("/audits/new")
def audit_form(request: Request, settings: SettingsDep, _: PageCaller) -> Response:
    return render(
        request, "audit_new.html", {"datasets": sorted(settings.datasets), "modes": ANSWER_MODES}
    )


@router.post("/audits/new")
def submit_audit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: PageCaller,
    file: Annotated[UploadFile | None, File()] = None,
    dataset: Annotated[str, Form()] = "",
    filter: Annotated[str, Form(max_length=100)] = "",
    limit: Annotated[str, Form()] = "",
    sample: Annotated[Literal["first", "random"], Form()] = "first",
    name: Annotated[str, Form(max_length=200)] = "",
    mode: Annotated[str, Form()] = "",
    pattern: Annotated[str, Form()] = "",
    max_new_tokens: Annotated[str, Form()] = "",
    null_draws: Annotated[str, Form()] = "",
    verify: Annotated[bool, Form()] = False,
) -> Response:
    """The form's upload (or named dataset), queued as POST /v1/audits with the same checks
    (text, bounds, options); 303 to the audit."""
    _check_origin(request)
    if file is not None and not file.filename:
        file = None  # the file field left empty
    for field, value in (("dataset", dataset), ("filter", filter), ("name", name)):
        if (problem := text_problem(value)) is not None:
            raise Problem(422, "Invalid request", f"{field}: {problem}", "validation")
    count = whole_number(limit, 1, INT32_MAX) if limit.strip() else None
    if limit.strip() and count is None:
        raise Problem(
            422, "Invalid request",
            f"limit={limit[:40]!r}: expected a whole number from 1 to {INT32_MAX}", "validation",
        )  # fmt: skip
    try:
        options = _form_options(
            chat=True, verify=verify, pattern=pattern, max_new_tokens=max_new_tokens,
            null_draws=null_draws,
        )  # fmt: skip
    except ValidationError as err:
        raise _invalid(err) from None
    response = create_audit_route(
        session, settings, caller, file=file, dataset=dataset or None, filter=filter or None,
        limit=count, sample=sample, seed=0, name=name, mode=mode or None,
        options=options.model_dump_json(exclude={"chat"}),
    )  # fmt: skip
    return RedirectResponse(f"/audits/{_created_id(response)}", status_code=303)


# -- cancelling ---------------------------------------------------------------------------------
JOB_PAGE = {"diagnosis": "/diagnoses", "steer": "/steer", "search": "/features/search"}


@router.post("/jobs/{job_id}/cancel")
def cancel_job_form(
    job_id: str, request: Request, session: SessionDep, caller: PageCaller
) -> Response:
    """The job page's Cancel button: POST /v1/jobs/{id}/cancel, then back to the job's page."""
    _check_origin(request)
    job = cancel_job_route(job_id, session, caller)
    return RedirectResponse(f"{JOB_PAGE[session.get(Job, job.id).kind]}/{job_id}", status_code=303)


@router.post("/audits/{audit_id}/cancel")
def cancel_audit_form(
    audit_id: str, request: Request, session: SessionDep, caller: PageCaller
) -> Response:
    """The audit page's Cancel button: POST /v1/audits/{id}/cancel, then back to the audit."""
    _check_origin(request)
    cancel_audit_route(audit_id, session, caller)
    return RedirectResponse(f"/audits/{audit_id}", status_code=303)
