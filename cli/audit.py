"""`driftscope audit`: audit a dataset in this process (no broker, no server), print the summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    DeviceOpt,
    ModelOpt,
    TranscodersOpt,
    diagnosis_default,
    diagnosis_option,
    friendly_errors,
    quiet_transformers,
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
    from service.settings import Settings, normalise_database_url
    from workers.embedded_audit import export_audit, run_audit_in_process

    if sample not in ("first", "random"):
        raise ValueError(f"--sample must be first or random, not {sample!r}")
    settings = Settings().model_copy(
        update={
            "database_url": normalise_database_url(database_url),
            "model": model,
            "sae": sae,
            "queue_backend": "local",
            "device": device,
            "transcoders": transcoders,
        }
    )
    options = DiagnosisOptions(mode=mode, max_new_tokens=max_new_tokens, verify=verify, trace=trace)
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
    typer.echo(f"audit {run.audit_id} (stored in {settings.database_url})")
    typer.echo(format_summary(run.summary))


def format_summary(summary: dict) -> str:
    """The summary as a few lines of text."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    lines = [
        f"problems {summary['n_items']}  reports {summary['n_reports']}  "
        f"failed jobs {summary['n_failed_jobs']}",
        f"accuracy {pct(summary['accuracy'])}  strict {pct(summary['strict_accuracy'])}  "
        f"wrong {summary['n_wrong']}",
        f"ablation fixed {pct(summary['ablation_fix_rate'])} of failures "
        f"(selection-matched null {pct(summary['null_fix_rate'])}"
        + (  # reports before the null had a continued plain control; now it is gap-only
            f", random control {pct(summary['control_fix_rate'])})"
            if summary["control_fix_rate"] is not None
            else ")"
        ),
    ]
    if summary["failure_classes"]:
        lines.append("failure classes:")
        lines += [f"  {k:<18} {v}" for k, v in summary["failure_classes"].items()]
    if summary["recurring_features"]:
        lines.append("features recurring across failures:")
        for f in summary["recurring_features"]:
            control = (
                f" (control {pct(f['control_fix_rate'])})"
                if f["control_fix_rate"] is not None
                else ""
            )
            lines.append(
                f"  #{f['feature']:<6} in {f['n_failures']} failures  fix {pct(f['fix_rate'])}"
                f"{control}  {f['label'] or '(no label)'}"
            )
    if summary["concepts"]:
        lines.append("concepts recurring across failures (flagged fix vs null fix, per class):")
        for c in summary["concepts"][:TOP_CONCEPTS]:
            kinds = ", ".join(
                f"{k} {s['failures']}: {pct(s['flagged_fix_rate'])} vs {pct(s['null_fix_rate'])}"
                for k, s in c["by_kind"].items()
            )
            mark = "  [generic]" if c["generic"] else ""
            lines.append(
                f"  {c['concept']}{mark}: {len(c['latents'])} latents "
                f"({', '.join(f'#{j}' for j in c['latents'][:5])}), in {c['failures']} failures; "
                f"{kinds}"
            )
    return "\n".join(lines)


TOP_CONCEPTS = 8
