"""API keys: `ds_<prefix>_<secret>`, stored as sha256 of the whole key and found by its prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from sqlmodel import Session, select

from service.models import ApiKey


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, name: str = "", *, admin: bool = False) -> str:
    """Store a new key (hashed) and return it: the only time its secret is visible.

    An admin key sees every owner's jobs, reports and audits (and the unowned ones)."""
    prefix = secrets.token_hex(6)
    key = f"ds_{prefix}_{secrets.token_urlsafe(24)}"
    session.add(ApiKey(prefix=prefix, key_hash=hash_key(key), name=name, admin=admin))
    session.commit()
    return key


def verify_api_key(session: Session, key: str) -> ApiKey | None:
    """The stored key matching `key`, if it exists and is not revoked."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ds" or "\x00" in key:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_hash, hash_key(key)) else None


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first (revoked ones included)."""
    return list(session.exec(select(ApiKey).order_by(ApiKey.id)).all())  # type: ignore[arg-type]


def revoke_api_key(session: Session, prefix: str) -> ApiKey | None:
    """Revoke the key with that prefix (a no-op if already revoked); None when there is none."""
    row = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        session.commit()
    return row
