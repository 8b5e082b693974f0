"""Audit GSM8K test problems through a running service (API + Celery worker) and record it all.

Start the service first (real Redis, a real Celery worker process, any database), with the GSM8K
test file configured as a named dataset, and an API key:

    export DATABASE_URL=postgresql://127.0.0.1:5432/driftscope_audit
    export DRIFTSCOPE_DATASETS=gsm8k_test=../shared/datasets/gsm8k/test.jsonl
    .venv/bin/driftscope apikey create --name audit        # prints the key
    .venv/bin/driftscope serve &
    .venv/bin/python -m benchmarks.gsm8k_audit --key ds_... --limit 50

The script submits the audit over HTTP, polls its progress (done/total/failed, ETA) until it
finishes, then fetches the pandas summary and the CSV export. Writes
benchmarks/results/gsm8k_audit.json (progress timeline, summary, per-stage latency) and
benchmarks/results/gsm8k_audit.csv.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import httpx
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--dataset", default="gsm8k_test")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--sample", default="first", choices=["first", "random"])
    parser.add_argument("--poll-s", type=float, default=30.0)
    args = parser.parse_args()

    client = httpx.Client(base_url=args.url, headers={"X-API-Key": args.key}, timeout=60)
    start = time.time()
    created = client.post(
        "/v1/audits",
        data={"dataset": args.dataset, "limit": str(args.limit), "sample": args.sample},
    )
    created.raise_for_status()
    audit_id = created.json()["id"]
    print(f"audit {audit_id}: {created.status_code}, Location {created.headers.get('location')}")
    timeline = []
    while True:
        progress = client.get(f"/v1/audits/{audit_id}").json()
        elapsed = round(time.time() - start, 1)
        timeline.append(
            {"t_s": elapsed}
            | {k: progress[k] for k in ("status", "done", "failed", "queued", "running", "eta_s")}
        )
        print(
            f"{elapsed:7.0f}s  {progress['status']:8s} done {progress['done']}/{progress['total']}"
            f"  failed {progress['failed']}  eta {progress['eta_s']}",
            flush=True,
        )
        if progress["status"] == "done":
            break
        time.sleep(args.poll_s)
    summary = client.get(f"/v1/audits/{audit_id}/summary").json()
    export = client.get(f"/v1/audits/{audit_id}/export", params={"format": "csv"})
    export.raise_for_status()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gsm8k_audit.csv").write_bytes(export.content)
    items = pd.read_csv(io.BytesIO(export.content))
    reports = client.get("/v1/reports", params={"audit_id": audit_id, "limit": 200}).json()
    stages: dict[str, list[float]] = {}
    for row in reports["data"]:
        timings = client.get(f"/v1/reports/{row['id']}").json()["report"]["timings"] or {}
        for stage, seconds in timings.items():
            stages.setdefault(stage, []).append(seconds)
    result = {
        "audit_id": audit_id,
        "dataset": args.dataset,
        "limit": args.limit,
        "wall_s": round(time.time() - start, 1),
        "final_progress": progress,
        "timeline": timeline,
        "summary": summary,
        "median_stage_s": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "export_rows": len(items),
        "export_columns": list(items.columns),
    }
    (RESULTS / "gsm8k_audit.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str)[:4000])


if __name__ == "__main__":
    main()
