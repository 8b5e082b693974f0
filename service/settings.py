"""Service settings, read from the environment (one place, one `Settings` object per process).

Every variable has a default that works on one machine: a SQLite file, Redis on localhost, the
bundled model and the shipped SAE.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def _datasets(raw: str | None) -> dict[str, Path]:
    """`DRIFTSCOPE_DATASETS`: a JSON object or `name=path,name=path`; plus the shipped examples."""
    named = {"examples": Path(__file__).parent / "data" / "example_problems.jsonl"}
    if not raw:
        return named
    raw = raw.strip()
    pairs = (
        json.loads(raw).items()
        if raw.startswith("{")
        else (item.split("=", 1) for item in raw.split(",") if item.strip())
    )
    named.update({name.strip(): Path(path.strip()).expanduser() for name, path in pairs})
    return named


def normalise_database_url(url: str) -> str:
    """postgres:// and postgresql:// select the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    """Everything the API, the workers and the reconciler read from the environment."""

    database_url: str = "sqlite:///./driftscope.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "driftscope"
    queue_backend: str = "celery"  # "celery" (Redis) or "local" (a worker polling the DB)
    model: str = "bundled"
    sae: str = "default"
    atlas: str | None = (
        None  # SAE directory holding atlas/, or the atlas directory; None: the SAE's
    )
    sae_id: str = ""
    auth_required: bool = True
    max_prompt_chars: int = 8_000
    max_upload_bytes: int = 20_000_000
    max_audit_items: int = 5_000
    max_deliveries: int = 3  # a job delivered more often than this (worker crashes) is failed
    task_soft_time_limit_s: int = 1_500
    task_time_limit_s: int = 1_800
    queued_deadline_s: int = 600  # the reconciler re-enqueues a job queued for longer
    running_deadline_s: int = 2_400  # ... or running for longer (above the hard time limit)
    datasets: dict[str, Path] = field(default_factory=lambda: _datasets(None))

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            database_url=normalise_database_url(env("DATABASE_URL", cls.database_url)),
            redis_url=env("REDIS_URL", cls.redis_url),
            queue_name=env("DRIFTSCOPE_QUEUE", cls.queue_name),
            queue_backend=env("DRIFTSCOPE_QUEUE_BACKEND", cls.queue_backend),
            model=env("DRIFTSCOPE_MODEL", cls.model),
            sae=env("DRIFTSCOPE_SAE", cls.sae),
            atlas=env("DRIFTSCOPE_ATLAS") or None,
            sae_id=env("DRIFTSCOPE_SAE_ID", cls.sae_id),
            auth_required=_env_bool("DRIFTSCOPE_AUTH", cls.auth_required),
            max_prompt_chars=int(env("DRIFTSCOPE_MAX_PROMPT_CHARS", cls.max_prompt_chars)),
            max_upload_bytes=int(env("DRIFTSCOPE_MAX_UPLOAD_BYTES", cls.max_upload_bytes)),
            max_audit_items=int(env("DRIFTSCOPE_MAX_AUDIT_ITEMS", cls.max_audit_items)),
            max_deliveries=int(env("DRIFTSCOPE_MAX_DELIVERIES", cls.max_deliveries)),
            task_soft_time_limit_s=int(
                env("DRIFTSCOPE_SOFT_TIME_LIMIT", cls.task_soft_time_limit_s)
            ),
            task_time_limit_s=int(env("DRIFTSCOPE_TIME_LIMIT", cls.task_time_limit_s)),
            queued_deadline_s=int(env("DRIFTSCOPE_QUEUED_DEADLINE", cls.queued_deadline_s)),
            running_deadline_s=int(env("DRIFTSCOPE_RUNNING_DEADLINE", cls.running_deadline_s)),
            datasets=_datasets(env("DRIFTSCOPE_DATASETS")),
        )

    @property
    def atlas_dir(self) -> str:
        return self.atlas or self.sae


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (call `get_settings.cache_clear()` after changing the environment)."""
    return Settings.from_env()
