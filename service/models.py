"""SQLModel tables: jobs (the source of truth for queued work), reports, flagged features, audits,
API keys and stored idempotent responses.

Jobs, reports and audits belong to the API key that created them (`owner_key_id`); NULL means
unowned (rows written before ownership existed, with auth off, or by the in-process CLI), which
only admin keys see.

A report keeps the whole DriftReport JSON plus indexed scalar columns for filtering; its flagged
features are child rows (`report_feature`) for the feature-id / label filters and audit aggregates.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(sa.types.TypeDecorator):
    """TIMESTAMP WITH TIME ZONE that always reads back aware (SQLite stores no zone: UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)  # type: ignore[call-overload]


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"  # by its owner (POST /v1/jobs/{id}/cancel or its audit's cancel)


class JobKind(StrEnum):
    diagnosis = "diagnosis"
    steer = "steer"
    search = "search"


TERMINAL = (JobStatus.done, JobStatus.failed, JobStatus.cancelled)


class Audit(SQLModel, table=True):
    """A bulk audit: many diagnosis jobs over one dataset."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(default="", max_length=200)
    source: str = Field(default="", max_length=300)  # upload file name or named dataset
    total: int = 0
    owner_key_id: int | None = Field(
        default=None, foreign_key="api_key.id", index=True
    )  # None: unowned
    options: dict = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = _ts(default_factory=utcnow, index=True)
    finished_at: datetime | None = _ts(default=None)


class Job(SQLModel, table=True):
    """One unit of work (a diagnosis or a steering run); written before it is enqueued."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = Field(default=JobKind.diagnosis, max_length=20)
    status: str = Field(default=JobStatus.queued, max_length=20, index=True)
    payload: dict = Field(default_factory=dict, sa_type=JSONType)  # the request
    result: dict | None = Field(default=None, sa_type=JSONType)  # steering output
    error: str | None = Field(default=None, max_length=4000)
    audit_id: str | None = Field(default=None, foreign_key="audit.id", index=True, max_length=36)
    item_index: int | None = None  # row of the audit's dataset
    owner_key_id: int | None = Field(
        default=None, foreign_key="api_key.id", index=True
    )  # None: unowned
    deliveries: int = 0  # times a worker picked it up; capped by settings.max_deliveries
    created_at: datetime = _ts(default_factory=utcnow)
    enqueued_at: datetime | None = _ts(default=None)
    started_at: datetime | None = _ts(default=None)
    heartbeat_at: datetime | None = _ts(default=None)  # renewed by the worker running it
    finished_at: datetime | None = _ts(default=None)


class Report(SQLModel, table=True):
    """A stored DriftReport; at most one per job (unique job_id makes writes idempotent)."""

    __table_args__ = (sa.Index("ix_report_created_id", "created_at", "id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    job_id: str = Field(foreign_key="job.id", unique=True, max_length=36)
    audit_id: str | None = Field(default=None, foreign_key="audit.id", index=True, max_length=36)
    owner_key_id: int | None = Field(
        default=None, foreign_key="api_key.id", index=True
    )  # None: unowned
    correct: bool = Field(index=True)
    failure_class: str = Field(index=True, max_length=40)
    model_id: str = Field(index=True, max_length=300)
    sae_id: str = Field(index=True, max_length=300)
    format_ok: bool = True
    ablation_fixed: bool | None = None  # ablating the flagged features together fixed the answer
    n_flagged: int = 0
    prompt_preview: str = Field(default="", max_length=300)
    expected: str = Field(default="", max_length=1000)
    extracted: str | None = Field(default=None, max_length=200)
    verdict: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _ts(default_factory=utcnow)  # indexed with id: ix_report_created_id
    body: dict = Field(sa_type=JSONType)  # DriftReport.model_dump(mode="json")


class ReportFeature(SQLModel, table=True):
    """A flagged feature of a report (one row per report and feature)."""

    __tablename__ = "report_feature"
    __table_args__ = (sa.UniqueConstraint("report_id", "feature_id"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(foreign_key="report.id", index=True, max_length=36)
    feature_id: int = Field(index=True)
    rank: int
    label: str = Field(default="", max_length=500)
    attribution: float
    ablation_effect: float | None = None


class ApiKey(SQLModel, table=True):
    """An API key, stored as sha256 of the whole key, found by its public prefix."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(unique=True, max_length=32)
    key_hash: str = Field(max_length=64)
    name: str = Field(default="", max_length=200)
    admin: bool = False  # sees every owner's jobs, reports and audits
    created_at: datetime = _ts(default_factory=utcnow)
    revoked_at: datetime | None = _ts(default=None)


class IdempotentRequest(SQLModel, table=True):
    """The stored response of a POST made with an Idempotency-Key (replayed on a retry)."""

    __tablename__ = "idempotent_request"

    key: str = Field(primary_key=True, max_length=255)
    scope: str = Field(primary_key=True, max_length=300)  # api key prefix + method + path
    fingerprint: str = Field(max_length=64)  # sha256 of the request body
    status_code: int
    location: str | None = Field(default=None, max_length=500)
    response: dict = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = _ts(default_factory=utcnow)
