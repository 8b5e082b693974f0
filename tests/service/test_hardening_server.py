"""Against a real uvicorn on PostgreSQL (concurrent requests, one process's rate limiters): the
open-jobs quota holds when several clients submit at once, and wrong keys tried through the
pages (the login form, the X-API-Key header) are slowed with 429 like wrong keys on /v1."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlmodel import func, select

from service.api_keys import create_api_key
from service.db import session_scope
from service.models import Job
from tests.service.conftest import repo_root, service_vars, truncate
from tests.service.private_servers import start_api, stop_group

QUOTA = 20


@pytest.fixture(scope="module")
def api(pg_url, runtime_dirs, tmp_path_factory):
    truncate(pg_url)
    with session_scope(pg_url) as session:
        key = create_api_key(session, "quota")
    env = dict(os.environ) | service_vars(pg_url, runtime_dirs, {
        "DRIFTSCOPE_AUTH_FAILURES_LIMIT": "10",
        "DRIFTSCOPE_MAX_OPEN_JOBS": str(QUOTA),
    })  # fmt: skip
    proc, base = start_api(env, tmp_path_factory.mktemp("quota") / "api.log", repo_root())
    try:
        yield base, key, pg_url
    finally:
        stop_group(proc)
        truncate(pg_url)


def test_the_quota_holds_under_concurrent_submissions(api):
    base, key, url = api
    body = {"prompt": "what is 2 ?", "expected": "2"}

    def submit(_: int) -> int:
        with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": key}) as c:
            return c.post("/v1/diagnoses", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(submit, range(3 * QUOTA)))
    assert codes.count(202) == QUOTA and codes.count(429) == 2 * QUOTA, codes
    with session_scope(url) as session:
        assert session.exec(select(func.count()).select_from(Job)).one() == QUOTA


def test_wrong_keys_through_the_pages_draw_429(api):
    """Login-form and header attempts alternate: 14 in all, 7 of each, against a limit of 10,
    so a 429 comes only if both kinds are counted."""
    base, _, _ = api
    codes = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(7):
            codes.append(c.post("/login", data={"key": f"ds_bad{i}_x"}).status_code)
            codes.append(c.get("/reports", headers={"X-API-Key": f"ds_bad{i}_y"}).status_code)
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}, codes
