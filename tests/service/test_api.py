"""HTTP API on a real database (SQLite and PostgreSQL, both migrated by Alembic). Jobs are run by
workers.jobs.run_job in this process: the same code the Celery task runs."""

from __future__ import annotations

import io
import json
from collections import Counter

import pandas as pd
import pytest
from sqlmodel import func, select

from service.db import session_scope
from service.models import Audit, Job
from tests.service.conftest import FAST_OPTIONS, gsm8k_jsonl
from workers.jobs import run_job

PROBLEM = "application/problem+json"


def _diagnose(client, prompt="what is 2 plus 3 ?", expected="5", **extra):
    body = {"prompt": prompt, "expected": expected, "options": FAST_OPTIONS} | extra
    return client.post("/v1/diagnoses", json=body)


def _run_all(settings) -> None:
    with session_scope() as session:
        ids = session.exec(select(Job.id).where(Job.status == "queued")).all()
    for job_id in ids:
        assert run_job(job_id, settings=settings) == "done"


def test_diagnosis_is_accepted_then_reported(client, service_env):
    resp = _diagnose(client, reference="2 plus 3 = 5 #### 5")
    assert resp.status_code == 202
    location = resp.headers["Location"]
    job_id = resp.json()["id"]
    assert location == f"/v1/diagnoses/{job_id}"
    assert client.get(location).json()["status"] == "queued"

    assert run_job(job_id, settings=service_env) == "done"
    body = client.get(location).json()
    assert body["status"] == "done" and body["deliveries"] == 1
    report = body["report"]
    assert report["prompt"] == "what is 2 plus 3 ?"
    assert report["identity"]["sae_id"] == "random-sae"
    assert report["identity"]["model_id"] == service_env.model
    assert report["judgement"]["expected"] == "5"

    listed = client.get("/v1/reports").json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == body["report_id"]
    full = client.get(f"/v1/reports/{body['report_id']}").json()
    assert full["report"]["verdict"] == report["verdict"]


def test_report_filters(client, service_env):
    for prompt, expected in [("what is 2 plus 3 ?", "5"), ("what is 4 times 2 ?", "8")]:
        _diagnose(client, prompt, expected)
    _run_all(service_env)
    everything = client.get("/v1/reports").json()
    assert everything["count"] == 2
    wrong = [r for r in everything["data"] if not r["correct"]]
    assert client.get("/v1/reports", params={"correct": False}).json()["count"] == len(wrong)
    assert client.get("/v1/reports", params={"model_id": "nope"}).json()["count"] == 0
    assert client.get("/v1/reports", params={"sae_id": "random-sae"}).json()["count"] == 2
    page = client.get("/v1/reports", params={"limit": 1, "offset": 1}).json()
    assert len(page["data"]) == 1 and page["count"] == 2
    flagged = {r["id"]: {f["feature"] for f in r["flagged"]} for r in everything["data"]}
    # the seeded tiny model gets both wrong and flags latents: the filter checks must run
    assert all(flagged.values()), flagged
    for feature_id in set().union(*flagged.values()):
        by_feature = client.get("/v1/reports", params={"feature": feature_id}).json()
        expected_ids = {rid for rid, features in flagged.items() if feature_id in features}
        assert {r["id"] for r in by_feature["data"]} == expected_ids
        assert by_feature["count"] == len(expected_ids)
        feature = client.get(f"/v1/features/{feature_id}").json()
        assert feature["n_reports"] == len(expected_ids) and feature["atlas"] is None
    absent = min(set(range(128)) - set().union(*flagged.values()))
    assert client.get("/v1/reports", params={"feature": absent}).json()["count"] == 0
    bad = client.get("/v1/reports", params={"failure_class": "nonsense"})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM


