"""`driftscope audit` (in process, no broker) and `driftscope apikey create`."""

from __future__ import annotations

import json

import pandas as pd
from sqlmodel import func, select
from typer.testing import CliRunner

from cli.main import app
from service.db import migrate, session_scope
from service.models import Report
from tests.service.conftest import gsm8k_jsonl

runner = CliRunner()


def test_audit_in_process_prints_summary_and_stores_reports(tmp_path, cli_env):
    data = tmp_path / "gsm8k.jsonl"
    data.write_bytes(gsm8k_jsonl(4))
    export = tmp_path / "items.parquet"
    args = [
        "audit",
        str(data),
        "--limit",
        "3",
        "--max-new-tokens",
        "4",
        "--json",
        "--export",
        str(export),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n_items"], summary["n_reports"], summary["n_failed_jobs"]) == (3, 3, 0)
    with session_scope(cli_env) as session:
        stored = session.exec(
            select(func.count()).select_from(Report).where(Report.audit_id == summary["audit_id"])
        ).one()
    assert stored == summary["n_reports"]
    assert len(pd.read_parquet(export)) == 3
    text = runner.invoke(
        app, ["audit", "examples", "--limit", "1", "--max-new-tokens", "2", "--no-verify"]
    )
    assert text.exit_code == 0, text.output
    assert "accuracy" in text.stdout and "failed jobs 0" in text.stdout
    assert "audit: 100%" in text.stderr and "1/1" in text.stderr  # the tqdm bar


def test_audit_of_a_bad_file_is_a_one_line_error(tmp_path, cli_env):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    result = runner.invoke(app, ["audit", str(bad)])
    assert result.exit_code == 2 and "line 1" in result.stderr and "Traceback" not in result.output
    assert runner.invoke(app, ["audit", "no-such-thing"]).exit_code == 2


def test_apikey_create_prints_a_working_key(cli_env):
    result = runner.invoke(app, ["apikey", "create", "--name", "me"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("ds_")
    from service.api_keys import verify_api_key

    migrate(cli_env)
    with session_scope(cli_env) as session:
        assert verify_api_key(session, key).name == "me"


def test_apikey_list_and_revoke(cli_env):
    key = runner.invoke(app, ["apikey", "create", "--name", "ops", "--admin"]).stdout.strip()
    prefix = key.split("_")[1]
    listed = runner.invoke(app, ["apikey", "list"])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.startswith(prefix))
    assert "yes" in row and row.endswith("ops") and key not in listed.stdout  # no secret shown
    from service.api_keys import verify_api_key

    revoked = runner.invoke(app, ["apikey", "revoke", prefix])
    assert revoked.exit_code == 0 and f"revoked {prefix}" in revoked.stdout
    with session_scope(cli_env) as session:
        assert verify_api_key(session, key) is None
    assert runner.invoke(app, ["apikey", "revoke", "nosuchkey"]).exit_code == 1


def test_audit_of_an_lm_eval_run_diagnoses_the_harness_responses(tmp_path, cli_env):
    """The real harness fixture: failures under the filter, diagnosed on the harness's own
    responses (never regenerated), exported with the doc_id they join on."""
    from diagnostics.eval_logs import read_samples
    from service.report_store import load_report
    from tests.unit.test_eval_audit import FIXTURE

    export = tmp_path / "items.csv"
    args = ["audit", str(FIXTURE), "--filter", "flexible-extract", "--limit", "2", "--no-verify"]
    result = runner.invoke(app, [*args, "--json", "--export", str(export)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n_items"], summary["n_reports"], summary["n_failed_jobs"]) == (2, 2, 0)
    frame = pd.read_csv(export)
    assert list(frame["doc_id"]) == [0, 1]
    samples = pd.DataFrame(
        [
            {"doc_id": s.doc_id, "filter": s.filter, "resp": s.response}
            for s in read_samples(FIXTURE)
        ]
    )
    joined = frame.merge(samples[samples["filter"] == "flexible-extract"], on="doc_id")
    assert len(joined) == 2
    with session_scope(cli_env) as session:
        reports = session.exec(select(Report).where(Report.audit_id == summary["audit_id"])).all()
    assert len(reports) == summary["n_reports"] == 2
    for row in reports:
        report = load_report(row.body)
        assert report.output_source == "given" and not report.chat
        assert report.judgement.mode == "numeric"
        assert report.prompt.startswith("Question:")
    for column in ("first_error_kind", "gap", "ablation_gain", "divergence_model_token"):
        assert column in frame.columns
    bad = runner.invoke(app, ["audit", str(FIXTURE), "--filter", "nope"])
    assert bad.exit_code == 2 and "strict-match" in bad.stderr
