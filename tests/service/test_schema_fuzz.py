"""Schemathesis over the whole OpenAPI schema, against the app on the real PostgreSQL (where NUL
characters and 64-bit overflows used to be 500s): no server errors, and every answer (status,
content type, headers, body) is one the schema declares. Bounded: a few dozen examples per
operation."""

from __future__ import annotations

from collections import defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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
from tests.service.conftest import QUEUE, REDIS_URL, truncate

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
KEY: dict[str, str] = {}
EXAMPLES = 30  # per operation


@pytest.fixture(scope="module")
def api_schema(pg_url, runtime_dirs):
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": REDIS_URL,
        "DRIFTSCOPE_QUEUE": QUEUE,
        "DRIFTSCOPE_QUEUE_BACKEND": "local",  # nothing runs the jobs: only the API is tested
        "DRIFTSCOPE_MODEL": runtime_dirs["model"],
        "DRIFTSCOPE_SAE": runtime_dirs["sae"],
        "DRIFTSCOPE_AUTH": "1",
        "DRIFTSCOPE_RATE_LIMIT": "100000",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        get_settings.cache_clear()
        truncate(pg_url)
        with session_scope() as session:
            KEY["value"] = create_api_key(session, "schemathesis")
        from api.main import create_app

        yield schemathesis.openapi.from_asgi("/v1/openapi.json", create_app())
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