def test_api_key_required_and_problem_json(client, service_env):
    resp = client.get("/v1/reports", headers={"X-API-Key": ""})
    assert resp.status_code == 401 and resp.headers["content-type"] == PROBLEM
    assert resp.json()["title"] == "Unauthorized"
    resp = client.get("/v1/reports", headers={"X-API-Key": "ds_abc_wrong"})
    assert resp.status_code == 401
    missing = client.get("/v1/diagnoses/does-not-exist")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert missing.headers["content-type"] == PROBLEM
    invalid = client.post("/v1/diagnoses", json={"prompt": ""})
    assert invalid.status_code == 422 and invalid.json()["errors"]
    assert client.get("/healthz").status_code == 200  # probes need no key
    assert client.get("/v1/openapi.json").json()["info"]["title"] == "driftscope"


def test_stored_keys_are_hashed(service_env, api_key):
    from datetime import UTC, datetime

    from service.api_keys import verify_api_key
    from service.models import ApiKey

    with session_scope() as session:
        row = session.exec(select(ApiKey)).one()
        assert api_key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
        assert verify_api_key(session, api_key) is not None
        assert verify_api_key(session, api_key + "x") is None
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        session.commit()
        assert verify_api_key(session, api_key) is None


def test_idempotency_key_replays_and_rejects_a_different_body(client):
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post(
        "/v1/diagnoses", json={"prompt": "what is 1 ?", "expected": "1"}, headers=headers
    )
    again = client.post(
        "/v1/diagnoses", json={"prompt": "what is 1 ?", "expected": "1"}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = client.post(
        "/v1/diagnoses", json={"prompt": "what is 2 ?", "expected": "2"}, headers=headers
    )
    assert other.status_code == 422 and other.headers["content-type"] == PROBLEM
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Job)).one() == 1


def test_size_limits(client, service_env, monkeypatch):
    from service.settings import get_settings

    too_long = "what " * (service_env.max_prompt_chars // 5 + 1)
    resp = _diagnose(client, prompt=too_long)
    assert resp.status_code == 413 and resp.headers["content-type"] == PROBLEM
    monkeypatch.setenv("DRIFTSCOPE_MAX_UPLOAD_BYTES", "100")
    monkeypatch.setenv("DRIFTSCOPE_MAX_AUDIT_ITEMS", "2")
    get_settings.cache_clear()
    big = client.post("/v1/audits", files={"file": ("big.jsonl", gsm8k_jsonl(20))})
    assert big.status_code == 413
    monkeypatch.setenv("DRIFTSCOPE_MAX_UPLOAD_BYTES", "100000")
    get_settings.cache_clear()
    many = client.post("/v1/audits", files={"file": ("many.jsonl", gsm8k_jsonl(5))})
    assert many.status_code == 413 and "limited to 2" in many.json()["detail"]
    ok = client.post(
        "/v1/audits", files={"file": ("many.jsonl", gsm8k_jsonl(5))}, data={"limit": "2"}
    )
    assert ok.status_code == 202 and ok.json()["total"] == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            b'{"question": "q", "answer": "#### 3"}\n{not json\n',
            "line 2: not valid JSON",
        ),
        ("bad.jsonl", b'{"question": "q", "answer": "no final answer"}\n', "#### <number>"),
        ("bad.csv", b"prompt,answer\nwhat,3\n", "need 'question' and 'answer'"),
        ("empty.csv", b"prompt,expected\n", "no problems"),
        ("bad.csv", b"prompt,expected\n,3\n", "'prompt' must be a non-empty string"),
    ],
)
def test_bad_uploads_are_refused_whole(client, name, content, message):
    resp = client.post("/v1/audits", files={"file": (name, content)})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM and message in resp.json()["detail"]
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Audit)).one() == 0
        assert session.exec(select(func.count()).select_from(Job)).one() == 0


def test_audit_source_must_be_a_file_or_a_known_dataset(client):
    assert client.post("/v1/audits", data={"limit": "2"}).status_code == 422
    unknown = client.post("/v1/audits", data={"dataset": "../../etc/passwd"})
    assert unknown.status_code == 422 and "examples" in unknown.json()["detail"]
    both = client.post(
        "/v1/audits", data={"dataset": "examples"}, files={"file": ("a.jsonl", gsm8k_jsonl(1))}
    )
    assert both.status_code == 422


