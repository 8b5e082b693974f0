"""Create jobs and audits: rows first (committed), then the queue (workers.queue.enqueue).

Shared by the HTTP routes and the in-process `driftscope audit`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session

from service.datasets import ProblemItem
from service.models import Audit, Job, JobKind, JobStatus, new_id
from diagnostics.diagnose import DiagnosisOptions


def create_job(session: Session, kind: JobKind, payload: dict) -> Job:
    """Write one queued job (committed)."""
    job = Job(
        kind=str(kind), status=str(JobStatus.queued), payload=payload, enqueued_at=datetime.now(UTC)
    )
    session.add(job)
    session.commit()
    return job


def diagnosis_payload(
    prompt: str, expected: str, reference: str | None, options: DiagnosisOptions
) -> dict:
    return {
        "prompt": prompt,
        "expected": expected,
        "reference": reference,
        "options": options.model_dump(mode="json"),
    }


def create_audit(
    session: Session,
    items: list[ProblemItem],
    options: DiagnosisOptions,
    *,
    name: str = "",
    source: str = "",
    extra: dict | None = None,
) -> tuple[Audit, list[str]]:
    """Write an audit and one queued diagnosis job per item (one transaction); returns job ids."""
    now = datetime.now(UTC)
    audit = Audit(
        name=name[:200],
        source=source[:300],
        total=len(items),
        options={"diagnosis": options.model_dump(mode="json")} | (extra or {}),
    )
    session.add(audit)
    session.flush()
    rows = [
        {
            "id": new_id(),
            "kind": str(JobKind.diagnosis),
            "status": str(JobStatus.queued),
            "payload": diagnosis_payload(item.prompt, item.expected, item.reference, options),
            "audit_id": audit.id,
            "item_index": item.index,
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
