"""`driftscope serve`: the API, a worker and the reconciler on one machine (a trial setup).

With Redis reachable, the worker is a real `celery worker --pool=prefork -c 1` subprocess; with
no Redis (or `--queue local`), a thread polling the database runs the jobs instead.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Annotated

import typer

from cli.common import friendly_errors

log = logging.getLogger(__name__)


def redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def serve(host: str = "127.0.0.1", port: int = 8000, queue: str = "auto") -> None:
    """Migrate the database, start the worker and the reconciler, then serve HTTP until stopped."""
    import uvicorn

    from service.db import migrate
    from service.settings import get_settings, mask_credentials, mask_logged_credentials
    from workers.reconciler import run_forever

    mask_logged_credentials()
    settings = get_settings()
    if queue == "auto":
        queue = "celery" if redis_reachable(settings.redis_url) else "local"
    os.environ["DRIFTSCOPE_QUEUE_BACKEND"] = queue
    get_settings.cache_clear()
    migrate()
    log.warning("driftscope: database %s, queue %s", mask_credentials(settings.database_url), queue)
    stop = threading.Event()
    worker: subprocess.Popen | None = None
    if queue == "celery":
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
             "--pool=prefork", "-c", "1", "--loglevel=INFO", "-Q", settings.queue_name],
        )  # fmt: skip
    else:
        from workers.local_worker import run_local_worker

        threading.Thread(target=run_local_worker, args=(stop,), daemon=True, name="worker").start()
    threading.Thread(
        target=run_forever,
        args=(settings.reconcile_interval_s, stop),
        daemon=True,
        name="reconciler",
    ).start()
    # uvicorn re-raises SIGTERM after its graceful shutdown: make it a SystemExit, so the
    # worker subprocess is stopped below
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run("api.main:create_app", factory=True, host=host, port=port)
    finally:
        stop.set()
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


@friendly_errors
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    queue: Annotated[
        str, typer.Option(help="auto (Celery if Redis answers, else local), celery or local.")
    ] = "auto",
) -> None:
    """Start the HTTP API, a worker and the reconciler on this machine (a single-machine trial)."""
    if queue not in ("auto", "celery", "local"):
        raise ValueError(f"--queue must be auto, celery or local, not {queue!r}")
    serve(host=host, port=port, queue=queue)
