"""The report list's query string, parsed into the same ReportFilters that GET /v1/reports uses.

An HTML form sends empty fields, so an empty value means "any"; a value that is there but not
well-formed (`feature=abc`, `correct=maybe`, an unknown failure class or sort key) is a 422
problem naming the parameter, never silently dropped (which would show every row)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from api.problem_details import Problem
from api.schemas import MAX_OFFSET
from diagnostics.failure_classes import FailureClass
from service.report_queries import SORT_KEYS, ReportFilters
from service.validation import whole_number

PAGE_SIZE = 50
DEFAULT_SORT = "-created"


@dataclass
class ListQuery:
    """Filters, order and page of the report list, plus the form values to show back."""

    filters: ReportFilters
    offset: int = 0
    limit: int = PAGE_SIZE
    sort: str = DEFAULT_SORT
    form: dict[str, str] = field(default_factory=dict)


def _bad(name: str, raw: str, expected: str) -> Problem:
    return Problem(422, "Invalid filter", f"{name}={raw!r}: {expected}", "invalid-filter")


def _int(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    value = whole_number(raw, low, high)
    if value is None:
        raise _bad(name, raw[:40], f"expected a whole number from {low} to {high}")
    return value


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """The filters, sort and page in `params` (empty values: not filtered)."""
    raw_correct = (params.get("correct") or "").strip().lower()
    if raw_correct not in ("", "true", "false"):
        raise _bad("correct", raw_correct, "expected true, false or empty")
    correct = {"true": True, "false": False}.get(raw_correct)
    failure = (params.get("failure_class") or "").strip()
    if failure and failure not in FailureClass.__members__:
        raise _bad("failure_class", failure, f"one of {', '.join(FailureClass.__members__)}")
    feature = _int(params, "feature", 0, 2**31 - 1)
    label = (params.get("label") or "").strip()[:200]
    audit_id = (params.get("audit_id") or "").strip()[:36]
    sort = (params.get("sort") or "").strip() or DEFAULT_SORT
    if sort.lstrip("-") not in SORT_KEYS:
        keys = ", ".join(SORT_KEYS)
        raise _bad("sort", sort, f"one of {keys}, each optionally prefixed by - (descending)")
    filters = ReportFilters(
        correct=correct,
        failure_class=failure or None,
        feature=feature,
        label=label or None,
        audit_id=audit_id or None,
    )
    form = {
        "correct": raw_correct,
        "failure_class": failure,
        "feature": "" if feature is None else str(feature),
        "label": label,
        "audit_id": audit_id,
    }
    return ListQuery(
        filters=filters,
        offset=_int(params, "offset", 0, MAX_OFFSET) or 0,
        limit=_int(params, "limit", 1, 200) or PAGE_SIZE,
        sort=sort,
        form=form,
    )
