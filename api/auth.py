"""API keys: `ds_<prefix>_<secret>`, stored as sha256 of the whole key and found by its prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader
from sqlmodel import Session, select

from service.db import get_session
from service.models import ApiKey
from api.problem_details import Problem
from service.settings import get_settings

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, name: str = "") -> str:
    """Store a new key (hashed) and return it: the only time its secret is visible."""
    prefix = secrets.token_hex(6)
    key = f"ds_{prefix}_{secrets.token_urlsafe(24)}"
    session.add(ApiKey(prefix=prefix, key_hash=hash_key(key), name=name))
    session.commit()
    return key


def verify_api_key(session: Session, key: str) -> ApiKey | None:
    """The stored key matching `key`, if it exists and is not revoked."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ds":
        return None
    row = session.exec(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_hash, hash_key(key)) else None


def revoke_api_key(session: Session, prefix: str) -> bool:
    row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if row is None:
        return False
    row.revoked_at = datetime.now(UTC)
    session.add(row)
    session.commit()
    return True


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
