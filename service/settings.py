"""Service settings, read from the environment (one `Settings` object per process).

One field per environment variable, named in its `validation_alias`; every default works on one
machine: a SQLite file, Redis on localhost, the bundled model and the shipped SAE. An empty
variable counts as unset. A value that does not parse (DRIFTSCOPE_AUTH=maybe) is an error at
startup, not a silent default.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EXAMPLES = Path(__file__).parent / "data" / "example_problems.jsonl"


def normalise_database_url(url: str) -> str:
    """postgres:// and postgresql:// select the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _env(name: str) -> AliasChoices:
    """The field is read from environment variable `name` only; in code, pass it by field name."""
    return AliasChoices(name)


class Settings(BaseSettings):
    """Everything the API, the workers and the reconciler read from the environment."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    database_url: str = Field(
        "sqlite:///./driftscope.db",
        validation_alias=_env("DATABASE_URL"),
        description="SQLite file or PostgreSQL (`postgresql+psycopg://...`; `postgres://` works).",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"), description="The broker."
    )
    queue_name: str = Field(
        "driftscope", validation_alias=_env("DRIFTSCOPE_QUEUE"), description="Celery queue name."
    )
    queue_backend: Literal["celery", "local"] = Field(
        "celery",
        validation_alias=_env("DRIFTSCOPE_QUEUE_BACKEND"),
        description="`celery` (Redis), or `local` (a worker polling the database).",
    )
    model: str = Field(
        "bundled",
        validation_alias=_env("DRIFTSCOPE_MODEL"),
        description="The model the workers load: `bundled`, a .gguf, a directory or a hub id.",
    )
    sae: str = Field(
        "default",
        validation_alias=_env("DRIFTSCOPE_SAE"),
        description="The SAE the workers load: `default` (shipped) or an SAE directory.",
    )
    atlas: str | None = Field(
        None,
        validation_alias=_env("DRIFTSCOPE_ATLAS"),
        description="Feature atlas: an SAE directory holding atlas/, or the atlas directory; "
        "unset: the SAE's own. Set, it must exist and match the SAE.",
    )
    sae_id: str = Field(
        "",
        validation_alias=_env("DRIFTSCOPE_SAE_ID"),
        description="The SAE identity stored in reports (unset: its own id or directory name).",
    )
    auth_required: bool = Field(
        True,
        validation_alias=_env("DRIFTSCOPE_AUTH"),
        description="`0` turns API keys off (trials only).",
    )
    max_prompt_chars: int = Field(
        8_000, ge=1, validation_alias=_env("DRIFTSCOPE_MAX_PROMPT_CHARS"),
        description="Longest prompt or reference accepted.",
    )  # fmt: skip
    max_upload_bytes: int = Field(
        20_000_000, ge=1, validation_alias=_env("DRIFTSCOPE_MAX_UPLOAD_BYTES"),
        description="Largest request body / uploaded dataset.",
    )  # fmt: skip
    max_audit_items: int = Field(
        5_000, ge=1, validation_alias=_env("DRIFTSCOPE_MAX_AUDIT_ITEMS"),
        description="Most problems in one audit.",
    )  # fmt: skip
    max_deliveries: int = Field(
        3, ge=1, validation_alias=_env("DRIFTSCOPE_MAX_DELIVERIES"),
        description="A job delivered more often than this (its worker kept dying) is failed.",
    )  # fmt: skip
    task_soft_time_limit_s: int = Field(
        1_500, ge=1, validation_alias=_env("DRIFTSCOPE_SOFT_TIME_LIMIT"),
        description="Seconds before a task is asked to stop (then failed as timed out).",
    )  # fmt: skip
    task_time_limit_s: int = Field(
        1_800, ge=1, validation_alias=_env("DRIFTSCOPE_TIME_LIMIT"),
        description="Seconds before a task's worker process is killed.",
    )  # fmt: skip
    queued_deadline_s: int = Field(
        600, ge=1, validation_alias=_env("DRIFTSCOPE_QUEUED_DEADLINE"),
        description="The reconciler re-sends a job queued this long while the broker queue is "
        "empty.",
    )  # fmt: skip
    running_deadline_s: int = Field(
        2_400, ge=1, validation_alias=_env("DRIFTSCOPE_RUNNING_DEADLINE"),
        description="The reconciler re-queues a job running this long (above the time limit).",
    )  # fmt: skip
    reconcile_interval_s: float = Field(
        60.0, gt=0, validation_alias=_env("DRIFTSCOPE_RECONCILE_INTERVAL"),
        description="Seconds between reconciler passes (`python -m workers.reconciler`).",
    )  # fmt: skip
    torch_threads: int | None = Field(
        None, ge=1, validation_alias=_env("DRIFTSCOPE_TORCH_THREADS"),
        description="torch threads of a worker process (unset: torch's default).",
    )  # fmt: skip
    datasets: Annotated[dict[str, Path], NoDecode] = Field(
        default_factory=lambda: {"examples": EXAMPLES},
        validation_alias=_env("DRIFTSCOPE_DATASETS"),
        description="Named audit datasets, `name=path,name=path` or a JSON object; `examples` "
        "(the project's own problems) is always there.",
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
