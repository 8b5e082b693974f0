"""The report list's query string, parsed leniently (an HTML form sends empty fields) into the
same ReportFilters that GET /v1/reports uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from api.schemas import MAX_OFFSET
from diagnostics.failure_classes import FailureClass
from service.report_queries import ReportFilters

PAGE_SIZE = 50


@dataclass
class ListQuery:
    """Filters and page of the report list, plus the form values to show back."""

    filters: ReportFilters
    offset: int = 0
    limit: int = PAGE_SIZE
    form: dict[str, str] = field(default_factory=dict)


def _int(raw: str | None, low: int, high: int) -> int | None:
    raw = (raw or "").strip()
    if not raw.isdigit():
        return None
    return min(max(int(raw), low), high)


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Known, well-formed parameters become filters; anything else is ignored."""
    correct = {"true": True, "false": False}.get((params.get("correct") or "").lower())
    failure = params.get("failure_class") or ""
    failure = failure if failure in FailureClass.__members__ else ""
    feature = _int(params.get("feature"), 0, 2**31 - 1)
    label = (params.get("label") or "").strip()[:200]
    audit_id = (params.get("audit_id") or "").strip()[:36]
    filters = ReportFilters(
        correct=correct,
        failure_class=failure or None,
        feature=feature,
        label=label or None,
        audit_id=audit_id or None,
    )
    form = {
        "correct": "" if correct is None else str(correct).lower(),
        "failure_class": failure,
        "feature": "" if feature is None else str(feature),
        "label": label,
        "audit_id": audit_id,
    }
    return ListQuery(
        filters=filters,
        offset=_int(params.get("offset"), 0, MAX_OFFSET) or 0,
        limit=_int(params.get("limit"), 1, 200) or PAGE_SIZE,
        form=form,
    )
