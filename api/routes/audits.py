"""Bulk audits: POST /v1/audits (upload or named dataset), progress, summary and exports."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api.atlas_cache import concept_basis_of
from api.auth import Caller, CallerKey
from api.deps import IdempotencyKey, SessionDep, SettingsDep
from api.problem_details import ITEM_PROBLEMS, READ_PROBLEMS, WRITE_PROBLEMS, Problem, not_found
from api.routes.jobs import CANCEL_PROBLEMS
from api.routes.queued import accept_queued, check_quota
from api.schemas import MAX_OFFSET, Page
from diagnostics.answers import AnswerMode
from diagnostics.options import DiagnosisOptions
from service.audit_progress import AuditProgress, audit_progress, find_audit, recent_audits
from service.audit_summary import (
    audit_frames,
    export_frame,
    summarize,
    to_csv_bytes,
    to_parquet_bytes,
)
from service.cancellation import cancel_audit
from service.datasets import (
    DatasetError,
    audit_extra,
    parse_dataset,
    read_dataset_file,
    sample_items,
)
from service.models import Audit
from service.submissions import create_audit
from service.trace_summary import recurring_supernodes, traced_failures
from service.validation import INT32_MAX, INT64_MAX, Text
from workers.queue import enqueue

router = APIRouter(prefix="/v1/audits", tags=["audits"])


@router.post("", status_code=202, response_model=AuditProgress, responses=WRITE_PROBLEMS)
def create_audit_route(
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerKey,
    file: Annotated[
        UploadFile | None,
        File(
            description="JSONL or CSV: GSM8K or prompt/expected; or an lm-eval --log_samples "
            "file, whose failures under `filter` are diagnosed on the harness's responses."
        ),
    ] = None,
    dataset: Annotated[
        Text | None,
        Form(max_length=200, description="A dataset name the server is configured with."),
    ] = None,
    filter: Annotated[
        str | None,
        Form(
            max_length=100,
            description="lm-eval samples files: the filter whose failures are audited "
            "(strict-match, flexible-extract; default strict-match).",
        ),
    ] = None,
    limit: Annotated[int | None, Form(ge=1, le=INT32_MAX)] = None,
    sample: Annotated[Literal["first", "random"], Form()] = "first",
    seed: Annotated[int, Form(ge=0, le=INT64_MAX)] = 0,
    name: Annotated[Text, Form(max_length=200)] = "",
    mode: Annotated[AnswerMode | None, Form(description="Answer mode.")] = None,
    options: Annotated[
        Text | None, Form(max_length=100_000, description="DiagnosisOptions as JSON.")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue one diagnosis per problem; poll the Location for progress."""
    if (file is None) == (dataset is None):
        raise Problem(422, "Invalid request", "send either a file or a dataset name", "validation")
    opts = _options(options, mode)
    if file is not None:
        data = file.file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise Problem(
                413,
                "Too large",
                f"uploads are limited to {settings.max_upload_bytes} bytes",
                "too-large",
            )
        source = file.filename or "upload"
        try:
            parsed = parse_dataset(
                data, source, max_prompt_chars=settings.max_prompt_chars, filter_name=filter
            )
        except DatasetError as err:
            raise Problem(422, "Invalid dataset", str(err), "invalid-dataset") from None
        content_hash = hashlib.sha256(data).hexdigest()
    else:
        path = settings.datasets.get(dataset or "")
        if path is None or not path.is_file():
            raise Problem(
                422,
                "Unknown dataset",
                f"known datasets: {', '.join(sorted(settings.datasets))}",
                "unknown-dataset",
            )
        source = f"dataset:{dataset}"
        try:
            parsed = read_dataset_file(
                path, max_prompt_chars=settings.max_prompt_chars, filter_name=filter
            )
        except DatasetError as err:
            raise Problem(422, "Invalid dataset", f"{dataset}: {err}", "invalid-dataset") from None
        content_hash = source
    chosen = sample_items(parsed.items, limit, sample, seed)
    opts = parsed.options_for(opts)
    if len(chosen) > settings.max_audit_items:
        raise Problem(
            413, "Too large",
            f"{len(chosen)} problems; audits are limited to {settings.max_audit_items} (use limit)",
            "too-large",
        )  # fmt: skip
    fingerprint = json.dumps(
        [content_hash, filter, limit, sample, seed, name, opts.model_dump(mode="json")]
    ).encode()

    def write():
        check_quota(session, caller, len(chosen))
        return create_audit(
            session, chosen, opts, name=name, source=source,
            extra=audit_extra(parsed, limit, sample, seed),
            owner_key_id=caller.scope.key_id,
        )  # fmt: skip

    def answer(written) -> tuple[dict, str]:
        audit, job_ids = written
        enqueue(job_ids)
        return audit_progress(session, audit).model_dump(mode="json"), f"/v1/audits/{audit.id}"

    return accept_queued(
        session, idempotency_key, f"{caller.prefix}:POST:/v1/audits", fingerprint, write, answer
    )


