"""`driftscope audit --trace` (in process): every wrong answer's report carries its attribution
graph, and the summary has the supernodes recurring across them."""

from __future__ import annotations

import json

from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from diagnostics.model_loading import load_model
from diagnostics.report import DriftReport
from diagnostics.transcoders.io import read_config
from service.db import session_scope
from service.models import Report
from tests.service.conftest import gsm8k_jsonl
from tests.unit.test_trace import train_tiny_set

runner = CliRunner()


def test_audit_trace_traces_every_failure(tmp_path, runtime_dirs, monkeypatch):
    import workers.runtime

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DRIFTSCOPE_MODEL", runtime_dirs["model"])
    monkeypatch.setenv("DRIFTSCOPE_SAE", runtime_dirs["sae"])
    monkeypatch.setattr(workers.runtime, "_cached", None)  # a fresh process's runtime
    from service.settings import get_settings

    get_settings.cache_clear()
    set_dir = train_tiny_set(load_model(runtime_dirs["model"]), tmp_path)
    data = tmp_path / "gsm8k.jsonl"
    data.write_bytes(gsm8k_jsonl(3))
    args = ["audit", str(data), "--max-new-tokens", "4", "--no-verify", "--json", "--trace",
            "--transcoders", str(set_dir)]  # fmt: skip
    try:
        result = runner.invoke(app, args)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_reports"] == 3 and summary["n_failed_jobs"] == 0
    assert isinstance(summary["trace_supernodes"], list)
    with session_scope(url) as session:
        bodies = session.exec(select(Report.body)).all()
    reports = [DriftReport.from_stored(b) for b in bodies]
    wrong = [r for r in reports if r.divergence is not None]
    assert wrong and all(r.trace is not None for r in wrong)
    assert {r.trace.transcoders for r in wrong} == {read_config(set_dir)["scan"]}
