"""Job life cycle under abuse: a slow user regex is refused at submission, a result is stored
only by the delivery holding the job's lease (so status and report never disagree), the
open-jobs quota holds under concurrent submissions, and queued or running work can be cancelled
by its owner. SQLite and PostgreSQL."""

from __future__ import annotations

import random
import time

import sqlalchemy as sa
from sqlmodel import func, select

from diagnostics.options import DiagnosisOptions
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import Job, JobStatus, Report
from service.submissions import create_job
from tests.service.conftest import FAST_OPTIONS
from tests.service.factories import synthetic_report
from workers.jobs import _store, claim

PROBLEM = "application/problem+json"


def _job(session) -> Job:
    opts = DiagnosisOptions.model_validate(FAST_OPTIONS)
    return create_job(
        session, DiagnosisPayload(prompt="what is 2 plus 3 ?", expected="5", options=opts)
    )


def test_a_backtracking_pattern_is_a_422_at_submission(client):
    body = {
        "prompt": "what is 2 ?",
        "expected": "2",
        "mode": "regex",
        "options": {"pattern": "^(a|a)+$"},
    }
    resp = client.post("/v1/diagnoses", json=body)
    assert resp.status_code == 422 and resp.headers["content-type"] == PROBLEM
    assert "backtracks" in resp.text


def test_a_delivery_that_lost_its_lease_stores_nothing(service_env):
    """The reconciler failed the job while delivery 1 still ran (its heartbeat had stopped):
    delivery 1's late report is discarded, so the failed job has no report."""
    report = synthetic_report(random.Random(0), correct=False, flagged=[3, 4])
    with session_scope() as session:
        job = claim(session, _job(session).id, service_env)
        assert job is not None and job.deliveries == 1
        session.execute(
            sa.update(Job.__table__).where(Job.__table__.c.id == job.id)
            .values(status=str(JobStatus.failed), error="no result after 3 deliveries")
        )  # fmt: skip
        session.commit()
        assert _store(job, 1, report)(session) is False
        assert session.exec(select(func.count()).select_from(Report)).one() == 0
        assert session.get(Job, job.id, populate_existing=True).status == "failed"

        other = claim(session, _job(session).id, service_env)
        assert _store(other, 1, report)(session) is True
        stored = session.get(Job, other.id, populate_existing=True)
        assert stored.status == "done"
        assert session.exec(select(Report.job_id)).all() == [other.id]


def test_owners_cancel_queued_jobs_and_audits(client, service_env):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from service.api_keys import create_api_key
    from workers.jobs import run_job, run_jobs

    job_id = client.post("/v1/steer", json={"prompt": "hi", "clamps": {"3": 2.0}}).json()["id"]
    with session_scope() as session:
        other = create_api_key(session, "other")
    with TestClient(create_app(), headers={"X-API-Key": other}) as stranger:
        assert stranger.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.get(f"/v1/steer/{job_id}").json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert run_job(job_id, settings=service_env) is None  # never claimed

    from tests.service.conftest import gsm8k_jsonl

    audit = client.post("/v1/audits", files={"file": ("g.jsonl", gsm8k_jsonl(3))}).json()
    progress = client.post(f"/v1/audits/{audit['id']}/cancel")
    assert progress.status_code == 200, progress.text
    body = progress.json()
    assert (body["status"], body["cancelled"], body["queued"]) == ("cancelled", 3, 0)
    assert body["finished_at"] is not None
    with session_scope() as session:
        ids = session.exec(select(Job.id).where(Job.audit_id == audit["id"])).all()
    assert set(run_jobs(list(ids), settings=service_env).values()) == {None}
    assert client.post(f"/v1/audits/{audit['id']}/cancel").status_code == 409


def test_a_cancelled_running_job_stops_and_stores_nothing(client, service_env):
    """The worker's heartbeat finds the job cancelled (`lost`: its diagnosis stops at the next
    stage boundary) and the result it might still finish is discarded."""
    from workers.jobs import Heartbeat

    with session_scope() as session:
        job = _job(session)
        job.owner_key_id = None
        session.add(job)
        session.commit()
        running = claim(session, job.id, service_env)
    fast = service_env.model_copy(update={"heartbeat_interval_s": 0.05})
    with Heartbeat(fast, job.id, running.deliveries) as beat:
        time.sleep(0.3)
        assert not beat.lost  # the control: still this delivery's
        with session_scope() as session:
            from service.cancellation import cancel_job

            assert cancel_job(session, job.id)
        deadline = time.monotonic() + 5
        while not beat.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.lost
    report = synthetic_report(random.Random(0), correct=False, flagged=[3])
    with session_scope() as session:
        assert _store(running, running.deliveries, report)(session) is False
        assert session.get(Job, job.id, populate_existing=True).status == "cancelled"
        assert session.exec(select(func.count()).select_from(Report)).one() == 0


def test_readyz_reports_the_broker(client, monkeypatch):
    from service.settings import get_settings

    monkeypatch.setenv("DRIFTSCOPE_QUEUE_BACKEND", "celery")
    get_settings.cache_clear()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["broker"] == "ok"  # the test Redis
    monkeypatch.setenv("REDIS_URL", "redis://:pw@127.0.0.1:1/0")
    get_settings.cache_clear()
    down = client.get("/readyz")
    assert down.status_code == 503 and down.headers["content-type"] == PROBLEM
    assert "broker" in down.json()["detail"] and "pw" not in down.json()["detail"]


def test_a_failure_quoting_unstorable_text_still_fails_the_job(service_env):
    """A job whose error message quotes a lone surrogate or a NUL (from its own input) is failed
    with that message made storable, never left running by a write that cannot be stored."""
    from workers.jobs import finish

    with session_scope() as session:
        job = claim(session, _job(session).id, service_env)
        assert finish(session, job.id, 1, JobStatus.failed, error="KeyError: 'a\ud800' \x00 here")
        stored = session.get(Job, job.id, populate_existing=True)
        assert stored.status == "failed" and stored.error == "KeyError: 'a?' ? here"
