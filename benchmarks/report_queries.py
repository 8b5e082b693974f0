"""Latency of report list/filter queries over N stored reports, on SQLite and PostgreSQL.

    .venv/bin/python -m benchmarks.report_queries --n 10000      # from the repository root

Inserts N schema-valid synthetic DriftReports (through service.report_store, as the workers do) into a
fresh SQLite file and a fresh PostgreSQL database (both created by the Alembic migration), then
times each query of GET /v1/reports (service.report_queries.list_reports, the same code) and prints
p50/p99 in milliseconds. Writes benchmarks/results/report_queries.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from service.db import dispose_engines, migrate, session_scope
from service.models import Job
from service.ownership import EVERYONE
from service.report_queries import ReportFilters, list_reports
from service.report_store import store_report
from tests.service.factories import synthetic_report

RESULTS = Path(__file__).parent / "results" / "report_queries.json"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

QUERIES: dict[str, ReportFilters] = {
    "newest page": ReportFilters(),
    "wrong answers": ReportFilters(correct=False),
    "failure class": ReportFilters(failure_class="wrong_operation"),
    "flagged feature": ReportFilters(feature=42),
    "label text": ReportFilters(label="currency"),
    "audit": ReportFilters(audit_id="AUDIT"),
    "model + sae": ReportFilters(model_id="tiny-llama", sae_id="random-sae"),
    "last 7 days, wrong": ReportFilters(correct=False, created_after=None),
    "feature + wrong + class": ReportFilters(
        feature=42, correct=False, failure_class="wrong_operation"
    ),
}


def populate(url: str, n: int, seed: int = 0) -> str:
    """Insert n reports (with jobs; a tenth in one audit); returns the audit id."""
    from service.models import Audit

    rng = random.Random(seed)
    audit_id = str(uuid.uuid4())
    with session_scope(url) as session:
        session.add(Audit(id=audit_id, name="bench", total=n // 10))
        session.commit()
        now = datetime.now(UTC)
        for i in range(n):
            job_id = str(uuid.uuid4())
            in_audit = i % 10 == 0
            session.execute(sa.insert(Job.__table__).values(
                id=job_id, kind="diagnosis", status="done", payload={}, deliveries=1, created_at=now,
                audit_id=audit_id if in_audit else None,
            ))  # fmt: skip
            report = synthetic_report(
                rng, created_at=now - timedelta(minutes=rng.randint(0, 60 * 24 * 60))
            )
            store_report(session, report, job_id, audit_id if in_audit else None)
    return audit_id


def time_queries(url: str, audit_id: str, repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    week_ago = datetime.now(UTC) - timedelta(days=7)
    with session_scope(url) as session:
        for name, filters in QUERIES.items():
            if filters.audit_id == "AUDIT":
                filters = ReportFilters(audit_id=audit_id)
            if name.startswith("last 7 days"):
                filters = ReportFilters(correct=False, created_after=week_ago)
            list_reports(session, filters, scope=EVERYONE, limit=50)  # warm
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                rows, count = list_reports(session, filters, scope=EVERYONE, limit=50)
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            out[name] = {
                "p50_ms": round(statistics.median(samples), 3),
                "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 3),
                "matches": count,
            }
    return out


def fresh_postgres() -> tuple[str, callable]:
    name = f"driftscope_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="Reports to store.")
    parser.add_argument("--repeats", type=int, default=200, help="Timed runs per query.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict = {
        "n_reports": args.n,
        "repeats": args.repeats,
        "page_size": 50,
        "machine": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "databases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{tmp}/bench.db"
        pg_url, drop_pg = fresh_postgres()
        try:
            for label, url in (("sqlite", sqlite_url), ("postgresql", pg_url)):
                migrate(url)
                t0 = time.perf_counter()
                audit_id = populate(url, args.n)
                insert_s = time.perf_counter() - t0
                if label == "postgresql":
                    with session_scope(url) as session:
                        session.execute(sa.text("ANALYZE"))
                        session.commit()
                queries = time_queries(url, audit_id, args.repeats)
                results["databases"][label] = {
                    "insert_reports_per_s": round(args.n / insert_s, 1),
                    "queries": queries,
                }
        finally:
            drop_pg()
    print(f"{args.n} reports, page of 50, {args.repeats} runs per query (ms)")
    print(
        f"{'query':<26}"
        + "".join(f"{db + ' p50':>16}{db + ' p99':>16}" for db in results["databases"])
    )
    for name in QUERIES:
        row = "".join(
            f"{results['databases'][db]['queries'][name]['p50_ms']:>16.2f}"
            f"{results['databases'][db]['queries'][name]['p99_ms']:>16.2f}"
            for db in results["databases"]
        )
        print(f"{name:<26}{row}")
    for db, r in results["databases"].items():
        print(f"{db}: {r['insert_reports_per_s']} reports/s inserted")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