def test_audit_from_upload_progress_summary_and_exports(client, service_env):
    resp = client.post(
        "/v1/audits",
        files={"file": ("gsm8k.jsonl", gsm8k_jsonl(4))},
        data={"limit": "3", "name": "tiny", "options": json.dumps(FAST_OPTIONS)},
    )
    assert resp.status_code == 202, resp.text
    audit_id = resp.json()["id"]
    assert resp.headers["Location"] == f"/v1/audits/{audit_id}"
    progress = client.get(f"/v1/audits/{audit_id}").json()
    assert (progress["total"], progress["queued"], progress["status"]) == (3, 3, "queued")

    _run_all(service_env)
    progress = client.get(f"/v1/audits/{audit_id}").json()
    assert (progress["status"], progress["done"], progress["failed"]) == ("done", 3, 0)
    assert progress["eta_s"] == 0 and progress["finished_at"] is not None

    summary = client.get(f"/v1/audits/{audit_id}/summary").json()
    assert summary["n_items"] == 3 and summary["n_reports"] == progress["done"]
    assert sum(summary["failure_classes"].values()) == summary["n_wrong"]

    listed = client.get("/v1/reports", params={"audit_id": audit_id}).json()
    assert listed["count"] == progress["done"]
    # the summary's numbers, counted again from the reports it summarises
    wrong = [r for r in listed["data"] if not r["correct"]]
    assert summary["n_wrong"] == len(wrong)
    assert summary["accuracy"] == pytest.approx(1 - len(wrong) / len(listed["data"]))
    per_feature = Counter(j for r in wrong for j in {f["feature"] for f in r["flagged"]})
    assert {f["feature"]: f["n_failures"] for f in summary["recurring_features"]} == {
        j: n for j, n in per_feature.items() if n >= 2
    }
    assert [f["share_of_failures"] for f in summary["recurring_features"]] == pytest.approx(
        [f["n_failures"] / len(wrong) for f in summary["recurring_features"]]
    )

    csv = client.get(f"/v1/audits/{audit_id}/export", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert list(frame["item_index"]) == [0, 1, 2]
    assert set(frame["expected"].astype(str)) <= {"1", "3", "5"}
    parquet = client.get(f"/v1/audits/{audit_id}/export", params={"format": "parquet"})
    assert parquet.status_code == 200
    table = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(table) == 3 and "flagged_features" in table.columns


def test_named_dataset_with_random_sample(client):
    resp = client.post(
        "/v1/audits", data={"dataset": "examples", "limit": "3", "sample": "random", "seed": "7"}
    )
    assert resp.status_code == 202, resp.text
    audit_id = resp.json()["id"]
    with session_scope() as session:
        rows = session.exec(select(Job.item_index).where(Job.audit_id == audit_id)).all()
    assert len(rows) == 3 and len(set(rows)) == 3 and max(rows) < 12
    again = client.post(
        "/v1/audits", data={"dataset": "examples", "limit": "3", "sample": "random", "seed": "7"}
    )
    with session_scope() as session:
        rows2 = session.exec(select(Job.item_index).where(Job.audit_id == again.json()["id"])).all()
    assert sorted(rows) == sorted(rows2)  # the sample is seeded


def test_steering_job(client, service_env):
    resp = client.post(
        "/v1/steer",
        json={"prompt": "what is 2 plus 3 ?", "clamps": {"5": -2.0}, "max_new_tokens": 3},
    )
    assert resp.status_code == 202
    assert run_job(resp.json()["id"], settings=service_env) == "done"
    body = client.get(resp.headers["Location"]).json()
    assert body["status"] == "done"
    assert body["result"]["clamps"] == {"5": -2.0} and isinstance(
        body["result"]["steered_text"], str
    )


def test_openapi_lists_the_versioned_endpoints(client):
    spec = client.get("/v1/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/v1/diagnoses", "/v1/diagnoses/{diagnosis_id}", "/v1/reports", "/v1/reports/{report_id}",
        "/v1/features/{feature_id}", "/v1/steer", "/v1/audits", "/v1/audits/{audit_id}",
        "/v1/audits/{audit_id}/summary", "/v1/audits/{audit_id}/export",
    } <= paths  # fmt: skip
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


def test_an_abandoned_idempotency_reservation_expires(client, service_env):
    from datetime import UTC, datetime, timedelta

    from api.schemas import DiagnosisRequest
    from service.idempotency import IN_FLIGHT, Idempotency
    from service.models import ApiKey, IdempotentRequest

    body = {"prompt": "what is 1 ?", "expected": "1"}
    request = DiagnosisRequest.model_validate(body).model_dump_json().encode()
    with session_scope() as session:  # requests that reserved their key and never answered
        scope = f"{session.exec(select(ApiKey.prefix)).one()}:POST:/v1/diagnoses"
        fingerprint = Idempotency(session, "k", scope, request).fingerprint
        for key, age in (("crashed", 3600), ("busy", 0)):
            session.add(
                IdempotentRequest(
                    key=key, scope=scope, status_code=IN_FLIGHT, fingerprint=fingerprint,
                    created_at=datetime.now(UTC) - timedelta(seconds=age),
                )
            )  # fmt: skip
        session.commit()

    def post(key: str):
        return client.post("/v1/diagnoses", json=body, headers={"Idempotency-Key": key})

    assert post("busy").status_code == 409  # still in flight: not taken over
    first = post("crashed")
    assert first.status_code == 202  # expired: this request takes the key over
    again = post("crashed")
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"]
    for bad in ("", "x" * 256, "a\tb"):
        resp = post(bad)
        assert resp.status_code == 422 and resp.headers["content-type"] == PROBLEM, bad


def test_audit_of_an_lm_eval_samples_upload(client, service_env):
    from tests.unit.test_eval_audit import FIXTURE

    upload = {"file": (FIXTURE.name, FIXTURE.read_bytes())}
    bad = client.post("/v1/audits", files=upload, data={"filter": "loose"})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert "strict-match" in bad.json()["detail"]
    resp = client.post(
        "/v1/audits",
        files=upload,
        data={"filter": "strict-match", "limit": "2", "options": json.dumps(FAST_OPTIONS)},
    )
    assert resp.status_code == 202, resp.text
    audit_id = resp.json()["id"]
    assert resp.json()["options"]["kind"] == "lm-eval"
    assert resp.json()["options"]["diagnosis"]["chat"] is False
    _run_all(service_env)
    frame = pd.read_csv(io.StringIO(client.get(f"/v1/audits/{audit_id}/export").text))
    assert list(frame["doc_id"]) == [0, 1]
    report_id = frame["report_id"][0]
    report = client.get(f"/v1/reports/{report_id}").json()
    assert report["report"]["output_source"] == "given"


def test_docs_work_offline_and_the_schema_declares_problems(client):
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200
        assert "://" not in "".join(re.findall(r"<script[^>]*>", html.text))
    schema = client.get("/v1/openapi.json").json()
    post = schema["paths"]["/v1/diagnoses"]["post"]
    for status in ("400", "401", "409", "413", "422", "429", "503"):
        assert "application/problem+json" in post["responses"][status]["content"], status
    assert "404" in schema["paths"]["/v1/reports/{report_id}"]["get"]["responses"]
    header = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
    bounds = header["schema"]["anyOf"][0]
    assert (bounds["minLength"], bounds["maxLength"]) == (1, 255)
    clamps = schema["components"]["schemas"]["SteerRequest"]["properties"]["clamps"]
    assert clamps["propertyNames"]["pattern"] == "^(0|[1-9][0-9]{0,9})$"


def test_sqlite_and_postgresql_timestamps_read_back_aware(client, service_env):
    from service.models import Job as JobRow

    assert _diagnose(client).status_code == 202
    with session_scope() as session:
        job = session.exec(select(JobRow)).one()
        assert job.created_at.tzinfo is not None and job.enqueued_at.tzinfo is not None
    listed = client.get("/v1/audits").json()
    assert listed["count"] == 0
    state = client.get(f"/v1/diagnoses/{job.id}").json()
    assert state["created_at"].endswith(("Z", "+00:00"))
