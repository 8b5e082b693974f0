"""The Celery app (`celery -A workers.celery_app worker --pool=prefork -c 1`).

Reliability settings: late acks with prefetch 1 (a worker reserves only the task it runs), a task
whose worker process dies is rejected and redelivered (bounded by the job's `deliveries` counter,
see workers.jobs), soft and hard time limits, a Redis visibility timeout above the hard limit
(so a long task is not redelivered while it runs), JSON messages only. No result backend: the
database is the source of truth.
"""

from __future__ import annotations

from celery import Celery

from service.settings import Settings, get_settings, mask_logged_credentials


def make_celery(settings: Settings) -> Celery:
    app = Celery("driftscope", broker=settings.redis_url, include=["workers.tasks"])
    visibility = settings.task_time_limit_s + 600
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_default_queue=settings.queue_name,
        broker_transport_options={
            "visibility_timeout": visibility,
            "socket_keepalive": True,
            "health_check_interval": 30,
            "retry_on_timeout": True,
        },
        visibility_timeout=visibility,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
    )
    return app


mask_logged_credentials()  # a worker's log lines never show a database or broker password
app = make_celery(get_settings())
