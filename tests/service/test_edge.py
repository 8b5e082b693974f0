"""The edge guard on a real uvicorn process: the API key is checked before the body is read, bodies
are limited while they stream (declared, undeclared and chunked), requests per key and wrong-key
attempts are rate limited (429 + Retry-After), and a key's queued jobs are capped by a quota."""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest
from sqlmodel import func, select

from service.api_keys import create_api_key
from service.db import session_scope
from service.models import Job
from tests.service.conftest import gsm8k_jsonl, repo_root, service_vars, truncate
from tests.service.private_servers import start_api, stop_group

LIMIT = 100_000
SLACK = 64 * 1024


@pytest.fixture(scope="module")
def api(sqlite_url, runtime_dirs, tmp_path_factory):
    """One uvicorn for the module (the guard does not depend on the database: SQLite)."""
    truncate(sqlite_url)
    with session_scope(sqlite_url) as session:
        key = create_api_key(session, "edge")
    env = dict(os.environ) | service_vars(sqlite_url, runtime_dirs, {
        "DRIFTSCOPE_MAX_UPLOAD_BYTES": str(LIMIT),
        "DRIFTSCOPE_RATE_LIMIT": "40",
        "DRIFTSCOPE_AUTH_FAILURES_LIMIT": "10",
        "DRIFTSCOPE_MAX_OPEN_JOBS": "3",
    })  # fmt: skip
    proc, base = start_api(env, tmp_path_factory.mktemp("edge") / "api.log", repo_root())
    try:
        yield base, key, sqlite_url
    finally:
        stop_group(proc)
        truncate(sqlite_url)


def _send_chunked(base: str, path: str, headers: dict[str, str], total: int) -> tuple[str, int]:
    """POST `total` bytes chunked (64 KiB chunks) until the server answers; (status line, bytes
    sent before the answer came)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
    head += "Content-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    chunk = b"x" * 65536
    sent = 0
    sock.setblocking(False)
    answer = b""
    try:
        while sent < total:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.05)
                continue
            sent += len(chunk)
        sock.setblocking(True)
        deadline = time.monotonic() + 10
        while b"\r\n" not in answer and time.monotonic() < deadline:
            answer += sock.recv(65536)
    finally:
        sock.close()
    return answer.split(b"\r\n", 1)[0].decode(), sent


def test_no_key_is_refused_before_the_body_is_read(api):
    base, _, _ = api
    status, sent = _send_chunked(base, "/v1/diagnoses", {}, 150_000_000)
    assert " 401 " in status
    assert sent < 5_000_000  # answered long before the 150 MB were sent


def test_chunked_bodies_are_cut_at_the_limit(api):
    base, key, _ = api
    status, sent = _send_chunked(base, "/v1/diagnoses", {"X-API-Key": key}, 150_000_000)
    assert " 413 " in status
    assert sent < 5_000_000


def test_declared_and_undeclared_bodies_over_the_limit_are_413(api):
    base, key, _ = api
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as c:
        declared = c.post("/v1/diagnoses", content=b"x" * (LIMIT + SLACK + 1))
        assert declared.status_code == 413
        assert declared.headers["content-type"] == "application/problem+json"

        def stream():
            for _ in range(8):
                yield b"y" * 65536

        undeclared = c.post(
            "/v1/diagnoses", content=stream(), headers={"Content-Type": "application/json"}
        )
        assert undeclared.status_code == 413
        big = gsm8k_jsonl(3000)
        assert len(big) > LIMIT + SLACK
        upload = c.post("/v1/audits", files={"file": ("g.jsonl", big)})
        assert upload.status_code == 413 and upload.json()["status"] == 413
        small = c.post("/v1/diagnoses", json={"prompt": "what is 1 ?", "expected": "1"})
        assert small.status_code == 202  # under the limit: accepted


def test_rate_limits_and_the_queue_quota(api):
    base, key, url = api
    with httpx.Client(base_url=base, timeout=30) as c:
        statuses = [c.get("/v1/reports", headers={"X-API-Key": f"ds_x{i}_bad"}) for i in range(12)]
        codes = [r.status_code for r in statuses]
        first_429 = codes.index(429)  # 10 a minute from this address (the test above sent one)
        assert set(codes[:first_429]) == {401} and 8 <= first_429 <= 10
        assert set(codes[first_429:]) == {429}
        assert int(statuses[-1].headers["Retry-After"]) >= 1

        headers = {"X-API-Key": key}
        body = {"prompt": "what is 2 ?", "expected": "2"}
        posted = [c.post("/v1/diagnoses", json=body, headers=headers) for _ in range(4)]
        assert [r.status_code for r in posted] == [202, 202, 429, 429]  # one queued before
        assert posted[-1].json()["title"] == "Quota exceeded" and posted[-1].headers["Retry-After"]
        with session_scope(url) as session:
            assert session.exec(select(func.count()).select_from(Job)).one() == 3  # the quota
        audit = c.post("/v1/audits", files={"file": ("g.jsonl", gsm8k_jsonl(1))}, headers=headers)
        assert audit.status_code == 429

        codes = [c.get("/v1/reports", headers=headers).status_code for _ in range(40)]
        assert 429 in codes and codes[0] == 200  # 40 a minute, some already used above
        limited = c.get("/v1/reports", headers=headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
