"""Liveness and readiness probes (used by compose health checks)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from api.deps import SessionDep
from api.problem_details import problems

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses=problems(503))
def readyz(session: SessionDep) -> dict:
    """The database answers."""
    session.execute(sa.text("SELECT 1"))
    return {"status": "ready"}
