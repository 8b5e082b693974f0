"""Liveness and readiness probes (used by compose health checks)."""

from __future__ import annotations

import anyio.to_thread
import sqlalchemy as sa
from fastapi import APIRouter

from api.atlas_cache import atlas_problem
from api.deps import SessionDep, SettingsDep
from api.problem_details import Problem, problems
from workers.queue import broker_problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses=problems(503))
async def readyz(session: SessionDep, settings: SettingsDep) -> dict:
    """The database and the broker answer (503 naming the one that does not); `atlas` says
    whether the feature atlas loaded, or why the pages and reports go without labels
    (`status` is then `degraded`: the service works, without labels)."""
    await anyio.to_thread.run_sync(lambda: session.execute(sa.text("SELECT 1")))
    broker = await anyio.to_thread.run_sync(broker_problem, settings)
    if broker is not None:
        problem = Problem(503, "Service unavailable", broker, "unavailable")
        problem.headers = {"Retry-After": "10"}
        raise problem
    atlas = await anyio.to_thread.run_sync(atlas_problem, settings)
    return {
        "status": "ready" if atlas is None else "degraded",
        "database": "ok",
        "broker": "ok" if settings.queue_backend == "celery" else "none (local queue)",
        "atlas": "ok" if atlas is None else f"error: {atlas}",
    }
