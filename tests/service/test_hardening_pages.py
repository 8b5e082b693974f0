"""The pages under abuse: integers too long to parse in their URLs and forms are 422s, another
key's reports and jobs leak nothing (not even counts), and the forms validate like the API and
offer the cheap options. SQLite and PostgreSQL."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from service.api_keys import create_api_key
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import Audit, Job
from service.report_store import store_report
from service.submissions import create_job
from tests.service.conftest import gsm8k_jsonl, key_id
from tests.service.factories import synthetic_report

HUGE = "9" * 5000  # past Python's 4300-digit int() limit


@pytest.mark.parametrize(
    "url",
    [
        f"/reports?limit={HUGE}",
        f"/reports?offset={HUGE}",
        f"/reports?feature={HUGE}",
        f"/features/{HUGE}",
        f"/audits?offset={HUGE}",
        "/reports?feature=²",  # a digit to str.isdigit, not to int()
    ],
)
def test_huge_integers_in_page_urls_are_422(client, url):
    assert client.get(url).status_code == 422


def test_a_huge_integer_in_the_report_pages_highlight_is_ignored(client, api_key):
    with session_scope() as session:
        owner = key_id(api_key)
        job = create_job(session, DiagnosisPayload(prompt="p", expected="1"), owner)
        rid, _ = store_report(session, synthetic_report(random.Random(0)), job.id, None, owner)
    assert client.get(f"/reports/{rid}?feature={HUGE}").status_code == 200


@pytest.mark.parametrize("limit", [HUGE, "99999999999999999999999", "0", "-1"])
def test_the_audit_forms_limit_is_checked_like_the_api(client, limit):
    resp = client.post(
        "/audits/new", data={"limit": limit}, files={"file": ("g.jsonl", gsm8k_jsonl(2))}
    )
    assert resp.status_code == 422
    with session_scope() as session:
        assert session.exec(select(Audit)).first() is None


@pytest.mark.parametrize(
    "fields",
    [{"max_new_tokens": "99999999999999999999999"}, {"null_draws": "-1"},
     {"mode": "regex"}, {"mode": "regex", "pattern": "^(a|a)+$"}],
)  # fmt: skip
def test_the_forms_validate_their_options(client, fields):
    resp = client.post("/diagnoses/new", data={"prompt": "what is 2 ?", "expected": "2"} | fields)
    assert resp.status_code == 422, resp.text
    resp = client.post("/audits/new", data=fields, files={"file": ("g.jsonl", gsm8k_jsonl(2))})
    assert resp.status_code == 422, resp.text
    with session_scope() as session:
        assert session.exec(select(Job)).first() is None


def test_the_forms_offer_and_store_the_cheap_options(client):
    for page in ("/diagnoses/new", "/audits/new"):
        html = client.get(page).text
        assert 'name="max_new_tokens"' in html and 'name="verify"' in html
        assert 'name="null_draws"' in html and 'name="pattern"' in html
    form = {"prompt": "what is 2 ?", "expected": "2", "max_new_tokens": "8", "null_draws": "0"}
    assert client.post("/diagnoses/new", data=form, follow_redirects=False).status_code == 303
    audit = client.post(
        "/audits/new", data={"max_new_tokens": "8", "verify": "true"},
        files={"file": ("g.jsonl", gsm8k_jsonl(1))}, follow_redirects=False,
    )  # fmt: skip
    assert audit.status_code == 303
    with session_scope() as session:
        options = [j.payload["options"] for j in session.exec(select(Job)).all()]
    assert {(o["max_new_tokens"], o["null_draws"], o["verify"]) for o in options} == {
        (8, 0, False),  # the diagnosis: verify left unchecked
        (8, 20, True),
    }


def test_another_keys_flagged_features_and_queue_are_not_shown(service_env):
    from api.main import create_app

    with session_scope() as session:
        key_a, key_b = create_api_key(session, "a"), create_api_key(session, "b")
        a_id = key_id(key_a)
        for seed in range(3):
            job = create_job(session, DiagnosisPayload(prompt="p", expected="1"), a_id)
            report = synthetic_report(random.Random(seed), correct=False, flagged=[77, 78])
            store_report(session, report, job.id, None, a_id)
            job.status = "done"
            session.add(job)
            session.commit()
        for _ in range(5):  # A's queue
            create_job(session, DiagnosisPayload(prompt="p", expected="1"), a_id)
    app = create_app()
    with (
        TestClient(app, headers={"X-API-Key": key_a}) as a,
        TestClient(app, headers={"X-API-Key": key_b}) as b,
    ):
        assert 'href="/features/77"' in a.get("/features").text  # the control: A sees its own
        assert 'href="/features/77"' not in b.get("/features").text
        posted = b.post("/v1/diagnoses", json={"prompt": "what is 2 ?", "expected": "2"})
        page = b.get(f"/diagnoses/{posted.json()['id']}").text
        assert "is waiting." in page and "behind" not in page
        posted = a.post("/v1/diagnoses", json={"prompt": "what is 2 ?", "expected": "2"})
        assert "behind 5 jobs" in a.get(f"/diagnoses/{posted.json()['id']}").text


def test_the_favicon_is_served(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert 'href="/favicon.ico"' in client.get("/diagnoses/new").text


def test_a_feature_page_without_ablation_results_says_so(client, api_key):
    with session_scope() as session:
        owner = key_id(api_key)
        job = create_job(session, DiagnosisPayload(prompt="p", expected="1"), owner)
        report = synthetic_report(random.Random(3), correct=False, flagged=[9])
        report.verification = None  # no ablation was run (verify off)
        store_report(session, report, job.id, None, owner)
    page = client.get("/features/9").text
    assert "fixed — of them" not in page and "none of them has an ablation result yet" in page


def test_the_job_and_audit_pages_cancel_their_work(client):
    job_id = client.post("/v1/diagnoses", json={"prompt": "what is 2 ?", "expected": "2"}).json()
    job_id = job_id["id"]
    assert f'action="/jobs/{job_id}/cancel"' in client.get(f"/diagnoses/{job_id}").text
    back = client.post(f"/jobs/{job_id}/cancel", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == f"/diagnoses/{job_id}"
    page = client.get(f"/diagnoses/{job_id}").text
    assert "was cancelled" in page and "/cancel" not in page
    audit = client.post("/v1/audits", files={"file": ("g.jsonl", gsm8k_jsonl(2))}).json()["id"]
    assert f'action="/audits/{audit}/cancel"' in client.get(f"/audits/{audit}").text
    assert client.post(f"/audits/{audit}/cancel", follow_redirects=False).status_code == 303
    assert client.get(f"/v1/audits/{audit}").json()["status"] == "cancelled"
    assert "/cancel" not in client.get(f"/audits/{audit}").text
