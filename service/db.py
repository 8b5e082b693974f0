"""Engine and sessions (one engine per URL and process: pools must not cross a fork), and the
Alembic upgrade that creates or updates the schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.settings import get_settings, mask_credentials, normalise_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# the database is unreachable (down, restarting, pool exhausted): worth retrying later
DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
_engines: dict[tuple[str, int], Engine] = {}
CONNECT_TIMEOUT_S = 5


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # the API reads while a worker writes
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def checked_database_url(url: str) -> str:
    """`url` with its driver chosen (normalise_database_url), or ValueError naming it (password
    masked) when it is not a URL of a database driftscope can use; nothing is connected."""
    url = normalise_database_url(url)
    try:
        sa.engine.make_url(url).get_dialect()
    except sa.exc.ArgumentError as err:  # NoSuchModuleError too: an unknown scheme
        raise ValueError(
            f"--db {mask_credentials(url)} is not a database URL driftscope can use ({err}); "
            "use sqlite:///PATH.db or postgresql://USER:PASSWORD@HOST/DB"
        ) from None
    return url


def get_engine(url: str | None = None) -> Engine:
    """The engine of `url` (default: settings.database_url) for this process."""
    url = url or get_settings().database_url
    key = (url, os.getpid())
    engine = _engines.get(key)
    if engine is None:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(
                url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
            )
        _engines[key] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests, shutdown)."""
    for (_, pid), engine in list(_engines.items()):
        if pid == os.getpid():
            engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that is closed on exit (commit explicitly)."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        yield session


def migrate(url: str | None = None, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` on `url` (default: the settings' database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url or get_settings().database_url
    command.upgrade(cfg, revision)


def as_aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: treat them as UTC."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts
