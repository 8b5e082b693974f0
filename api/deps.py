"""Dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlmodel import Session

from service.db import session_scope
from service.idempotency import KEY_PATTERN, MAX_KEY_CHARS
from service.settings import Settings, get_settings


def get_session() -> Iterator[Session]:
    """One database session per request."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_CHARS,
        pattern=KEY_PATTERN,
        description="Retry-safe POST: the same key replays the answer (1 to 255 printable "
        "ASCII characters, no spaces).",
    ),
]
