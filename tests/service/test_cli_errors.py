"""The CLI a newcomer meets: bad input and unreachable databases or hubs are one-line errors with
an exit code, checked before the model loads; `diagnose` stores its report and says where; small
traps (unknown export suffixes, a clamp without its multiple) are refused up front; help fits 80
columns; no log line or error shows a password."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from service.db import session_scope
from service.models import Job, Report
from service.settings import get_settings, mask_credentials
from tests.service.conftest import repo_root
from tests.service.private_servers import stop_group

runner = CliRunner()
FAST = ["--max-new-tokens", "4", "--controls", "0", "--top-k", "2"]


def _one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "validation error" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["diagnose", "", "-e", "4"], "PROMPT is blank"),
        (["diagnose", "what is 2+2?", "-e", " "], "--expected is blank"),
        (["diagnose", "what is 2+2?", "-e", "4", "--mode", "bogus"], "--mode"),
        (["diagnose", "what is 2+2?", "-e", "4", "--mode", "regex"], "needs a pattern"),
        (["diagnose", "q", "-e", "4", "--mode", "regex", "--pattern", "^(a|a)+$"], "backtracks"),
        (["features", "steer", "hello", "-f", "12"], "ID=MULTIPLE"),
        (["diagnose", "what is 2+2?", "-e", "4", "--db", "/tmp/reports.db"], "--db /tmp/reports"),
        (["diagnose", "what is 2+2?", "-e", "4", "--db", "bogus://x"], "not a database URL"),
    ],
)
def test_bad_options_fail_at_once_before_the_model_loads(cli_env, monkeypatch, args, needle):
    monkeypatch.setenv("DRIFTSCOPE_MODEL", "/no/such/model")  # loading it would be exit 3
    start = time.monotonic()
    line = _one_line_error(runner.invoke(app, args), 2)
    assert needle in line and time.monotonic() - start < 5


@pytest.mark.parametrize(
    "url,needle",
    [
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/x", "cannot be reached"),
        ("bogus://", "not a database URL"),
    ],
)
def test_an_unusable_database_is_a_one_line_error(cli_env, monkeypatch, url, needle):
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    line = _one_line_error(runner.invoke(app, ["apikey", "list"]), 6)
    assert needle in line and "hunter2" not in line


def test_an_unreachable_hub_fails_fast(cli_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the hub is away
    start = time.monotonic()
    result = runner.invoke(app, ["diagnose", "q?", "-e", "4", "--model", "nonexistent/model-xyz"])
    line = _one_line_error(result, 3)
    assert "cannot be reached" in line and time.monotonic() - start < 15


def test_diagnose_stores_its_report_and_says_where(cli_env):
    result = runner.invoke(app, ["diagnose", "what is 2 plus 3 ?", "-e", "5", *FAST])
    assert result.exit_code == 0, result.output
    report_id = re.search(r"/reports/([0-9a-f-]{36})", result.stderr).group(1)
    assert "driftscope serve" in result.stderr
    with session_scope(cli_env) as session:
        report = session.get(Report, report_id)
        assert report is not None and session.get(Job, report.job_id).status == "done"
    result = runner.invoke(app, ["diagnose", "what is 2 plus 3 ?", "-e", "5", "--no-store", *FAST])
    assert result.exit_code == 0 and "/reports/" not in result.stderr
    with session_scope(cli_env) as session:
        assert len(session.exec(select(Report)).all()) == 1


def test_diagnose_reads_the_sae_from_the_environment(cli_env, monkeypatch):
    monkeypatch.setenv("DRIFTSCOPE_SAE", "/no/such/sae-dir")
    line = _one_line_error(runner.invoke(app, ["diagnose", "q?", "-e", "4", *FAST]), 4)
    assert "/no/such/sae-dir" in line


def test_audit_refuses_an_unknown_export_suffix_before_running(cli_env, tmp_path):
    line = _one_line_error(
        runner.invoke(app, ["audit", "examples", "--export", str(tmp_path / "x.xlsx")]), 2
    )
    assert ".csv or .parquet" in line
    assert not (tmp_path / "x.xlsx").exists() and not (tmp_path / "cli.db").exists()


def test_the_audit_summary_ends_with_how_to_view_it(cli_env):
    result = runner.invoke(
        app, ["audit", "examples", "--limit", "1", "--max-new-tokens", "2", "--no-verify"]
    )
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert "driftscope serve" in last and re.search(r"/audits/[0-9a-f-]{36}", last)


@pytest.mark.parametrize("command", [["diagnose"], ["audit"], ["features", "steer"], ["serve"]])
def test_help_at_80_columns_cuts_nothing_off(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    if command == ["audit"]:
        assert "sqlite:///./driftscope.db" in result.stdout


def test_the_readme_examples_are_runnable_text():
    readme = (repo_root() / "README.md").read_text()
    assert 'diagnose "..."' not in readme


def test_credentials_are_masked():
    assert mask_credentials(
        "postgresql+psycopg://me:s3cret@db:5432/x and redis://:pw@r:6379/0"
    ) == ("postgresql+psycopg://me:***@db:5432/x and redis://:***@r:6379/0")
    assert mask_credentials("sqlite:///./driftscope.db") == "sqlite:///./driftscope.db"


def test_serve_logs_the_database_without_its_password(pg_url, runtime_dirs, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = pg_url.replace("postgres@", "postgres:s3cret@")  # trust auth: any password is accepted
    env = os.environ | {"DATABASE_URL": url, "DRIFTSCOPE_MODEL": runtime_dirs["model"],
                        "DRIFTSCOPE_SAE": runtime_dirs["sae"], "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--queue", "local", "--port", str(port)],
        cwd=repo_root(), env=env, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    seen = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
    finally:
        stop_group(proc)
    text = "".join(seen)
    assert "driftscope: database postgresql+psycopg://postgres:***@" in text, text
    assert "s3cret" not in text
