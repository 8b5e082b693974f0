"""`Idempotency-Key` on POSTs (draft-ietf-httpapi-idempotency-key-header).

The key is recorded (as in flight) before the work, in its own committed row, so a concurrent
retry sees it: same key + same request -> the stored response is replayed; while the first is in
flight -> IdempotencyInFlight; same key + a different request -> IdempotencyMismatch. A
reservation in flight longer than `in_flight_s` (its request crashed) expires: the next request
with the key takes it over. Keys are scoped by API key and route. The HTTP answers to these errors are in api.problem_details.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from service.db import as_aware
from service.models import IdempotentRequest

IN_FLIGHT = 0
MAX_KEY_CHARS = 255
KEY_PATTERN = r"^[!-~]+$"  # printable ASCII, no spaces


class IdempotencyError(Exception):
    """A request's Idempotency-Key cannot be honoured; the message says why."""


class BadIdempotencyKey(IdempotencyError):
    """The key is empty or longer than 255 characters."""


class IdempotencyMismatch(IdempotencyError):
    """The key was used before with a different request."""


class IdempotencyInFlight(IdempotencyError):
    """A request with this key is still being answered."""


@dataclass(frozen=True)
class StoredResponse:
    """The answer given to the first request with a key, replayed to its retries."""

    status_code: int
    body: dict
    location: str | None


class Idempotency:
    """Use: `replay = idem.begin()`; return it if not None; after the work, `idem.store(...)`."""

    def __init__(
        self,
        session: Session,
        key: str | None,
        scope: str,
        fingerprint: bytes,
        in_flight_s: float = 60.0,
    ) -> None:
        if key is not None and not 1 <= len(key) <= MAX_KEY_CHARS:
            raise BadIdempotencyKey(f"the key must be 1 to {MAX_KEY_CHARS} characters")
        if key is not None and not re.fullmatch(KEY_PATTERN, key):
            raise BadIdempotencyKey("the key must be printable ASCII without spaces")
        self.session, self.key, self.scope = session, key, scope
        self.in_flight_s = in_flight_s
        self.fingerprint = hashlib.sha256(fingerprint).hexdigest()

    def begin(self) -> StoredResponse | None:
        """Reserve the key; the stored response when this request was already answered."""
        if self.key is None:
            return None
        row = IdempotentRequest(
            key=self.key, scope=self.scope, fingerprint=self.fingerprint, status_code=IN_FLIGHT
        )
        self.session.add(row)
        try:
            self.session.commit()
            return None
        except IntegrityError:
            self.session.rollback()
        stored = self.session.get(IdempotentRequest, (self.key, self.scope))
        if stored is None:  # deleted meanwhile (the first attempt failed): try once more
            return self.begin()
        if stored.fingerprint != self.fingerprint:
            raise IdempotencyMismatch("this key was used with a different request")
        if stored.status_code == IN_FLIGHT:
            if self._take_over(stored):
                return None
            raise IdempotencyInFlight("a request with this key is still running")
        return StoredResponse(stored.status_code, stored.response, stored.location)

    def _take_over(self, stored: IdempotentRequest) -> bool:
        """Renew a reservation older than `in_flight_s` for this request (compare-and-set on
        its time, so of two retries only one takes it)."""
        reserved = as_aware(stored.created_at)
        now = datetime.now(UTC)
        if reserved is None or now - reserved < timedelta(seconds=self.in_flight_s):
            return False
        t = IdempotentRequest.__table__.c
        taken = self.session.execute(
            sa.update(IdempotentRequest.__table__)
            .where(
                t.key == self.key,
                t.scope == self.scope,
                t.status_code == IN_FLIGHT,
                t.created_at == stored.created_at,
            )
            .values(created_at=now)
        ).rowcount
        self.session.commit()
        return bool(taken)

    def store(self, body: dict, status_code: int, location: str | None) -> None:
        if self.key is None:
            return
        row = self.session.get(IdempotentRequest, (self.key, self.scope))
        if row is not None:
            row.status_code, row.response, row.location = status_code, body, location
            self.session.add(row)
            self.session.commit()

    def abandon(self) -> None:
        """Forget the key (the work failed), so the client may retry with it."""
        if self.key is None:
            return
        self.session.rollback()
        row = self.session.get(IdempotentRequest, (self.key, self.scope))
        if row is not None and row.status_code == IN_FLIGHT:
            self.session.delete(row)
            self.session.commit()
