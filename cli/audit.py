"""`driftscope audit`: audit a dataset in this process (no broker, no server), print the summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.audit_text import format_summary
from cli.common import (
    DeviceOpt,
    ModelOpt,
    TranscodersOpt,
    diagnosis_default,
    diagnosis_option,
    friendly_errors,
    quiet_transformers,
    require_transcoders,
    viewing_hint,
)


@friendly_errors
def audit(
    source: Annotated[
        str,
        typer.Argument(
            help="A JSONL/CSV file (GSM8K question/answer, or prompt/expected columns), an "
            "lm-eval --log_samples file (samples_<task>_<date>.jsonl: its failures are diagnosed "
            "on the harness's own responses), or a dataset name: 'examples' (the project's own "
            "problems) or one in DRIFTSCOPE_DATASETS."
        ),
    ],
    filter_name: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="lm-eval samples files: audit the failures under this filter "
            "(strict-match or flexible-extract; default strict-match).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Audit at most N problems.")] = None,
    sample: Annotated[str, typer.Option(help="first or random (seeded).")] = "first",
    seed: Annotated[int, typer.Option(help="Seed of --sample random.")] = 0,
    model: ModelOpt = "bundled",
    sae: Annotated[
        str, typer.Option(envvar="DRIFTSCOPE_SAE", help="SAE directory, or 'default'.")
    ] = "default",
    mode: Annotated[str | None, diagnosis_option("mode")] = diagnosis_default("mode"),
    max_new_tokens: Annotated[int, diagnosis_option("max_new_tokens")] = diagnosis_default(
        "max_new_tokens"
    ),
    verify: Annotated[bool, diagnosis_option("verify")] = diagnosis_default("verify"),
    database_url: Annotated[
        str, typer.Option("--db", envvar="DATABASE_URL", help="Where reports are stored.")
    ] = "sqlite:///./driftscope.db",
    export: Annotated[
        Path | None, typer.Option(help="Also write the per-problem table (.csv or .parquet).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    device: DeviceOpt = "auto",
    trace: Annotated[bool, diagnosis_option("trace")] = diagnosis_default("trace"),
    transcoders: TranscodersOpt = "default",
) -> None:
    """Audit a dataset in this process (no broker, no server) and print the summary."""
    from tqdm.auto import tqdm

    from diagnostics.options import DiagnosisOptions
    from service.db import checked_database_url
    from service.settings import Settings
    from workers.embedded_audit import export_audit, run_audit_in_process

    if sample not in ("first", "random"):
        raise ValueError(f"--sample must be first or random, not {sample!r}")
    if export is not None and export.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"--export writes .csv or .parquet files, not {export.name!r}")
    settings = Settings().model_copy(
        update={
            "database_url": checked_database_url(database_url),
            "model": model,
            "sae": sae,
            "queue_backend": "local",
            "device": device,
            "transcoders": transcoders,
        }
    )
    options = DiagnosisOptions(mode=mode, max_new_tokens=max_new_tokens, verify=verify, trace=trace)
    if trace:
        require_transcoders(transcoders)
    quiet_transformers()  # the worker runtime loads the model below the audit's bar
    bar = None

    def progress(p) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, desc="audit", unit="problem", file=sys.stderr)
        bar.set_postfix(failed=p.failed, refresh=False)
        bar.update(p.done + p.failed - bar.n)

    try:
        run = run_audit_in_process(
            source, options, settings, limit=limit, sample=sample, seed=seed,
            filter_name=filter_name, on_progress=progress,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if export is not None:
        export_audit(settings, run.audit_id, export)
    if as_json:
        typer.echo(json.dumps({"audit_id": run.audit_id} | run.summary, indent=2))
        return
    typer.echo(f"audit {run.audit_id}")
    typer.echo(format_summary(run.summary))
    typer.echo(
        viewing_hint(f"audit {run.audit_id}", settings.database_url, f"/audits/{run.audit_id}")
    )
