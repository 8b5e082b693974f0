"""Request and response bodies of the HTTP API (the OpenAPI contract).

Bodies the service layer builds are defined next to the code that builds them and used here:
ReportSummary and StoredReport (service.report_queries), AuditProgress (service.audit_progress),
and the steering request, which is the steering job's payload (service.job_payloads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field, model_validator

from diagnostics.answers import AnswerMode
from diagnostics.options import DiagnosisOptions
from diagnostics.report import DriftReport
from service.job_payloads import PROMPT_HARD_LIMIT, SteerPayload
from service.report_queries import ReportSummary
from service.validation import NonBlankText, Text

T = TypeVar("T")
MAX_OFFSET = 1_000_000  # deepest page offset of a list


class DiagnosisRequest(BaseModel):
    """A failing prompt and the answer it should have produced."""

    prompt: NonBlankText = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    expected: NonBlankText = Field(min_length=1, max_length=1_000)
    reference: Text | None = Field(
        None, max_length=PROMPT_HARD_LIMIT, description="Worked solution."
    )
    output: Text | None = Field(
        None,
        max_length=PROMPT_HARD_LIMIT,
        description="A response to diagnose as given (from an eval run, a sampled run, another "
        "server) instead of generating one; the report says whether greedy decoding gives it.",
    )
    mode: AnswerMode | None = Field(None, description="Answer mode (shortcut for options.mode).")
    options: DiagnosisOptions = Field(default_factory=DiagnosisOptions)

    @model_validator(mode="after")
    def _options_with_mode(self) -> DiagnosisRequest:
        """The `mode` shortcut must fit the options (mode 'regex' needs options.pattern)."""
        self.resolved_options()
        return self

    def resolved_options(self) -> DiagnosisOptions:
        if not self.mode:
            return self.options
        return DiagnosisOptions.model_validate(self.options.model_dump() | {"mode": self.mode})


class JobState(BaseModel):
    id: str
    status: str
    error: str | None = None
    deliveries: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    audit_id: str | None = None


class Diagnosis(JobState):
    """A diagnosis job and, once done, its drift report."""

    report_id: str | None = None
    report: DriftReport | None = None


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int = Field(description="Rows matching the filters (all pages).")
    limit: int
    offset: int


class FeatureReports(BaseModel):
    """An SAE latent: its atlas entry (when there is an atlas) and the reports that flag it."""

    id: int
    atlas: dict[str, Any] | None
    n_reports: int
    n_failures: int
    fix_rate: float | None = Field(
        description="Share of its reports where the ablation fixed the answer."
    )
    reports: list[ReportSummary]


class SteerRequest(SteerPayload):
    """Generate with SAE features clamped (multiples of their max activation)."""


class Steering(JobState):
    result: dict[str, Any] | None = None
