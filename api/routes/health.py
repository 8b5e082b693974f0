"""Liveness and readiness probes (used by compose health checks)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep) -> dict:
    """The database answers."""
    session.execute(sa.text("SELECT 1"))
    return {"status": "ready"}
