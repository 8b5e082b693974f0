"""Create jobs and audits: rows first (committed); the caller then hands the ids to the queue
(workers.queue.enqueue), or runs them here (workers.embedded_audit).

Shared by the HTTP routes and the in-process `driftscope audit`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, func, select

from diagnostics.options import DiagnosisOptions
from service.datasets import ProblemItem
from service.job_payloads import DiagnosisPayload, JobPayload
from service.models import ApiKey, Audit, Job, JobKind, JobStatus, new_id


def open_jobs(session: Session, owner_key_id: int) -> int:
    """Jobs of this key still queued or running (its quota counts them)."""
    return session.exec(
        select(func.count())
        .select_from(Job)
        .where(
            Job.owner_key_id == owner_key_id,
            Job.status.in_([str(JobStatus.queued), str(JobStatus.running)]),  # type: ignore[attr-defined]
        )
    ).one()


def lock_key_quota(session: Session, owner_key_id: int) -> None:
    """Serialise this key's submissions until the session commits: a no-op UPDATE of its
    api_key row takes the row's lock (PostgreSQL) or the write lock (SQLite) before the open
    jobs are counted, so two concurrent submissions cannot both pass the quota on the same
    count. Ends the session's earlier transaction first (a read-only one in practice)."""
    session.commit()
    table = ApiKey.__table__
    session.execute(sa.update(table).where(table.c.id == owner_key_id).values(name=table.c.name))


def create_job(session: Session, payload: JobPayload, owner_key_id: int | None = None) -> Job:
    """Write one queued job of the payload's kind for `owner_key_id` (committed)."""
    job = Job(
        owner_key_id=owner_key_id,
        kind=str(payload.kind),
        status=str(JobStatus.queued),
        payload=payload.model_dump(mode="json"),
        enqueued_at=datetime.now(UTC),
    )
    session.add(job)
    session.commit()
    return job


def create_audit(
    session: Session,
    items: list[ProblemItem],
    options: DiagnosisOptions,
    *,
    name: str = "",
    source: str = "",
    extra: dict | None = None,
    owner_key_id: int | None = None,
) -> tuple[Audit, list[str]]:
    """Write an audit and one queued diagnosis job per item (one transaction), owned by
    `owner_key_id`; returns job ids."""
    now = datetime.now(UTC)
    audit = Audit(
        name=name[:200],
        source=source[:300],
        total=len(items),
        owner_key_id=owner_key_id,
        options={"diagnosis": options.model_dump(mode="json")} | (extra or {}),
    )
    session.add(audit)
    session.flush()
    rows = [
        {
            "id": new_id(),
            "kind": str(JobKind.diagnosis),
            "status": str(JobStatus.queued),
            "payload": DiagnosisPayload(
                prompt=item.prompt,
                expected=item.expected,
                reference=item.reference,
                output=item.output,
                options=options,
            ).model_dump(mode="json"),  # fmt: skip
            "audit_id": audit.id,
            "item_index": item.index,
            "owner_key_id": owner_key_id,
            "deliveries": 0,
            "created_at": now,
            "enqueued_at": now,
        }
        for item in items
    ]
    if rows:
        session.execute(sa.insert(Job.__table__), rows)
    session.commit()
    return audit, [r["id"] for r in rows]


def store_finished_diagnosis(database_url: str, payload: DiagnosisPayload, report) -> str:
    """Store a diagnosis run outside the service (`driftscope diagnose`) as a done job with its
    report, in `database_url` (migrated first), so `driftscope serve` shows it; the report id."""
    from service.db import migrate, session_scope
    from service.report_store import store_report

    migrate(database_url)
    now = datetime.now(UTC)
    with session_scope(database_url) as session:
        job = Job(
            kind=str(JobKind.diagnosis), status=str(JobStatus.done),
            payload=payload.model_dump(mode="json"), deliveries=1,
            enqueued_at=now, started_at=now, finished_at=now,
        )  # fmt: skip
        session.add(job)
        session.flush()
        report_id, _ = store_report(session, report, job.id)  # commits the job with it
    return report_id
