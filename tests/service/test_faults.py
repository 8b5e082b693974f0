"""Fault tests on private servers (never the shared 5432 / 6379): PostgreSQL stopped for 10 s
under a real uvicorn API (only 503s with Retry-After, on the same kept-alive connection, then
recovery); a Celery worker killed mid-job (the job finishes within ~90 s, once); Redis restarted
with queued jobs (every job finishes)."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import httpx
import pytest
from sqlmodel import select

from service.api_keys import create_api_key
from service.db import dispose_engines, migrate, session_scope
from service.job_payloads import DiagnosisPayload
from service.models import Job, JobStatus, Report
from service.report_store import store_report
from service.settings import Settings, get_settings
from service.submissions import create_job
from tests.service.conftest import FAST_OPTIONS, QUEUE, repo_root, service_vars, use_service_env
from tests.service.factories import synthetic_report
from tests.service.private_servers import (
    spawn,
    start_api,
    start_private_postgres,
    start_private_redis,
    stop_group,
    wait_until,
)
from workers.jobs import claim, finish, write_with_retry

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
    env = os.environ | service_vars(private_pg.url, runtime_dirs)
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


@pytest.fixture
def private_redis(tmp_path):
    server = start_private_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def queue_env(pg_url, runtime_dirs, private_redis, monkeypatch):
    """The shared test PostgreSQL database (emptied), a private Redis, the celery backend."""
    overrides = {
        "REDIS_URL": private_redis.url,
        "DRIFTSCOPE_QUEUE_BACKEND": "celery",
        "DRIFTSCOPE_AUTH": "0",
        "DRIFTSCOPE_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    yield use_service_env(monkeypatch, pg_url, runtime_dirs, overrides)
    get_settings.cache_clear()


def _worker(tmp_path, name: str):
    """A real prefork Celery worker process (its own process group)."""
    return spawn(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=prefork",
         "-c", "1", "-Q", QUEUE, "--loglevel=INFO", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-n", f"{name}@%h"],
        dict(os.environ), tmp_path / f"{name}.log", repo_root(),
    )  # fmt: skip


def _reconciler(tmp_path):
    return spawn(
        [sys.executable, "-m", "workers.reconciler"],
        dict(os.environ), tmp_path / "reconciler.log", repo_root(),
    )  # fmt: skip


def _submit(n: int, max_new_tokens: int = 4) -> list[str]:
    from fastapi.testclient import TestClient

    from api.main import create_app

    options = FAST_OPTIONS | {"max_new_tokens": max_new_tokens}
    with TestClient(create_app()) as client:
        ids = []
        for i in range(n):
            resp = client.post(
                "/v1/diagnoses",
                json={
                    "prompt": f"what is {i} plus 2 ?",
                    "expected": str(i + 2),
                    "options": options,
                },
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
    return ids


def _jobs(ids: list[str]) -> dict[str, Job]:
    with session_scope() as session:
        return {j.id: j for j in session.exec(select(Job).where(Job.id.in_(ids))).all()}  # type: ignore[attr-defined]


def _reports_per_job(ids: list[str]) -> dict[str, int]:
    with session_scope() as session:
        rows = session.exec(select(Report.job_id).where(Report.job_id.in_(ids))).all()  # type: ignore[attr-defined]
    return {job_id: rows.count(job_id) for job_id in ids}


def _show_logs(tmp_path) -> None:
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-2500:]}")


def test_a_killed_worker_s_job_finishes_once_within_90_s(queue_env, tmp_path):
    (job_id,) = _submit(1, max_new_tokens=64)
    first = _worker(tmp_path, "first")
    procs = [first]
    try:
        wait_until(lambda: _jobs([job_id])[job_id].status == "running", 480, "the job to start")
        stop_group(first, signal.SIGKILL)  # the whole worker, parent and child, mid-job
        killed_at = time.monotonic()
        assert _jobs([job_id])[job_id].status == "running"
        procs += [_worker(tmp_path, "second"), _reconciler(tmp_path)]
        wait_until(lambda: _jobs([job_id])[job_id].status == "done", 150, "the job to finish")
        took = time.monotonic() - killed_at
        job = _jobs([job_id])[job_id]
        assert job.deliveries == 2 and _reports_per_job([job_id]) == {job_id: 1}
        assert took < 90 + 30, f"finished {took:.0f} s after the kill"  # +30: a worker's start
        print(f"finished {took:.0f} s after the worker was killed")
    finally:
        for proc in procs:
            stop_group(proc)
        _show_logs(tmp_path)


def test_every_queued_job_finishes_after_a_redis_restart(queue_env, private_redis, tmp_path):
    monkey_env = {"DRIFTSCOPE_QUEUED_DEADLINE": "10"}
    os.environ.update(monkey_env)
    get_settings.cache_clear()
    worker = _worker(tmp_path, "worker")
    reconciler = _reconciler(tmp_path)
    try:
        ids = _submit(5)
        wait_until(
            lambda: any(j.status != "queued" for j in _jobs(ids).values()), 240, "a job to start"
        )
        private_redis.stop()  # the queued messages are lost with it (no persistence)
        time.sleep(2)
        private_redis.start()
        wait_until(
            lambda: all(j.status == "done" for j in _jobs(ids).values()), 240, "every job done"
        )
        assert _reports_per_job(ids) == {job_id: 1 for job_id in ids}  # each exactly once
        assert worker.poll() is None and reconciler.poll() is None
    finally:
        for key in monkey_env:
            os.environ.pop(key, None)
        stop_group(worker)
        stop_group(reconciler)
        _show_logs(tmp_path)


def test_a_finished_result_survives_a_database_blip(private_pg, runtime_dirs):
    """The worker's final write is retried while PostgreSQL is down, then lands once."""
    migrate(private_pg.url)
    settings = Settings(database_url=private_pg.url, result_write_retry_s=60)
    with session_scope(private_pg.url) as session:
        job = create_job(session, DiagnosisPayload(prompt="q", expected="1"))
        claimed = claim(session, job.id, settings)
    report = synthetic_report(random.Random(0), correct=False)

    def store(session) -> None:
        store_report(session, report, job.id)
        assert finish(session, job.id, claimed.deliveries, JobStatus.done)

    private_pg.stop()
    writer = threading.Thread(target=write_with_retry, args=(settings, store))
    writer.start()
    time.sleep(4)
    assert writer.is_alive()  # still retrying
    private_pg.start()
    writer.join(timeout=60)
    assert not writer.is_alive()
    dispose_engines()
    with session_scope(private_pg.url) as session:
        assert session.get(Job, job.id).status == "done"
        assert len(session.exec(select(Report).where(Report.job_id == job.id)).all()) == 1
