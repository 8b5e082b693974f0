"""Bad input is refused at the edge with a 422 problem (never a 500 from the database): NUL
characters anywhere, integers past the columns' bounds, blank prompts, regexes that do not
compile; CSV exports neutralise cells a spreadsheet would run as formulas. SQLite and
PostgreSQL (where NUL and 64-bit overflows used to be 500s)."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest
from sqlmodel import select

from service.audit_summary import to_csv_bytes
from service.db import session_scope
from service.models import Job
from tests.service.conftest import FAST_OPTIONS, gsm8k_jsonl
from workers.jobs import run_job

PROBLEM = "application/problem+json"
BIG = {"int32": 2**31, "int64": 2**63, "huge": 2**64}


def _refused(resp, status: int = 422) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    return resp.json()


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "what\x00 is 2 ?", "expected": "2"},
        {"prompt": "what is 2 ?", "expected": "2\x00"},
        {"prompt": "what is 2 ?", "expected": "2", "reference": "\x00"},
        {"prompt": "   \n\t ", "expected": "2"},
        {"prompt": "what is 2 ?", "expected": " "},
        {"prompt": "what is 2 ?", "expected": "2", "options": {"pattern": "(unclosed"}},
        {"prompt": "what is 2 ?", "expected": "2", "options": {"pattern": "a\x00"}},
        {"prompt": "what is 2 ?", "expected": "2", "options": {"mode": "regex"}},
        {"prompt": "what is 2 ?", "expected": "2", "mode": "regex"},
        {"prompt": "what is 2 ?", "expected": "2", "options": {"seed": BIG["int64"]}},
        {"prompt": "what is 2 ?", "expected": "2", "options": {"seed": -1}},
    ],
)
def test_bad_diagnosis_bodies_are_422(client, body):
    assert _refused(client.post("/v1/diagnoses", json=body))["status"] == 422


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt": "hi", "clamps": {str(BIG["int32"]): 1.0}},
        {"prompt": "hi", "clamps": {"-1": 1.0}},
        {"prompt": "hi", "clamps": {"three": 1.0}},
        {"prompt": "hi", "clamps": {"3": 1e300}},
        {"prompt": "hi\x00", "clamps": {"3": 1.0}},
        {"prompt": " ", "clamps": {"3": 1.0}},
        {"prompt": "hi", "clamps": {"3": 1.0}, "concept": ["a\x00"]},
        {"prompt": "hi", "clamps": {"3": 1.0}, "concept": [BIG["int64"]]},
    ],
)
def test_bad_steering_bodies_are_422(client, raw):
    _refused(client.post("/v1/steer", json=raw))


def test_non_finite_clamps_are_422(client):
    body = b'{"prompt": "hi", "clamps": {"3": NaN}}'
    _refused(client.post("/v1/steer", content=body, headers={"Content-Type": "application/json"}))
    ok = client.post("/v1/steer", json={"prompt": "hi", "clamps": {"3": 2.0}})
    assert ok.status_code == 202
    with session_scope() as session:  # the keys are stored as the integers they mean
        assert session.exec(select(Job.payload)).one()["clamps"] == {"3": 2.0}


@pytest.mark.parametrize(
    "url",
    [
        "/v1/reports/abc%00def",
        "/v1/diagnoses/%00",
        "/v1/audits/a%00b/summary",
        "/v1/reports?label=x%00y",
        "/v1/reports?audit_id=%00",
        "/v1/reports?model_id=m%00",
        f"/v1/reports?feature={BIG['int32']}",
        f"/v1/reports?offset={BIG['int64']}",
        f"/v1/reports?limit={BIG['huge']}",
        f"/v1/audits?offset={BIG['int64']}",
        f"/v1/features/{BIG['int32']}",
        f"/v1/features/3?offset={BIG['int64']}",
        "/reports/a%00b",
        "/reports?label=%00",
        "/audits/%00",
    ],
)
def test_bad_urls_are_422(client, url):
    _refused(client.get(url))


def test_page_feature_ids_past_32_bits_are_422(client):
    assert client.get(f"/features/{BIG['int32']}").status_code == 422
    # a list filter out of range is a 422 naming it, never a silent all-rows list or a 500
    resp = client.get(f"/reports?feature={BIG['int64']}")
    assert resp.status_code == 422 and "feature" in resp.text


@pytest.mark.parametrize(
    "data,file",
    [
        ({"name": "a\x00b"}, None),
        ({"seed": str(BIG["int64"])}, None),
        ({"seed": "-1"}, None),
        ({"limit": str(BIG["int64"])}, None),
        ({"options": json.dumps({"pattern": "[z-a]"})}, None),
        ({"mode": "regex"}, None),
        ({"mode": "nonsense"}, None),
        ({}, b'{"question": "what\\u0000 is 1 ?", "answer": "#### 1"}\n'),
        ({}, b"prompt,expected\nwhat\x00 is,1\n"),
    ],
)
def test_bad_audit_forms_are_422(client, data, file):
    files = {"file": ("d.jsonl" if file and file.startswith(b"{") else "d.csv", file)}
    if file is None:
        files = {"file": ("g.jsonl", gsm8k_jsonl(1))}
    _refused(client.post("/v1/audits", data=data, files=files))
    with session_scope() as session:
        assert session.exec(select(Job)).first() is None  # nothing was queued


def test_csv_cells_that_would_run_as_formulas_are_neutralised():
    frame = pd.DataFrame(
        {
            "prompt": ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(1)",
                       "-2+3", "\tx", "\rx", "plain", "-3", "+4.5"],
            "n": range(9),
        }
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(to_csv_bytes(frame).decode(), newline="")))
    back = {"prompt": [r["prompt"] for r in rows], "n": [r["n"] for r in rows]}
    assert back["prompt"][:6] == [
        '\'=HYPERLINK("http://evil.example","x")', "'+cmd|' /C calc'!A0", "'@SUM(1)", "'-2+3",
        "'\tx", "'\rx",
    ]  # fmt: skip
    assert back["prompt"][6:] == ["plain", "-3", "+4.5"]  # numbers stay numbers
    assert back["n"] == [str(i) for i in range(9)]


def test_audit_export_neutralises_formulas(client, service_env):
    data = b'prompt,expected\n"=HYPERLINK(""http://evil.example"",""x"")",3\n'
    resp = client.post(
        "/v1/audits", files={"file": ("d.csv", data)}, data={"options": json.dumps(FAST_OPTIONS)}
    )
    assert resp.status_code == 202, resp.text
    with session_scope() as session:
        (job_id,) = session.exec(select(Job.id)).all()
    assert run_job(job_id, settings=service_env) == "done"
    exported = client.get(f"/v1/audits/{resp.json()['id']}/export").text
    (row,) = csv.DictReader(io.StringIO(exported, newline=""))
    assert row["prompt"] == '\'=HYPERLINK("http://evil.example","x")'
