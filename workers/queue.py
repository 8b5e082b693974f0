"""Hand job ids to the workers: Celery messages (Redis), or nothing for the local DB-polling worker.

A job row is always committed before this is called; if Redis is down the jobs stay `queued` and
the reconciler sends them again later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

RUN_JOB_TASK = "driftscope.run_job"


def enqueue(job_ids: Sequence[str], settings: Settings | None = None) -> int:
    """Send one message per job (task id = job id); returns how many were sent."""
    settings = settings or get_settings()
    if settings.queue_backend != "celery" or not job_ids:
        return 0
    from workers.celery_app import app

    sent = 0
    try:
        with app.producer_or_acquire() as producer:
            for job_id in job_ids:
                app.send_task(
                    RUN_JOB_TASK,
                    args=[job_id],
                    task_id=job_id,
                    queue=settings.queue_name,
                    producer=producer,
                )
                sent += 1
    except Exception as err:  # broker down: the reconciler re-sends what is left queued
        log.warning("could not enqueue %d job(s): %s", len(job_ids) - sent, err)
    return sent


def queue_depth(settings: Settings | None = None) -> int | None:
    """Messages waiting in the broker queue (None when the broker cannot be asked)."""
    settings = settings or get_settings()
    if settings.queue_backend != "celery":
        return None
    import redis

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
        try:
            return int(client.llen(settings.queue_name))
        finally:
            client.close()
    except redis.RedisError as err:
        log.warning("cannot read the queue depth: %s", err)
        return None
