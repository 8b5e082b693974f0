"""GET /v1/reports (paginated, filtered) and GET /v1/reports/{id}."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import CallerKey
from api.deps import SessionDep
from api.problem_details import ITEM_PROBLEMS, READ_PROBLEMS, not_found
from api.schemas import MAX_OFFSET, Page
from diagnostics.failure_classes import FailureClass
from service.report_queries import (
    ReportFilters,
    ReportSummary,
    StoredReport,
    list_reports,
    stored_report,
)
from service.validation import INT32_MAX, Text

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get("", response_model=Page[ReportSummary], responses=READ_PROBLEMS)
def get_reports(
    session: SessionDep,
    caller: CallerKey,
    correct: bool | None = None,
    failure_class: FailureClass | None = None,
    feature: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="Flagged feature id.")
    ] = None,
    label: Annotated[
        Text | None, Query(max_length=200, description="Text in a flagged feature's label.")
    ] = None,
    audit_id: Annotated[Text | None, Query(max_length=36)] = None,
    model_id: Annotated[Text | None, Query(max_length=300)] = None,
    sae_id: Annotated[Text | None, Query(max_length=300)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Page[ReportSummary]:
    """Stored drift reports, newest first."""
    filters = ReportFilters(
        correct=correct,
        failure_class=failure_class.value if failure_class else None,
        feature=feature,
        label=label,
        audit_id=audit_id,
        model_id=model_id,
        sae_id=sae_id,
        created_after=created_after,
        created_before=created_before,
    )
    rows, count = list_reports(session, filters, scope=caller.scope, limit=limit, offset=offset)
    return Page[ReportSummary](data=rows, count=count, limit=limit, offset=offset)


@router.get("/{report_id}", response_model=StoredReport, responses=ITEM_PROBLEMS)
def get_report(report_id: str, session: SessionDep, caller: CallerKey) -> StoredReport:
    """One drift report in full."""
    stored = stored_report(session, report_id, scope=caller.scope)
    if stored is None:
        raise not_found("report", report_id)
    return stored
