"""Run an audit in this process, with no broker: `driftscope audit PATH --limit N`.

Same rows and the same `run_jobs` as the service (so the stored reports can be served later by
`driftscope serve` from the same database), executed here in batches of `batch_size` problems
(answers generated together; each stored, and progress reported, as it finishes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diagnostics.concepts import ConceptBasis
from diagnostics.options import DiagnosisOptions
from service.audit_progress import AuditProgress, audit_progress
from service.audit_summary import (
    audit_frames,
    export_frame,
    summarize,
    to_csv_bytes,
    to_parquet_bytes,
)
from service.datasets import DatasetError, audit_extra, read_dataset_file, sample_items
from service.db import migrate, session_scope
from service.settings import Settings
from service.submissions import create_audit
from service.trace_summary import recurring_supernodes, traced_failures
from workers.jobs import run_jobs
from workers.runtime import get_runtime


@dataclass
class AuditRun:
    audit_id: str
    summary: dict


def resolve_source(source: str, settings: Settings) -> Path:
    """A file path, or the name of a configured dataset (e.g. 'examples')."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if source in settings.datasets:
        return settings.datasets[source]
    raise DatasetError(
        f"{source} is neither a file nor a dataset name ({', '.join(sorted(settings.datasets))})"
    )


def run_audit_in_process(
    source: str,
    options: DiagnosisOptions,
    settings: Settings,
    *,
    limit: int | None = None,
    sample: str = "first",
    seed: int = 0,
    name: str = "",
    filter_name: str | None = None,
    on_progress: Callable[[AuditProgress], None] | None = None,
    batch_size: int = 8,
) -> AuditRun:
    """Create the audit, run every job here, return its summary.

    `on_progress` is called before the first job and after each one. `filter_name` picks the
    failures of an lm-eval samples file (default strict-match); a dataset refuses it.
    """
    path = resolve_source(source, settings)
    dataset = read_dataset_file(
        path, max_prompt_chars=settings.max_prompt_chars, filter_name=filter_name
    )
    chosen = sample_items(dataset.items, limit, sample, seed)
    migrate(settings.database_url)
    with session_scope(settings.database_url) as session:
        audit, job_ids = create_audit(
            session, chosen, dataset.options_for(options), name=name or path.stem,
            source=path.name, extra=audit_extra(dataset, limit, sample, seed),
        )  # fmt: skip

    def report_progress() -> None:
        if on_progress is not None:
            with session_scope(settings.database_url) as session:
                on_progress(audit_progress(session, audit))

    report_progress()  # before the model loads, so the caller can show the work ahead
    runtime = get_runtime(settings)
    run_jobs(
        job_ids,
        settings=settings,
        runtime=lambda: runtime,
        batch_size=batch_size,
        on_done=lambda _job, _status: report_progress(),
    )
    with session_scope(settings.database_url) as session:
        summary = summarize(
            *audit_frames(session, audit.id), ConceptBasis.of(runtime.sae, runtime.atlas)
        ) | {"trace_supernodes": recurring_supernodes(traced_failures(session, audit.id))}
    return AuditRun(audit_id=audit.id, summary=summary)


def export_audit(settings: Settings, audit_id: str, path: Path) -> None:
    """Write the per-item table as CSV or Parquet (by the file suffix)."""
    with session_scope(settings.database_url) as session:
        frame = export_frame(*audit_frames(session, audit_id))
    data = to_parquet_bytes(frame) if path.suffix.lower() == ".parquet" else to_csv_bytes(frame)
    path.write_bytes(data)
