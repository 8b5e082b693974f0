"""Revisions 0004 and 0005 rewrite stored 1.x and 2.x report bodies in the current schema, on
SQLite and PostgreSQL.

The 1.x body is a real report of the pipeline at 826d81a (tests/fixtures/report_1x.json: the
bundled model on "Q: What is 57 + 68?", regex mode, written by that revision's diagnose)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from diagnostics.report import REPORT_SCHEMA_VERSION, DriftReport, _upgrade_1_to_2
from service.db import dispose_engines, migrate
from tests.service.conftest import PG_ADMIN_URL

OLD_BODY = json.loads((Path(__file__).parents[1] / "fixtures" / "report_1x.json").read_text())


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"driftscope_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _store(url: str, body: dict) -> None:
    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    meta = sa.MetaData()
    meta.reflect(engine)
    job, report = meta.tables["job"], meta.tables["report"]
    with engine.begin() as conn:
        conn.execute(sa.insert(job).values(id="j1", kind="diagnosis", status="done", payload={},
                                           deliveries=1, created_at=now))  # fmt: skip
        conn.execute(sa.insert(report).values(
            id="r1", job_id="j1", correct=False, failure_class="calculation_slip",
            model_id="m", sae_id="s", format_ok=True, n_flagged=5, prompt_preview="",
            expected="125", verdict=body["verdict"], created_at=now, body=body,
        ))  # fmt: skip
    engine.dispose()


def _stored_body(url: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        body = conn.execute(sa.text("SELECT body FROM report WHERE id = 'r1'")).scalar_one()
    engine.dispose()
    return json.loads(body) if isinstance(body, str) else body


def test_0004_upgrades_stored_1x_bodies(empty_db):
    migrate(empty_db, "0001")
    _store(empty_db, OLD_BODY)
    assert OLD_BODY["schema_version"].startswith("1.")

    migrate(empty_db)
    body = _stored_body(empty_db)
    assert body["schema_version"] == REPORT_SCHEMA_VERSION
    stored = DriftReport.model_validate(body)  # as it is, no upgrade on read
    old_flagged = OLD_BODY["flagged"][0]
    assert stored.flagged[0].feature == old_flagged["feature"]
    assert [a.position for a in stored.flagged[0].fires_at] == [
        a["feature"] for a in old_flagged["fires_at"]
    ]
    assert stored.divergence.near_tie is False  # p(model) 0.46 - p(corrected) 0.19 > NEAR_TIE
    assert stored.first_error is None
    assert OLD_BODY["control"]["fix_rate"] == 0.0  # the field the control no longer has is dropped
    assert stored.control.median_metric_change == OLD_BODY["control"]["median_metric_change"]
    assert "fix_rate" not in stored.control.model_dump()


def test_0005_upgrades_stored_2x_bodies(empty_db):
    """A body as 0004 stored it (2.0) gains `trace: null` and version 3.0 in place."""
    body_2 = _upgrade_1_to_2(OLD_BODY)
    assert body_2["schema_version"] == "2.0" and "trace" not in body_2
    migrate(empty_db, "0004")
    _store(empty_db, body_2)

    migrate(empty_db)
    body = _stored_body(empty_db)
    assert body["schema_version"] == REPORT_SCHEMA_VERSION == "3.0"
    assert body["trace"] is None
    stored = DriftReport.model_validate(body)  # as it is, no upgrade on read
    assert stored.flagged_ids == [f["feature"] for f in body_2["flagged"]]
    assert {k: v for k, v in body.items() if k not in ("trace", "schema_version")} == {
        k: v for k, v in body_2.items() if k != "schema_version"
    }
