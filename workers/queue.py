"""Hand job ids to the workers: Celery messages (Redis), or nothing for the local DB-polling worker.

A job row is always committed before this is called; if Redis is down the jobs stay `queued` and
the reconciler sends them again later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

RUN_JOB_TASK = "driftscope.run_job"
UNACKED_KEY = "unacked"  # kombu's Redis hash of delivered, unacknowledged messages
PAGE = 1000


def enqueue(job_ids: Sequence[str], settings: Settings | None = None) -> int:
    """Send one message per job (task id = job id); returns how many were sent."""
    settings = settings or get_settings()
    if settings.queue_backend != "celery" or not job_ids:
        return 0
    app = _celery_for(settings)
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


_apps: dict[str, object] = {}


def _celery_for(settings: Settings):
    """The Celery app sending to `settings.redis_url`: the worker module's own app when it was
    made for that broker, else one made (and kept) for it. The module's app is built from the
    settings at import, so a process whose settings name another broker later (a test's private
    Redis, a reconfigured API) would otherwise send to the first one."""
    from workers.celery_app import app, make_celery

    if app.conf.broker_url == settings.redis_url:
        return app
    if settings.redis_url not in _apps:
        _apps[settings.redis_url] = make_celery(settings)
    return _apps[settings.redis_url]


def broker_problem(settings: Settings | None = None) -> str | None:
    """Why the broker cannot take messages (unreachable, in words, credentials masked), or None
    when it answers a ping or the local backend needs none."""
    settings = settings or get_settings()
    if settings.queue_backend != "celery":
        return None
    import redis

    from service.settings import mask_credentials

    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as err:
        return mask_credentials(f"the broker at {settings.redis_url} does not answer: {err}")
    return None


def ids_in_broker(settings: Settings | None = None) -> set[str] | None:
    """Job ids with a message in the broker: waiting in the queue or delivered and not yet acked
    (None when the broker cannot be asked). Read in pages, whatever the queue's length."""
    settings = settings or get_settings()
    if settings.queue_backend != "celery":
        return None
    import redis

    ids: set[str] = set()
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        try:
            start = 0
            while True:
                page = client.lrange(settings.queue_name, start, start + PAGE - 1)
                ids.update(_task_id(raw) for raw in page)
                if len(page) < PAGE:
                    break
                start += PAGE
            for raw in client.hvals(UNACKED_KEY):  # kombu: [message, exchange, routing key]
                ids.add(_task_id(raw, wrapped=True))
        finally:
            client.close()
    except redis.RedisError as err:
        log.warning("cannot read the broker queue: %s", err)
        return None
    ids.discard("")
    return ids


def _task_id(raw: bytes, wrapped: bool = False) -> str:
    try:
        message = json.loads(raw)
        if wrapped:
            message = message[0]
        return str(message.get("headers", {}).get("id", ""))
    except (ValueError, TypeError, IndexError, AttributeError):
        return ""
