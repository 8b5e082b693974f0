"""One API key never sees another's jobs, reports or audits, through the API or the pages; an
admin key sees all, unowned rows (written before ownership existed) included; the migration
leaves existing rows unowned. SQLite and PostgreSQL."""

from __future__ import annotations

import random

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import select

from service.api_keys import create_api_key
from service.db import migrate, session_scope
from service.job_payloads import DiagnosisPayload
from service.models import Job
from service.report_store import store_report
from service.submissions import create_job
from tests.service.conftest import FAST_OPTIONS, gsm8k_jsonl, key_id
from tests.service.factories import synthetic_report
from workers.jobs import run_job


def _clients(app, *keys: str) -> list[TestClient]:
    return [TestClient(app, headers={"X-API-Key": k}) for k in keys]


def test_keys_see_only_their_own_rows_and_admin_sees_all(service_env):
    from api.main import create_app

    with session_scope() as session:
        key_a = create_api_key(session, "a")
        key_b = create_api_key(session, "b")
        key_admin = create_api_key(session, "ops", admin=True)
    with session_scope() as session:  # a row from before ownership: nobody's
        job = create_job(session, DiagnosisPayload(prompt="q", expected="1"))
        unowned, _ = store_report(session, synthetic_report(random.Random(0)), job.id)

    app = create_app()
    a, b, admin = _clients(app, key_a, key_b, key_admin)
    with a, b, admin:
        posted = a.post(
            "/v1/diagnoses",
            json={"prompt": "what is 2 plus 3 ?", "expected": "5", "options": FAST_OPTIONS},
        )
        assert posted.status_code == 202
        job_id = posted.json()["id"]
        steer = a.post("/v1/steer", json={"prompt": "hello", "clamps": {"3": 2.0}})
        assert steer.status_code == 202
        audit = a.post(
            "/v1/audits",
            files={"file": ("g.jsonl", gsm8k_jsonl(2))},
            data={"options": '{"max_new_tokens": 4, "top_k": 3, "control_draws": 1}'},
        )
        assert audit.status_code == 202
        audit_id = audit.json()["id"]
        with session_scope() as session:
            owners = set(session.exec(select(Job.owner_key_id).where(Job.id != job.id)).all())
        assert owners == {key_id(key_a)}
        assert run_job(job_id, settings=service_env) == "done"

        report_id = a.get(f"/v1/diagnoses/{job_id}").json()["report_id"]
        assert report_id
        feature = a.get(f"/v1/reports/{report_id}").json()["report"]["flagged"][0]["feature"]

        # key B: 404 for every id of key A, empty lists and counts
        for url in (
            f"/v1/diagnoses/{job_id}",
            f"/v1/steer/{steer.json()['id']}",
            f"/v1/reports/{report_id}",
            f"/v1/reports/{unowned}",
            f"/v1/audits/{audit_id}",
            f"/v1/audits/{audit_id}/summary",
            f"/v1/audits/{audit_id}/export",
        ):
            resp = b.get(url)
            assert resp.status_code == 404, url
            assert resp.headers["content-type"] == "application/problem+json"
            assert admin.get(url).status_code == 200, url
        assert b.get("/v1/reports").json()["count"] == 0
        assert b.get("/v1/reports", params={"audit_id": audit_id}).json()["count"] == 0
        assert b.get("/v1/audits").json()["count"] == 0
        assert b.get(f"/v1/features/{feature}").json()["n_reports"] == 0
        # key A: its own rows only (not the unowned one); admin: everything
        assert a.get("/v1/reports").json()["count"] == 1
        assert a.get("/v1/audits").json()["count"] == 1
        assert a.get(f"/v1/features/{feature}").json()["n_reports"] == 1
        assert a.get(f"/v1/reports/{unowned}").status_code == 404
        assert admin.get("/v1/reports").json()["count"] == 2
        assert admin.get("/v1/audits").json()["count"] == 1

        # the pages, with the key in the header and in the login cookie
        for url in (f"/reports/{report_id}", f"/audits/{audit_id}"):
            assert b.get(url).status_code == 404, url
            assert a.get(url).status_code == 200, url
            assert admin.get(url).status_code == 200, url
        assert report_id not in b.get("/reports").text
        assert report_id in a.get("/reports").text
        assert audit_id not in b.get("/audits").text
        assert audit_id in a.get("/audits").text
        assert report_id not in b.get(f"/features/{feature}").text
        assert report_id in a.get(f"/features/{feature}").text
        assert unowned not in a.get("/reports").text and unowned in admin.get("/reports").text
    with TestClient(app, follow_redirects=False) as browser:
        assert browser.post("/login", data={"key": key_b}).status_code == 303
        assert browser.get(f"/reports/{report_id}").status_code == 404
        assert report_id not in browser.get("/reports").text


def test_migration_leaves_existing_rows_unowned(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO job (id, kind, status, payload, deliveries, created_at) "
                "VALUES ('old-job', 'diagnosis', 'done', '{}', 1, '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO api_key (prefix, key_hash, name, created_at) "
                "VALUES ('p', 'h', 'old', '2026-01-01 00:00:00')"
            )
        )
    migrate(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT owner_key_id FROM job")).scalar_one() is None
        assert conn.execute(sa.text("SELECT admin FROM api_key")).scalar_one() in (0, False)
    engine.dispose()
