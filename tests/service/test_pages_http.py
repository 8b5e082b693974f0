"""The web pages over HTTP (no browser): who may see them, the login form's guards, the headers,
and strict list filters. The pages themselves are driven in Chromium in tests/browser."""

from __future__ import annotations

import random
import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.pages.auth import KEY_COOKIE, safe_next
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import ApiKey
from service.report_store import store_report
from service.settings import get_settings
from service.submissions import create_job
from tests.service.factories import synthetic_report


def _store(n: int = 3, owner: int | None = None) -> list[str]:
    """`n` stored reports owned by key id `owner` (default: the `tests` key)."""
    if owner is None:
        with session_scope() as session:
            owner = session.exec(select(ApiKey.id).where(ApiKey.name == "tests")).first()
    rng = random.Random(1)
    ids = []
    with session_scope() as session:
        for _ in range(n):
            job = create_job(session, DiagnosisPayload(prompt="q", expected="1"), owner)
            report = synthetic_report(rng, correct=False)
            ids.append(store_report(session, report, job.id, owner_key_id=owner)[0])
    return ids


def test_pages_take_the_api_key_header_and_forbid_scripts(client):
    ids = _store()
    resp = client.get("/reports")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert all(f'href="/reports/{i}"' in resp.text for i in ids)
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # so no script may run
    assert client.get(f"/reports/{ids[0]}").status_code == 200


def test_without_a_key_pages_answer_the_login_form_and_the_api_a_problem(service_env):
    from api.main import create_app

    ids = _store(1)
    with TestClient(create_app()) as anonymous:
        page = anonymous.get(f"/reports/{ids[0]}")
        assert page.status_code == 401 and 'name="key"' in page.text
        assert f'value="/reports/{ids[0]}"' in page.text  # back to the page after logging in
        api = anonymous.get(f"/v1/reports/{ids[0]}")
        assert api.status_code == 401 and api.headers["content-type"] == "application/problem+json"


def test_login_sets_the_cookie_and_refuses_other_sites(service_env, api_key):
    from api.main import create_app

    with TestClient(create_app(), follow_redirects=False) as c:
        resp = c.post("/login", data={"key": api_key, "next": "//evil.example/x"})
        assert resp.status_code == 303 and resp.headers["location"] == "/reports"
        cookie = resp.headers["set-cookie"]
        assert cookie.startswith(f"{KEY_COOKIE}=") and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert c.get("/reports").status_code == 200  # the cookie is enough
        forged = c.post("/login", data={"key": api_key}, headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403 and forged.headers["content-type"].startswith("text/html")
        assert c.post("/login", data={"key": "ds_x_y"}).status_code == 401


def test_pages_are_open_when_the_api_is(service_env, monkeypatch):
    from api.main import create_app

    monkeypatch.setenv("DRIFTSCOPE_AUTH", "0")
    get_settings.cache_clear()
    _store(1)
    with TestClient(create_app()) as anonymous:
        assert anonymous.get("/reports").status_code == 200
        assert anonymous.get("/audits").status_code == 200


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("correct=maybe", "correct="),
        ("feature=abc", "feature="),
        ("failure_class=<b>", "failure_class="),
        ("offset=-1", "offset="),
        ("sort=prompt", "sort="),
    ],
)
def test_malformed_list_filters_are_a_422_naming_the_parameter(client, query, named):
    _store(2)
    resp = client.get(f"/reports?{query}")
    assert resp.status_code == 422 and resp.headers["content-type"].startswith("text/html")
    assert named in resp.text and "<b>" not in resp.text  # named, and escaped
    assert 'href="/reports/' not in resp.text  # no rows shown as if unfiltered


def test_empty_form_fields_mean_any_and_sorting_orders_the_rows(client):
    _store(3)
    resp = client.get("/reports?correct=&failure_class=&feature=&label=")
    assert resp.status_code == 200
    assert len(set(re.findall(r'href="/reports/([0-9a-f-]{36})"', resp.text))) == 3
    for sort in ("n_flagged", "-n_flagged", "correct", "-ablation_fixed"):
        assert client.get(f"/reports?sort={sort}").status_code == 200


def test_safe_next_keeps_only_local_paths():
    assert safe_next("/reports/1?feature=2") == "/reports/1?feature=2"
    bad_targets = (
        "//evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/\\evil",
        "/\t/evil.example",
        "",
    )
    for bad in bad_targets:
        assert safe_next(bad) == "/reports"


def test_list_pages_link_to_each_other(client):
    _store(3)
    first = client.get("/reports?limit=2&correct=false")
    assert 'href="/reports?limit=2&amp;correct=false&amp;offset=2" rel="next"' in first.text
    assert 'rel="prev"' not in first.text and "1–2 of 3" in first.text
    second = client.get("/reports?limit=2&correct=false&offset=2")
    assert 'rel="next"' not in second.text and "3–3 of 3" in second.text
    assert 'href="/reports?limit=2&amp;correct=false&amp;offset=0" rel="prev"' in second.text
