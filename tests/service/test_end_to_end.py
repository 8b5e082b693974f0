"""End to end: a real `celery worker --pool=prefork -c 1` process on the real Redis, the API on the
same PostgreSQL database; diagnoses and an audit go in through HTTP, reports come back out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from diagnostics.options import DiagnosisOptions
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import JobStatus
from service.submissions import create_job
from tests.service.conftest import FAST_OPTIONS, gsm8k_jsonl, repo_root
from tests.service.private_servers import stop_group
from workers.reconciler import reconcile_once

pytestmark = pytest.mark.e2e
DEADLINE_S = 300


@pytest.fixture
def pg_service_env(pg_url, runtime_dirs, monkeypatch):
    from service.settings import get_settings
    from tests.service.conftest import QUEUE, REDIS_URL, use_service_env

    overrides = {"DRIFTSCOPE_QUEUE_BACKEND": "celery", "DRIFTSCOPE_AUTH": "0"}
    settings = use_service_env(monkeypatch, pg_url, runtime_dirs, overrides)
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(QUEUE)
    yield settings
    client.delete(QUEUE)
    client.close()
    get_settings.cache_clear()


@pytest.fixture
def celery_worker(pg_service_env, tmp_path):
    """A real prefork worker process (its own process group, killed at the end)."""
    env = os.environ | {"DRIFTSCOPE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=prefork",
         "-c", "1", "-Q", pg_service_env.queue_name, "--loglevel=INFO", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=repo_root(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_group(proc)
        log.close()
        print((tmp_path / "worker.log").read_text()[-3000:])


def _wait(client, url: str, done) -> dict:
    start = time.monotonic()
    while True:
        body = client.get(url).json()
        if done(body):
            return body
        if time.monotonic() - start > DEADLINE_S:
            raise AssertionError(f"timed out waiting for {url}: {body}")
        time.sleep(0.5)


def test_diagnoses_and_an_audit_through_a_real_worker(pg_service_env, celery_worker):
    from fastapi.testclient import TestClient

    from api.main import create_app

    # a job whose worker died long ago: the reconciler must send it again
    with session_scope() as session:
        opts = DiagnosisOptions.model_validate(FAST_OPTIONS)
        stuck = create_job(
            session, DiagnosisPayload(prompt="what is 3 plus 3 ?", expected="6", options=opts)
        )
        stuck.status, stuck.deliveries = JobStatus.running, 1
        stuck.started_at = datetime.now(UTC) - timedelta(hours=2)
        session.add(stuck)
        session.commit()
        stuck_id = stuck.id
    assert reconcile_once(pg_service_env).requeued == [stuck_id]

    with TestClient(create_app()) as client:
        locations = []
        for prompt, expected in [("what is 2 plus 3 ?", "5"), ("how many apples ?", "7")]:
            resp = client.post(
                "/v1/diagnoses",
                json={"prompt": prompt, "expected": expected, "options": FAST_OPTIONS},
            )
            assert resp.status_code == 202
            locations.append(resp.headers["Location"])
        resp = client.post(
            "/v1/audits",
            files={"file": ("gsm8k.jsonl", gsm8k_jsonl(3))},
            data={"options": json.dumps(FAST_OPTIONS), "name": "e2e"},
        )
        assert resp.status_code == 202
        audit_url = resp.headers["Location"]

        finished = [
            _wait(client, loc, lambda b: b["status"] in ("done", "failed")) for loc in locations
        ]
        for body in finished:
            assert body["status"] == "done", body
            assert body["report"]["identity"]["sae_id"] == "random-sae"
        progress = _wait(client, audit_url, lambda b: b["status"] == "done")
        assert (progress["done"], progress["failed"], progress["total"]) == (3, 0, 3)
        assert (
            _wait(client, f"/v1/diagnoses/{stuck_id}", lambda b: b["status"] == "done")[
                "deliveries"
            ]
            == 2
        )

        reports = client.get("/v1/reports", params={"limit": 50}).json()
        assert reports["count"] == 6  # 2 diagnoses + 3 audit items + the reconciled job
        audit_id = progress["id"]
        in_audit = client.get("/v1/reports", params={"audit_id": audit_id}).json()
        assert in_audit["count"] == 3
        report_id = in_audit["data"][0]["id"]
        assert client.get(f"/v1/reports/{report_id}").json()["report"]["expected"] in {
            "1",
            "3",
            "5",
        }
        summary = client.get(f"{audit_url}/summary").json()
        assert summary["n_reports"] == 3 and summary["progress"]["status"] == "done"
    assert celery_worker.poll() is None  # the worker is still alive: nothing crashed it
