"""Idempotent report writes, redelivery, the delivery cap, the reconciler and the queries, on
SQLite and PostgreSQL (and the real Redis for the reconciler's re-send)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import func, select

from diagnostics.options import DiagnosisOptions
from diagnostics.report import ContextAttribution, SpanEffect
from service.audit_summary import export_frame, summarize
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import Job, JobStatus, Report, ReportFeature
from service.ownership import EVERYONE
from service.report_queries import ReportFilters, list_reports
from service.report_store import store_report
from service.submissions import create_job
from tests.service.conftest import FAST_OPTIONS
from tests.service.factories import synthetic_report
from workers.jobs import run_job, run_jobs
from workers.queue import enqueue
from workers.reconciler import reconcile_once


def _job(session, **fields) -> Job:
    opts = DiagnosisOptions.model_validate(FAST_OPTIONS)
    job = create_job(
        session, DiagnosisPayload(prompt="what is 2 plus 3 ?", expected="5", options=opts)
    )
    for key, value in fields.items():
        setattr(job, key, value)
    session.add(job)
    session.commit()
    return job


def _count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def test_store_report_twice_keeps_one(service_env):
    report = synthetic_report(random.Random(0), correct=False, flagged=[3, 4, 5])
    with session_scope() as session:
        job = _job(session)
        first, new1 = store_report(session, report, job.id)
        second, new2 = store_report(session, report, job.id)
        assert (new1, new2) == (True, False) and first == second
        assert _count(session, Report) == 1 and _count(session, ReportFeature) == 3


def test_redelivered_task_does_not_duplicate_the_report(service_env):
    with session_scope() as session:
        job_id = _job(session).id
    assert run_job(job_id, settings=service_env) == "done"
    assert run_job(job_id, settings=service_env) is None  # a redelivered message: nothing to do
    # the worker died after storing the report but before marking the job done
    with session_scope() as session:
        session.execute(
            sa.update(Job.__table__)
            .where(Job.__table__.c.id == job_id)
            .values(status="running", heartbeat_at=datetime.now(UTC))
        )
        session.commit()
        n_features = _count(session, ReportFeature)
    assert run_job(job_id, settings=service_env) is None  # its lease is live: not taken over
    with session_scope() as session:  # ... until the lease expires
        stale = datetime.now(UTC) - timedelta(seconds=service_env.lease_s + 1)
        session.execute(
            sa.update(Job.__table__).where(Job.__table__.c.id == job_id).values(heartbeat_at=stale)
        )
        session.commit()
    assert run_job(job_id, settings=service_env) == "done"
    with session_scope() as session:
        assert _count(session, Report) == 1 and _count(session, ReportFeature) == n_features
        assert session.get(Job, job_id).deliveries == 2


def test_run_jobs_batches_and_isolates_each_job(service_env):
    """Jobs run in batches through diagnose_batch: a job whose stored payload is broken fails
    alone, a finished one is left alone, the others each get one report, progress per job."""
    with session_scope() as session:
        ok = [_job(session).id, _job(session).id, _job(session).id]
        broken = _job(session, payload={"prompt": "x"}).id  # no expected answer
        finished = _job(session, status=JobStatus.done).id
    order: list[str] = []
    statuses = run_jobs(
        [ok[0], broken, ok[1], finished, ok[2]],
        settings=service_env,
        batch_size=2,
        on_done=lambda job_id, _status: order.append(job_id),
    )
    assert statuses == {ok[0]: "done", broken: "failed", ok[1]: "done", finished: None,
                        ok[2]: "done"}  # fmt: skip
    assert sorted(order) == sorted(statuses)
    with session_scope() as session:
        assert _count(session, Report) == 3
        assert "ValidationError" in session.get(Job, broken).error
        for job_id in ok:
            assert session.get(Job, job_id).status == "done"


def test_delivery_cap_fails_a_job_whose_worker_keeps_dying(service_env):
    with session_scope() as session:
        job_id = _job(session, status=JobStatus.running, deliveries=service_env.max_deliveries).id
    assert run_job(job_id, settings=service_env) == "failed"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.status == "failed" and "gave up after" in job.error
        assert _count(session, Report) == 0


def test_reconciler_resends_stuck_jobs_and_fails_capped_ones(service_env, monkeypatch):
    from service.settings import get_settings

    monkeypatch.setenv("DRIFTSCOPE_QUEUE_BACKEND", "celery")
    get_settings.cache_clear()
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(settings.queue_name)
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    with session_scope() as session:
        lost_running = _job(session, status=JobStatus.running, started_at=long_ago, deliveries=1).id
        capped = _job(
            session,
            status=JobStatus.running,
            started_at=long_ago,
            deliveries=settings.max_deliveries,
        ).id
        lost_queued = _job(session, enqueued_at=long_ago).id
        fresh_running = _job(
            session, status=JobStatus.running, started_at=datetime.now(UTC), deliveries=1
        ).id
        fresh_queued = _job(session).id
        beating = _job(
            session, status=JobStatus.running, started_at=long_ago, heartbeat_at=datetime.now(UTC)
        ).id
        waiting_queued = _job(session, enqueued_at=long_ago).id
    try:
        assert enqueue([waiting_queued], settings) == 1  # its message is still in the queue
        result = reconcile_once(settings)
        # re-sent though the queue is not empty; the one whose message waits there is left alone
        assert sorted(result.requeued) == sorted([lost_running, lost_queued])
        assert result.failed == [capped]
        with session_scope() as session:
            status = {j.id: j.status for j in session.exec(select(Job)).all()}
        assert status[lost_running] == status[lost_queued] == "queued"
        assert status[capped] == "failed"
        assert status[fresh_running] == "running" and status[fresh_queued] == "queued"
        assert status[beating] == "running" and status[waiting_queued] == "queued"
        assert client.llen(settings.queue_name) == 3  # the waiting one and the two re-sent
        # a second pass right away changes nothing (messages are queued, deadlines are fresh)
        assert reconcile_once(settings).requeued == []
    finally:
        client.delete(settings.queue_name)
        client.close()


def test_report_queries_filter_by_feature_label_class_and_date(service_env):
    rng = random.Random(1)
    now = datetime.now(UTC)
    with session_scope() as session:
        specs = [
            (
                False,
                [1, 2],
                now - timedelta(days=3),
            ),  # labels: "the word 'total'", "currency amounts"
            (False, [2, 9], now - timedelta(days=1)),  # "currency amounts", "the word 'total'"
            (False, [4], now - timedelta(hours=1)),  # "months of the year"
            (True, None, now),
        ]
        for correct, flagged, created in specs:
            store_report(
                session,
                synthetic_report(rng, correct=correct, flagged=flagged, created_at=created),
                _job(session).id,
            )

        def ids(**kw):
            rows, count = list_reports(session, ReportFilters(**kw), scope=EVERYONE, limit=10)
            assert count == len(rows)
            return rows

        assert len(ids()) == 4
        assert [r.created_at >= ids()[1].created_at for r in ids()][:2] == [
            True,
            True,
        ]  # newest first
        assert len(ids(feature=2)) == 2 and len(ids(feature=4)) == 1 and ids(feature=77) == []
        assert len(ids(label="CURRENCY")) == 2 and len(ids(label="month")) == 1
        assert ids(label="50%_") == []  # LIKE wildcards in the text are literal
        assert len(ids(correct=True)) == 1 and len(ids(correct=False)) == 3
        assert len(ids(created_after=now - timedelta(days=2))) == 3
        assert len(ids(created_before=now - timedelta(days=2))) == 1
        wrong_class = ids(correct=False)[0].failure_class
        assert all(r.failure_class == wrong_class for r in ids(failure_class=wrong_class))


def test_summary_counts_and_fix_rates():
    import pandas as pd

    items = pd.DataFrame(
        {
            "item_index": [0, 1, 2, 3, 4],
            "job_id": list("abcde"),
            "status": ["done", "done", "done", "done", "failed"],
            "error": [None, None, None, None, "boom"],
            "report_id": ["r0", "r1", "r2", "r3", None],
            "correct": [False, False, False, True, None],
            "failure_class": ["wrong_operation", "wrong_operation", "misread_number", "none", None],
            "format_ok": [True, True, False, True, None],
            "ablation_fixed": [True, False, True, None, None],
            "null_fix_rate": [0.2, 0.0, None, None, None],
            "n_flagged": [2, 1, 1, 0, None],
            "prompt": ["p"] * 5, "expected": ["1"] * 5, "extracted": ["2"] * 5, "verdict": ["v"] * 5,
        }
    )  # fmt: skip
    features = pd.DataFrame(
        {
            "report_id": ["r0", "r0", "r1", "r2"],
            "feature_id": [7, 8, 7, 7],
            "rank": [0, 1, 0, 0],
            "label": ["carry", "x", "carry", "carry"],
            "attribution": [-1.0, -0.5, -2.0, -3.0],
            "ablation_effect": [0.5, 0.1, 0.2, 0.3],
        }
    )
    s = summarize(items, features)
    assert (s["n_items"], s["n_reports"], s["n_failed_jobs"], s["n_wrong"]) == (5, 4, 1, 3)
    assert s["accuracy"] == 0.25 and s["strict_accuracy"] == 0.25
    assert s["failure_classes"] == {"misread_number": 1, "wrong_operation": 2}
    assert s["null_fix_rate"] == pytest.approx(0.1)  # over the failures with a null
    [top] = s["recurring_features"]  # feature 8 appears once: not recurring
    assert top["feature"] == 7 and top["label"] == "carry" and top["n_failures"] == 3
    assert top["fix_rate"] == pytest.approx(2 / 3) and "control_fix_rate" not in top
    assert top["share_of_failures"] == 1.0 and top["mean_attribution"] == pytest.approx(-2.0)
    exported = export_frame(items, features)
    assert list(exported["flagged_features"]) == ["7;8", "7", "7", "", ""]


def test_audit_frames_read_the_null_fix_rate_from_stored_reports(service_env):
    import pandas as pd

    from service.audit_summary import audit_frames
    from service.datasets import ProblemItem
    from service.submissions import create_audit

    rng = random.Random(3)
    opts = DiagnosisOptions.model_validate(FAST_OPTIONS)
    with session_scope(service_env.database_url) as session:
        items = [ProblemItem(index=i, prompt=f"q{i}", expected="1") for i in range(3)]
        audit, job_ids = create_audit(session, items, opts)
        for k, job_id in enumerate(job_ids[:2]):
            report = synthetic_report(rng, correct=False, flagged=[5, 6])
            report.null = report.null.model_copy(update={"fix_rate": 0.25 * (k + 1)})
            if k == 0:  # its first sentence, deleted, fixes the answer
                report.context = ContextAttribution(
                    effects=[
                        SpanEffect(kind="sentence", span=(0, 12), text="Question one", gap=0.5,
                                   gap_change=1.5, fixed=True),
                        SpanEffect(kind="number", span=(20, 21), text="7", replacement="8",
                                   gap=-0.5, gap_change=0.5),
                    ],
                    responsible_span=(0, 12), responsible_reason="deleting it fixes the answer",
                )  # fmt: skip
            store_report(session, report, job_id, audit.id)
        frame, features = audit_frames(session, audit.id)
    assert list(frame["null_fix_rate"][:2]) == [0.25, 0.5] and pd.isna(frame["null_fix_rate"][2])
    # the evidence the summary needs, from the bodies: the span and the null draws' counts
    assert list(frame["span_kind"]) == ["distracting", "not_measured", "not_measured"]
    assert frame["span_text"][0] == "Question one"
    assert list(frame["flipped"][:2]) == [True, True]  # metric_after +0.5 in both
    # one of 5 draws continued (not fixed); none flips the gap from -1 (changes up to +0.2)
    assert list(frame["null_fixed"][:2]) == [0, 0] and list(frame["null_fix_draws"][:2]) == [1, 1]
    assert list(frame["null_flipped"][:2]) == [0, 0] and list(frame["null_flip_draws"][:2]) == [
        5,
        5,
    ]
    assert sorted(features["feature_id"]) == [5, 5, 6, 6]
