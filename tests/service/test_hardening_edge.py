"""Text no database can store (NUL, lone surrogates), JSON nested too deep, and integers too long
to parse are 422 problems at the edge, for every text field of the API and the page forms and
every uploaded row; never a 500 (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from service.db import session_scope
from service.models import Audit, Job
from tests.service.conftest import gsm8k_jsonl

PROBLEM = "application/problem+json"
SAMPLES = (
    Path(__file__).parents[1]
    / "fixtures"
    / "lm_eval"
    / ("samples_gsm8k_local_2026-12-01T22-05-48.978713.jsonl")
)


def _refused(resp, status: int = 422) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    return resp.json()["detail"]


def _nothing_queued() -> None:
    with session_scope() as session:
        assert session.exec(select(Job)).first() is None
        assert session.exec(select(Audit)).first() is None


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/diagnoses", {"prompt": "what is 2 ?", "expected": "2", "output": "4\x00"}),
        ("/v1/diagnoses", {"prompt": "what is 2 ?", "expected": "2", "output": "a\ud800"}),
        ("/v1/diagnoses", {"prompt": "what is 2 \udfff?", "expected": "2"}),
        ("/v1/steer", {"prompt": "hi", "clamps": {"3": 1.0}, "concept": ["\ud800"]}),
        ("/v1/steer", {"prompt": "hi", "clamps": {"3": 1.0}, "\ud800": 1}),
    ],
)
def test_nul_and_lone_surrogates_in_json_bodies_are_422(client, path, body):
    raw = json.dumps(
        body
    )  # ASCII: the surrogate travels as its \\ud800 escape, as a client sends it
    detail = _refused(client.post(path, content=raw, headers={"content-type": "application/json"}))
    assert "NUL" in detail or "surrogate" in detail
    _nothing_queued()


def test_deeply_nested_json_bodies_are_422(client):
    raw = '{"prompt": "hi", "expected": "2", "options": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert "nested" in _refused(
        client.post("/v1/diagnoses", content=raw, headers={"content-type": "application/json"})
    )


@pytest.mark.parametrize(
    "form",
    [
        {"prompt": "what is 2 ?", "expected": "2", "output": "4\x00"},
        {"prompt": "what is 2 ?", "expected": "2\x00"},
    ],
)
def test_nul_in_the_diagnosis_form_is_422(client, form):
    _refused(client.post("/diagnoses/new", data=form))
    _nothing_queued()


def test_nul_in_the_feature_search_form_is_422(client):
    _refused(client.post("/features/search", data={"text": "a\x00b"}))
    _nothing_queued()


@pytest.mark.parametrize(
    "name,data",
    [
        ("s.jsonl", b'{"prompt": "what is 1 ?", "expected": "1", "x": "a\\ud800"}\n'),
        ("s.jsonl", b'{"prompt": "what is 1 \\udc00?", "expected": "1"}\n'),
        (
            "s.jsonl",
            b'{"prompt": "what is 1 ?", "expected": "1", "x": '
            + b"[" * 50_000
            + b"]" * 50_000
            + b"}\n",
        ),
        ("s.jsonl", b'{"prompt": "a", "expected": "1", "x": ' + b"[" * 40 + b"]" * 40 + b"}\n"),
    ],
)
def test_bad_uploaded_rows_are_422_naming_the_line(client, name, data):
    detail = _refused(client.post("/v1/audits", files={"file": (name, gsm8k_jsonl(2) + data)}))
    assert detail.startswith("line 3:"), detail
    _nothing_queued()


def test_nul_in_lm_eval_responses_is_422(client):
    lines = SAMPLES.read_text().splitlines()
    row = json.loads(lines[0])
    row["resps"] = [["The answer is\x00 7"]]
    data = "\n".join([json.dumps(row), *lines[1:]]).encode()
    detail = _refused(client.post("/v1/audits", files={"file": ("samples.jsonl", data)}))
    assert detail.startswith("line 1:") and "NUL" in detail
    _nothing_queued()
