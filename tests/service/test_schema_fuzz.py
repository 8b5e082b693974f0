"""Schemathesis over the whole OpenAPI schema, against the app on the real PostgreSQL (where NUL
characters, lone surrogates and 64-bit overflows used to be 500s): no server errors, and every
answer (status, content type, headers, body) is one the schema declares. NUL is in schemathesis's
alphabet for every string; lone surrogates (which only a JSON body can carry, as `\\ud800`
escapes) are put into generated JSON bodies by a second run. Bounded: a few dozen examples per
operation."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api_keys import create_api_key
from service.db import session_scope
from service.settings import get_settings
from tests.service.conftest import truncate, use_service_env

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
KEY: dict[str, str] = {}
APP: dict = {}  # a TestClient of the app under test, for the bodies schemathesis cannot send
EXAMPLES = 30  # per operation


@pytest.fixture(scope="module")
def api_schema(pg_url, runtime_dirs):
    with pytest.MonkeyPatch.context() as mp:
        # the local queue backend: nothing runs the jobs, only the API is tested
        use_service_env(mp, pg_url, runtime_dirs, {"DRIFTSCOPE_RATE_LIMIT": "100000"})
        with session_scope() as session:
            KEY["value"] = create_api_key(session, "schemathesis")
        from api.main import create_app

        app = create_app()
        with TestClient(app, headers={"X-API-Key": KEY["value"]}) as client:
            APP["client"] = client
            yield schemathesis.openapi.from_asgi("/v1/openapi.json", app)
        truncate(pg_url)
    get_settings.cache_clear()


def _fuzz(operation, seen: dict[str, set[int]]):
    """A hypothesis test of one operation, recording the statuses it got."""
    name = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def keeps_its_schema(case):
        response = case.call_and_validate(headers={"X-API-Key": KEY["value"]}, checks=CHECKS)
        seen[name].add(response.status_code)

    return keeps_its_schema


BAD_TEXT = ["\x00", "\ud800", "a\udfff", "\udc00\x00"]


def _spoil(body, bad: str, pick: int):
    """`body` with one of its strings (a value or a key; a new key when it has none) ending in
    `bad`, the `pick`-th in walk order."""
    slots: list[tuple] = []

    def walk(value, parent, key):
        if isinstance(value, str):
            slots.append(("value", parent, key))
        elif isinstance(value, dict):
            for k in list(value):
                slots.append(("key", value, k))
                walk(value[k], value, k)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, value, i)

    walk(body, None, None)
    if not slots:
        return {"note" + bad: body} if not isinstance(body, dict) else body | {bad: 1}
    kind, parent, key = slots[pick % len(slots)]
    if parent is None:
        return body + bad
    if kind == "value":
        parent[key] = parent[key] + bad
    else:
        parent[key + bad] = parent.pop(key)
    return body


def _fuzz_bad_text(operation, seen: dict[str, set[int]]):
    """A hypothesis test of one operation whose JSON body always carries a NUL or a lone
    surrogate somewhere."""
    name = f"{operation.method.upper()} {operation.path}"

    @given(
        case=operation.as_strategy(),
        bad=st.sampled_from(BAD_TEXT),
        pick=st.integers(0, 10_000),
    )
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def refuses_bad_text(case, bad, pick):
        body = _spoil(json.loads(json.dumps(case.body)), bad, pick)
        # sent as the ASCII JSON any client sends (the surrogate as its escape): schemathesis's
        # own schema check cannot hold a lone surrogate, so this run sends it itself
        response = APP["client"].request(
            operation.method.upper(), case.formatted_path, params=case.query or None,
            content=json.dumps(body), headers={"content-type": "application/json"},
        )  # fmt: skip
        declared = {int(code) for code in operation.definition.raw["responses"]}
        assert response.status_code < 500 and response.status_code in declared, response.text
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
        seen[name].add(response.status_code)

    return refuses_bad_text


def _body_types(operation) -> set[str]:
    body = operation.definition.raw.get("requestBody", {})
    return set(body.get("content", {}))


def test_json_bodies_with_nul_and_lone_surrogates_are_refused(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    with_json = [op for op in operations if "application/json" in _body_types(op)]
    assert len(with_json) >= 2  # diagnoses, steer
    seen: dict[str, set[int]] = defaultdict(set)
    for operation in with_json:
        _fuzz_bad_text(operation, seen)()
    print(dict(seen))
    assert all(codes == {422} for codes in seen.values()), seen  # every one refused at the edge


def test_the_api_keeps_its_schema(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    seen: dict[str, set[int]] = defaultdict(set)
    for operation in operations:
        _fuzz(operation, seen)()
    print(dict(seen))
    assert len(seen) == len(operations)
    assert any(code < 300 for codes in seen.values() for code in codes)  # some calls worked
    assert any(code == 422 for codes in seen.values() for code in codes)  # and some were refused
