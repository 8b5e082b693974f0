"""Service settings, read from the environment (one `Settings` object per process).

One field per environment variable, named in its `validation_alias`; every default works on one
machine: a SQLite file, Redis on localhost, the bundled model and the shipped SAE. An empty
variable counts as unset. A value that does not parse (DRIFTSCOPE_AUTH=maybe) is an error at
startup, not a silent default.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EXAMPLES = Path(__file__).parent / "data" / "example_problems.jsonl"


def normalise_database_url(url: str) -> str:
    """postgres:// and postgresql:// select the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*):[^\s@/]*@")


def mask_credentials(text: str) -> str:
    """`text` with the password of every URL in it replaced by *** (scheme://user:***@host)."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def mask_logged_credentials() -> None:
    """Mask URL passwords in every log record this process makes from now on (whichever logger,
    handler or format): the message is rendered and masked when the record is created."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_credentials", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: left to the handler to report
            return record
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    factory.masks_credentials = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _var(env: str, default: Any, description: str, **constraints: Any) -> Any:
    """A field read from environment variable `env` only (in code, pass it by field name)."""
    return Field(
        default, validation_alias=AliasChoices(env), description=description, **constraints
    )


class Settings(BaseSettings):
    """Everything the API, the workers and the reconciler read from the environment."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    database_url: str = _var(
        "DATABASE_URL",
        "sqlite:///./driftscope.db",
        "SQLite file or PostgreSQL (`postgresql+psycopg://...`; `postgres://` works).",
    )
    redis_url: str = _var("REDIS_URL", "redis://127.0.0.1:6379/0", "The broker.")
    queue_name: str = _var("DRIFTSCOPE_QUEUE", "driftscope", "Celery queue name.")
    queue_backend: Literal["celery", "local"] = _var(
        "DRIFTSCOPE_QUEUE_BACKEND",
        "celery",
        "`celery` (Redis), or `local` (a worker polling the database).",
    )
    model: str = _var(
        "DRIFTSCOPE_MODEL",
        "bundled",
        "The model the workers load: `bundled`, a .gguf, a directory or a hub id.",
    )
    sae: str = _var(
        "DRIFTSCOPE_SAE",
        "default",
        "The SAE the workers load: `default` (shipped) or an SAE directory.",
    )
    atlas: str | None = _var(
        "DRIFTSCOPE_ATLAS",
        None,
        "Feature atlas: an SAE directory holding atlas/, or the atlas directory; unset: the "
        "SAE's own. Set, it must exist and match the SAE.",
    )
    sae_id: str = _var(
        "DRIFTSCOPE_SAE_ID",
        "",
        "The SAE identity stored in reports (unset: its own id or directory name).",
    )
    transcoders: str = _var(
        "DRIFTSCOPE_TRANSCODERS",
        "default",
        "The transcoder set traced jobs (options.trace) use: `default` (shipped) or a directory.",
    )
    auth_required: bool = _var("DRIFTSCOPE_AUTH", True, "`0` turns API keys off (trials only).")
    max_prompt_chars: int = _var(
        "DRIFTSCOPE_MAX_PROMPT_CHARS", 8_000, "Longest prompt or reference accepted.", ge=1
    )
    max_upload_bytes: int = _var(
        "DRIFTSCOPE_MAX_UPLOAD_BYTES", 20_000_000, "Largest request body / dataset upload.", ge=1
    )
    max_audit_items: int = _var(
        "DRIFTSCOPE_MAX_AUDIT_ITEMS", 5_000, "Most problems in one audit.", ge=1
    )
    max_deliveries: int = _var(
        "DRIFTSCOPE_MAX_DELIVERIES",
        3,
        "A job delivered more often than this (its worker kept dying) is failed.",
        ge=1,
    )
    task_soft_time_limit_s: int = _var(
        "DRIFTSCOPE_SOFT_TIME_LIMIT",
        1_500,
        "Seconds before a task is asked to stop (then failed as timed out).",
        ge=1,
    )
    task_time_limit_s: int = _var(
        "DRIFTSCOPE_TIME_LIMIT", 1_800, "Seconds before a task's worker process is killed.", ge=1
    )
    queued_deadline_s: int = _var(
        "DRIFTSCOPE_QUEUED_DEADLINE",
        60,
        "The reconciler re-sends a job queued this long whose message is not in the broker.",
        ge=1,
    )
    reconcile_interval_s: float = _var(
        "DRIFTSCOPE_RECONCILE_INTERVAL",
        10.0,
        "Seconds between reconciler passes (`python -m workers.reconciler`).",
        gt=0,
    )
    device: str = _var(
        "DRIFTSCOPE_DEVICE",
        "auto",
        "Where a worker runs the model and SAE: auto (CUDA when present, else CPU), cpu, cuda:N.",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
    )
    heartbeat_interval_s: float = _var(
        "DRIFTSCOPE_HEARTBEAT_INTERVAL",
        5.0,
        "Seconds between a running job's heartbeats (its worker's lease on it).",
        gt=0,
    )
    lease_s: float = _var(
        "DRIFTSCOPE_LEASE",
        30.0,
        "A running job without a heartbeat this long lost its worker: the reconciler re-queues "
        "it and a redelivered message may take it over.",
        gt=0,
    )
    result_write_retry_s: float = _var(
        "DRIFTSCOPE_RESULT_WRITE_RETRY",
        120.0,
        "How long a worker keeps retrying to store a finished result while the database is down.",
        ge=0,
    )
    idempotency_in_flight_s: float = _var(
        "DRIFTSCOPE_IDEMPOTENCY_IN_FLIGHT",
        60.0,
        "An Idempotency-Key reserved this long without an answer (its request crashed) is "
        "released.",
        gt=0,
    )
    rate_limit_per_minute: int = _var(
        "DRIFTSCOPE_RATE_LIMIT", 600, "Requests a minute per API key (each API process).", ge=1
    )
    auth_failures_per_minute: int = _var(
        "DRIFTSCOPE_AUTH_FAILURES_LIMIT",
        30,
        "Requests a minute without a valid key from one address before 429s.",
        ge=1,
    )
    max_open_jobs_per_key: int = _var(
        "DRIFTSCOPE_MAX_OPEN_JOBS",
        10_000,
        "Queued or running jobs one API key may have (more: 429).",
        ge=1,
    )
    torch_threads: int | None = _var(
        "DRIFTSCOPE_TORCH_THREADS",
        None,
        "torch threads of a worker process (unset: torch's default).",
        ge=1,
    )
    datasets: Annotated[dict[str, Path], NoDecode] = _var(
        "DRIFTSCOPE_DATASETS",
        PydanticUndefined,
        "Named audit datasets, `name=path,name=path` or a JSON object; `examples` (the "
        "project's own problems) is always there.",
        default_factory=lambda: {"examples": EXAMPLES},
    )

    @field_validator("database_url")
    @classmethod
    def _driver(cls, url: str) -> str:
        return normalise_database_url(url)

    @field_validator("datasets", mode="before")
    @classmethod
    def _named(cls, raw: object) -> object:
        """`DRIFTSCOPE_DATASETS` as a JSON object or `name=path,...`, plus the shipped examples."""
        if not isinstance(raw, str):
            return raw
        raw = raw.strip()
        pairs = (
            json.loads(raw).items()
            if raw.startswith("{")
            else (item.split("=", 1) for item in raw.split(",") if item.strip())
        )
        named = {"examples": EXAMPLES}
        named.update({name.strip(): Path(path.strip()).expanduser() for name, path in pairs})
        return named

    @property
    def atlas_dir(self) -> str:
        return self.atlas or self.sae


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (call `get_settings.cache_clear()` after changing the environment)."""
    return Settings()
