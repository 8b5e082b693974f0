"""`driftscope diagnose`: one drift report, printed (options and bounds from DiagnosisOptions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    DeviceOpt,
    ModelOpt,
    RawOpt,
    SaeOpt,
    TranscodersOpt,
    diagnosis_default,
    diagnosis_option,
    friendly_errors,
    load_lm,
    require_transcoders,
    sae_and_atlas,
    viewing_hint,
)


@friendly_errors
def diagnose(
    prompt: Annotated[str, typer.Argument(help="The question the model got wrong.")],
    expected: Annotated[str, typer.Option("--expected", "-e", help="The correct answer.")],
    reference: Annotated[
        str | None, typer.Option(help="A worked correct solution (GSM8K answer text).")
    ] = None,
    model: ModelOpt = "bundled",
    sae: SaeOpt = "default",
    mode: Annotated[str | None, diagnosis_option("mode")] = diagnosis_default("mode"),
    pattern: Annotated[str | None, diagnosis_option("pattern")] = diagnosis_default("pattern"),
    output: Annotated[
        str | None,
        typer.Option(
            help="Diagnose this response instead of generating one (e.g. from an eval run)."
        ),
    ] = None,
    raw: RawOpt = False,
    max_new_tokens: Annotated[int, diagnosis_option("max_new_tokens")] = diagnosis_default(
        "max_new_tokens"
    ),
    top_k: Annotated[int, diagnosis_option("top_k")] = diagnosis_default("top_k"),
    controls: Annotated[int, diagnosis_option("control_draws", "--controls")] = diagnosis_default(
        "control_draws"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the DriftReport JSON.")] = False,
    device: DeviceOpt = "auto",
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Store the report (see `driftscope serve`).")
    ] = True,
    database_url: Annotated[
        str, typer.Option("--db", envvar="DATABASE_URL", help="Where the report is stored.")
    ] = "sqlite:///./driftscope.db",
    trace: Annotated[bool, diagnosis_option("trace")] = diagnosis_default("trace"),
    transcoders: TranscodersOpt = "default",
    graph_json: Annotated[
        Path | None,
        typer.Option(help="With --trace: also write the graph as circuit-tracer's graph JSON."),
    ] = None,
) -> None:
    """Explain why the model gets PROMPT wrong: divergence, flagged latents, ablation evidence."""
    from diagnostics.options import DiagnosisOptions

    for name, text in (("PROMPT", prompt), ("--expected", expected)):
        if not text.strip():
            raise ValueError(f"{name} is blank: give the question and the answer it should get")
    options = DiagnosisOptions(
        mode=mode,
        pattern=pattern,
        chat=not raw,
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        control_draws=controls,
        trace=trace,
    )
    if graph_json is not None and not trace:
        raise typer.BadParameter("--graph-json needs --trace")
    if trace:
        require_transcoders(transcoders)
    if store:  # a bad --db fails now, not after minutes of diagnosis
        from service.db import checked_database_url

        url = checked_database_url(database_url)
    from diagnostics.diagnose import diagnose as run_diagnosis
    from diagnostics.report_text import render_report
    from diagnostics.trace.tracer import make_tracer

    lm = load_lm(model, device=device)
    sae_module, atlas = sae_and_atlas(sae, missing_ok=True, device=str(lm.device))
    tracer = make_tracer(transcoders, str(lm.device)) if trace else None
    report = run_diagnosis(
        lm,
        sae_module,
        prompt,
        expected,
        reference=reference,
        atlas=atlas,
        options=options,
        sae_id=sae,
        output=output,
        tracer=tracer,
    )
    if graph_json is not None:
        if report.trace is not None:
            tracer.export_last(lm, graph_json)
        else:
            typer.echo(f"no graph written to {graph_json}: nothing was traced", err=True)
    typer.echo(report.model_dump_json(indent=2) if as_json else render_report(report))
    if store:
        from service.job_payloads import DiagnosisPayload
        from service.submissions import store_finished_diagnosis

        payload = DiagnosisPayload(
            prompt=prompt, expected=expected, reference=reference, output=output, options=options
        )
        report_id = store_finished_diagnosis(url, payload, report)
        typer.echo(viewing_hint(f"report {report_id}", url, f"/reports/{report_id}"), err=True)
