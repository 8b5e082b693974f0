"""The API-key dependency of the HTTP routes (the keys themselves: service.api_keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.problem_details import Problem
from service.models import ApiKey
from service.ownership import EVERYONE, Scope
from service.settings import get_settings

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key prefix (scopes Idempotency-Keys) and the rows it may see."""

    prefix: str
    scope: Scope


OPEN_CALLER = Caller(prefix="", scope=EVERYONE)  # auth off


def caller_of(row: ApiKey) -> Caller:
    return Caller(prefix=row.prefix, scope=Scope(key_id=row.id, admin=row.admin))


def require_api_key(
    request: Request, _key: Annotated[str | None, Depends(API_KEY_HEADER)] = None
) -> Caller:
    """Dependency: the caller api.edge verified before the body was read (everyone's scope when
    auth is off). `_key` declares the header in the OpenAPI schema."""
    if not get_settings().auth_required:
        return OPEN_CALLER
    caller = getattr(request.state, "caller", None)
    if caller is None:  # api.edge checks every /v1 route: a route outside it asked for a key
        problem = Problem(401, "Unauthorized", "an API key is needed", "unauthorized")
        problem.headers = {"WWW-Authenticate": "APIKey"}
        raise problem
    return caller


CallerKey = Annotated[Caller, Depends(require_api_key)]
