"""Service fixtures: the tiny model and a random SAE saved to disk, real SQLite and PostgreSQL
databases created by the Alembic migration, Redis on a queue of this session, an API client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from diagnostics.sae import save_sae
from service.db import dispose_engines, migrate, session_scope
from service.settings import Settings, get_settings
from tests.conftest import make_firing_sae, make_tiny_lm

PG_ADMIN_URL = os.environ.get(
    "DRIFTSCOPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DRIFTSCOPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = f"driftscope-test-{uuid.uuid4().hex[:8]}"
TABLES = ["report_feature", "report", "job", "audit", "api_key", "idempotent_request"]
FAST_OPTIONS = {"max_new_tokens": 4, "top_k": 3, "control_draws": 1, "top_features_per_token": 2}


@pytest.fixture(scope="session")
def runtime_dirs(tmp_path_factory) -> dict[str, str]:
    """The tiny random Llama and a random SAE whose latents fire on it (at its middle layer), saved
    like real ones."""
    root = tmp_path_factory.mktemp("runtime")
    lm = make_tiny_lm()
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    save_sae(make_firing_sae(lm, 128, seed=3), root / "sae")
    return {"model": str(root / "model"), "sae": str(root / "sae")}


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'driftscope.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped at the end."""
    name = f"driftscope_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def truncate(url: str) -> None:
    with session_scope(url) as session:
        for table in TABLES:
            session.execute(sa.text(f"DELETE FROM {table}"))
        session.commit()


def service_vars(
    db_url: str, runtime_dirs: dict[str, str], overrides: dict[str, str] | None = None
) -> dict[str, str]:
    """A test service's environment variables: `db_url`, this session's queue on the test Redis,
    the local queue backend, the tiny model and random SAE, auth on; `overrides` change or add
    variables."""
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "DRIFTSCOPE_QUEUE": QUEUE,
        "DRIFTSCOPE_QUEUE_BACKEND": "local",
        "DRIFTSCOPE_MODEL": runtime_dirs["model"],
        "DRIFTSCOPE_SAE": runtime_dirs["sae"],
        "DRIFTSCOPE_SAE_ID": "random-sae",
        "DRIFTSCOPE_AUTH": "1",
    } | (overrides or {})


def use_service_env(
    mp: pytest.MonkeyPatch,
    db_url: str,
    runtime_dirs: dict[str, str],
    overrides: dict[str, str] | None = None,
) -> Settings:
    """Set `service_vars` in this process with `mp` and empty `db_url`'s tables; the caller
    clears `get_settings` when done."""
    for key, value in service_vars(db_url, runtime_dirs, overrides).items():
        mp.setenv(key, value)
    get_settings.cache_clear()
    truncate(db_url)
    return get_settings()


@pytest.fixture
def service_env(db_url, runtime_dirs, monkeypatch) -> Iterator[Settings]:
    """Environment of one test: empty tables, local queue backend, auth on."""
    yield use_service_env(monkeypatch, db_url, runtime_dirs)
    get_settings.cache_clear()


@pytest.fixture
def api_key(service_env) -> str:
    from service.api_keys import create_api_key

    with session_scope() as session:
        return create_api_key(session, "tests")


def key_id(key: str) -> int:
    """The stored id of API key `key` (the owner of what it creates)."""
    from service.api_keys import verify_api_key

    with session_scope() as session:
        return verify_api_key(session, key).id


@pytest.fixture
def client(service_env, api_key) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(), headers={"X-API-Key": api_key}) as c:
        yield c


def gsm8k_jsonl(n: int) -> bytes:
    """GSM8K-format rows in the tiny tokenizer's vocabulary."""
    import json

    rows = [
        {"question": f"what is {i} plus {i + 1} ?", "answer": f"{i} + {i + 1} = <<{i}+{i + 1}={2 * i + 1}>>{2 * i + 1}\n#### {2 * i + 1}"}
        for i in range(n)
    ]  # fmt: skip
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(tmp_path, runtime_dirs, monkeypatch) -> Iterator[str]:
    """Environment of a CLI test: its own SQLite file, the test model and SAE; yields the URL."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DRIFTSCOPE_MODEL", runtime_dirs["model"])
    monkeypatch.setenv("DRIFTSCOPE_SAE", runtime_dirs["sae"])
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
