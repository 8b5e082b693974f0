"""The API-key dependency of the HTTP routes (the keys themselves: service.api_keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader
from sqlmodel import Session

from api.deps import get_session
from api.problem_details import Problem
from service.api_keys import verify_api_key
from service.settings import get_settings

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def require_api_key(
    session: Annotated[Session, Depends(get_session)],
    key: Annotated[str | None, Depends(API_KEY_HEADER)] = None,
) -> str:
    """Dependency: the caller's key prefix ('' when auth is off); 401 problem otherwise."""
    if not get_settings().auth_required:
        return ""
    if not key:
        raise _unauthorized("send an API key in the X-API-Key header")
    row = verify_api_key(session, key)
    if row is None:
        raise _unauthorized("the API key is unknown or revoked")
    return row.prefix


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, "Unauthorized", detail, "unauthorized")
    problem.headers = {"WWW-Authenticate": "APIKey"}
    return problem


CallerKey = Annotated[str, Depends(require_api_key)]
