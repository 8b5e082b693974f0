"""API keys: `ds_<prefix>_<secret>`, stored as sha256 of the whole key and found by its prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlmodel import Session, select

from service.models import ApiKey


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
