"""A worker with no broker: polls the database for queued jobs and runs them one by one.

Used by `driftscope serve` when Redis is not available (settings.queue_backend == "local").
"""

from __future__ import annotations

import logging
import threading

from sqlmodel import select

from service.db import session_scope
from service.models import Job, JobStatus
from service.settings import Settings, get_settings
from workers.jobs import run_job

log = logging.getLogger(__name__)


def next_queued(settings: Settings) -> str | None:
    with session_scope(settings.database_url) as session:
        return session.exec(
            select(Job.id)
            .where(Job.status == str(JobStatus.queued))
            .order_by(Job.created_at, Job.item_index)  # type: ignore[arg-type]
            .limit(1)
        ).first()


def run_local_worker(
    stop: threading.Event, settings: Settings | None = None, poll_s: float = 1.0
) -> None:
    """Run queued jobs until `stop` is set."""
    settings = settings or get_settings()
    while not stop.is_set():
        job_id = next_queued(settings)
        if job_id is None:
            stop.wait(poll_s)
            continue
        try:
            run_job(job_id, settings=settings, allow_running=False)
        except Exception:
            log.exception("local worker: job %s", job_id)
            stop.wait(poll_s)