def _options(raw: str | None, mode: str | None) -> DiagnosisOptions:
    try:
        opts = DiagnosisOptions.model_validate_json(raw) if raw else DiagnosisOptions()
        if mode is not None:
            opts = DiagnosisOptions.model_validate(opts.model_dump() | {"mode": mode})
    except ValidationError as err:
        raise Problem(
            422,
            "Invalid options",
            str(err).splitlines()[0],
            "validation",
            errors=json.loads(err.json(include_url=False)),
        ) from None
    return opts


@router.get("", response_model=Page[AuditProgress], responses=READ_PROBLEMS)
def list_audits(
    session: SessionDep,
    caller: CallerKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[AuditProgress]:
    """Audits, newest first, with their progress."""
    audits, count = recent_audits(session, scope=caller.scope, limit=limit, offset=offset)
    return Page[AuditProgress](data=audits, count=count, limit=limit, offset=offset)


def _audit(session, audit_id: str, caller: Caller) -> Audit:
    audit = find_audit(session, audit_id, scope=caller.scope)
    if audit is None:
        raise not_found("audit", audit_id)
    return audit


@router.get("/{audit_id}", response_model=AuditProgress, responses=ITEM_PROBLEMS)
def get_audit(audit_id: str, session: SessionDep, caller: CallerKey) -> AuditProgress:
    """Progress: done / failed / queued / running of total, and an ETA."""
    return audit_progress(session, _audit(session, audit_id, caller))


@router.post("/{audit_id}/cancel", response_model=AuditProgress, responses=CANCEL_PROBLEMS)
def cancel_audit_route(audit_id: str, session: SessionDep, caller: CallerKey) -> AuditProgress:
    """Cancel every queued and running job of the audit (running ones stop at their next stage
    boundary); what is done stays. Only its owner (or an admin key) may; 409 once it has
    finished."""
    audit = _audit(session, audit_id, caller)
    if not cancel_audit(session, audit_id):
        raise Problem(
            409, "Already finished", "the audit has no queued or running job", "already-finished"
        )
    session.refresh(audit)
    return audit_progress(session, audit)


@router.get("/{audit_id}/summary", responses=ITEM_PROBLEMS)
def get_audit_summary(
    audit_id: str, session: SessionDep, settings: SettingsDep, caller: CallerKey
) -> dict:
    """What the audit found, first: first errors by kind (an example step each), responsible
    spans by kind, then only the recurring concepts whose ablation beats the selection-matched
    null (with feature cards and fix/flip counts against it); accuracy and failure classes
    (see service.audit_summary.summarize); and the supernodes recurring across traced failures
    (service.trace_summary)."""
    audit = _audit(session, audit_id, caller)
    items, features = audit_frames(session, audit_id)
    return (
        {"progress": audit_progress(session, audit).model_dump(mode="json")}
        | summarize(items, features, concept_basis_of(settings))
        | {"trace_supernodes": recurring_supernodes(traced_failures(session, audit_id))}
    )


@router.get(
    "/{audit_id}/export",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}}
    | ITEM_PROBLEMS,
)
def export_audit(
    audit_id: str,
    session: SessionDep,
    caller: CallerKey,
    format: Literal["csv", "parquet"] = "csv",
) -> Response:
    """One row per problem (status, answer, failure class, flagged features) as CSV or Parquet."""
    _audit(session, audit_id, caller)
    frame = export_frame(*audit_frames(session, audit_id))
    if format == "parquet":
        body, media = to_parquet_bytes(frame), "application/vnd.apache.parquet"
    else:
        body, media = to_csv_bytes(frame), "text/csv; charset=utf-8"
    filename = f"audit-{audit_id}.{format}"
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
