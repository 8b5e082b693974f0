"""Request and response bodies of the HTTP API (the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from diagnostics.answers import AnswerMode
from diagnostics.diagnose import DiagnosisOptions
from diagnostics.report import DriftReport

T = TypeVar("T")

PROMPT_HARD_LIMIT = 100_000  # schema bound; settings.max_prompt_chars is the configured limit


class DiagnosisRequest(BaseModel):
    """A failing prompt and the answer it should have produced."""

    prompt: str = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    expected: str = Field(min_length=1, max_length=1_000)
    reference: str | None = Field(
        None, max_length=PROMPT_HARD_LIMIT, description="Worked solution."
    )
    mode: AnswerMode | None = Field(None, description="Answer mode (shortcut for options.mode).")
    options: DiagnosisOptions = Field(default_factory=DiagnosisOptions)

    def resolved_options(self) -> DiagnosisOptions:
        return self.options.model_copy(update={"mode": self.mode}) if self.mode else self.options


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


class FlaggedBrief(BaseModel):
    feature: int
    label: str
    attribution: float


class ReportSummary(BaseModel):
    """One row of the report list (the full report is at /v1/reports/{id})."""

    id: str
    job_id: str
    audit_id: str | None
    created_at: datetime
    correct: bool
    failure_class: str
    model_id: str
    sae_id: str
    n_flagged: int
    ablation_fixed: bool | None
    control_fix_rate: float | None
    prompt: str
    expected: str
    extracted: str | None
    verdict: str
    flagged: list[FlaggedBrief] = Field(default_factory=list)


class StoredReport(BaseModel):
    id: str
    job_id: str
    audit_id: str | None
    created_at: datetime
    report: DriftReport


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


class SteerRequest(BaseModel):
    """Generate with SAE features clamped (multiples of their max activation)."""

    prompt: str = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    clamps: dict[int, float] = Field(min_length=1, max_length=64)
    max_new_tokens: int = Field(40, ge=1, le=512)
    chat: bool = True
    concept: list[str | int] | None = Field(None, max_length=64)


class Steering(JobState):
    result: dict[str, Any] | None = None


class AuditProgress(BaseModel):
    id: str
    name: str
    source: str
    status: Literal["queued", "running", "done"]
    total: int
    done: int
    failed: int
    queued: int
    running: int
    eta_s: float | None = Field(description="Estimated seconds left (from the pace so far).")
    created_at: datetime
    finished_at: datetime | None
    options: dict[str, Any]
