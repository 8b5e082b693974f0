"""Fault tests on private servers (never the shared 5432 / 6379): PostgreSQL stopped for 10 s
under a real uvicorn API (only 503s with Retry-After, on the same kept-alive connection, then
recovery); a Celery worker killed mid-job (the job finishes within ~90 s, once); Redis restarted
with queued jobs (every job finishes)."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from service.api_keys import create_api_key
from service.db import dispose_engines, migrate, session_scope
from tests.service.conftest import repo_root
from tests.service.private_servers import start_api, start_private_postgres, stop_group

pytestmark = pytest.mark.e2e


@pytest.fixture
def private_pg():
    pg = start_private_postgres()
    try:
        yield pg
    finally:
        dispose_engines()
        pg.remove()


def _client_addr(resp: httpx.Response):
    return resp.extensions["network_stream"].get_extra_info("client_addr")


def test_database_outage_answers_503_then_recovers(private_pg, tmp_path, runtime_dirs):
    migrate(private_pg.url)
    with session_scope(private_pg.url) as session:
        key = create_api_key(session, "faults")
    dispose_engines()
    env = os.environ | {
        "DATABASE_URL": private_pg.url,
        "DRIFTSCOPE_QUEUE_BACKEND": "local",
        "DRIFTSCOPE_AUTH": "1",
        "DRIFTSCOPE_MODEL": runtime_dirs["model"],
        "DRIFTSCOPE_SAE": runtime_dirs["sae"],
    }
    api, base = start_api(env, tmp_path / "api.log", repo_root())
    body = {"prompt": "what is 2 plus 3 ?", "expected": "5"}
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/v1/reports").status_code == 200
            addresses = {_client_addr(client.get("/v1/reports"))}

            private_pg.stop()
            statuses: list[int] = []
            down_until = time.monotonic() + 10
            while time.monotonic() < down_until:
                for resp in (
                    client.get("/readyz"),
                    client.get("/v1/reports"),
                    client.post("/v1/diagnoses", json=body),
                    client.get("/reports"),
                ):
                    statuses.append(resp.status_code)
                    assert resp.status_code == 503, (resp.request.url, resp.text)
                    assert resp.headers["Retry-After"].isdigit()
                    addresses.add(_client_addr(resp))
                    if resp.request.url.path.startswith(("/v1", "/readyz")):
                        assert resp.headers["content-type"] == "application/problem+json"
                        assert resp.json()["status"] == 503
                time.sleep(0.2)
            assert len(statuses) >= 20

            private_pg.start()
            deadline = time.monotonic() + 30
            while True:
                resp = client.get("/v1/reports")
                addresses.add(_client_addr(resp))
                assert resp.status_code in (200, 503), resp.text
                if resp.status_code == 200:
                    break
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.5)
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/diagnoses", json=body).status_code == 202
            assert len(addresses) == 1  # one kept-alive connection throughout: none was dropped
    finally:
        stop_group(api)
        print((tmp_path / "api.log").read_text()[-3000:])
