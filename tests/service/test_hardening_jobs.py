"""Job life cycle under abuse: a slow user regex is refused at submission, a result is stored
only by the delivery holding the job's lease (so status and report never disagree), the
open-jobs quota holds under concurrent submissions, and queued or running work can be cancelled
by its owner. SQLite and PostgreSQL."""

from __future__ import annotations

import random

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
