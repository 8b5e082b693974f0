"""Celery tasks: thin wrappers that hand a job id to workers.jobs.run_job."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from workers.celery_app import app
from workers.jobs import run_job
from workers.queue import RUN_JOB_TASK


@app.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_task(job_id: str) -> str | None:
    """Run job `job_id` (idempotent: a redelivered message never duplicates a report)."""
    return run_job(job_id, allow_running=True, timeout=SoftTimeLimitExceeded)
