"""Browser fixtures: the real app under uvicorn on a free port, a real SQLite database filled by
real diagnoses (the tiny model, an SAE with planted latents and an atlas built from it), and
Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from sqlmodel import select

from api import atlas_cache
from api.pages.auth import KEY_COOKIE
from diagnostics.atlas import build_atlas
from diagnostics.feature_card import CardContext, FeatureCard
from diagnostics.options import DiagnosisOptions
from diagnostics.sae import save_sae
from service.api_keys import create_api_key
from service.datasets import ProblemItem
from service.db import dispose_engines, migrate, session_scope
from service.job_payloads import DiagnosisPayload
from service.models import JobStatus, Report
from service.report_store import store_report
from service.settings import get_settings
from service.submissions import create_audit, create_job
from tests.conftest import make_tiny_lm
from tests.service.factories import synthetic_report
from tests.unit.test_atlas_build import make_corpus, make_planted_sae
from workers.jobs import claim, finish, run_job
from workers.runtime import Runtime

CHROMIUM = os.environ.get("DRIFTSCOPE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
XSS_PROMPT = "<script>window.pwned=1</script> what is 4 times 2 ?"
XSS_LABEL = "<img src=x onerror=window.pwned=1> numbers"
PROBLEMS = [
    ProblemItem(0, "what is 2 plus 3 ?", "5", "2 plus 3 = 5"),
    ProblemItem(1, "how many apples did she sell in april and may ?", "7"),
    ProblemItem(2, XSS_PROMPT, "8"),
    ProblemItem(3, "what is 1 plus 1 ?", "2"),  # its job is failed by hand (a crashed worker)
]
OPTIONS = DiagnosisOptions(
    mode="exact", chat=False, max_new_tokens=6, top_k=3, control_draws=2, top_features_per_token=2
)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class Site:
    """The running app and what the tests stored in its database."""

    base_url: str
    api_key: str
    audit_id: str
    report_ids: list[str]  # the audit's reports, in problem order (the failed one has none)
    xss_report_id: str  # synthetic report with an HTML-ish feature label
    atlas_dir: str
    runtime: Runtime  # the model, SAE and atlas the server's jobs run with (run them in a test)

    def url(self, path: str) -> str:
        return self.base_url + path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fill_database(runtime: Runtime, url: str) -> tuple[str, list[str], str]:
    """An audit of PROBLEMS run by the real worker code, plus one synthetic report."""
    with session_scope(url) as session:
        audit, job_ids = create_audit(session, PROBLEMS, OPTIONS, name="browser-test", source="t")
    for job_id in job_ids[:-1]:
        assert run_job(job_id, runtime=lambda: runtime) == JobStatus.done
    with session_scope(url) as session:
        delivery = claim(session, job_ids[-1], get_settings()).deliveries
        finish(session, job_ids[-1], delivery, JobStatus.failed, error="worker died")
    with session_scope(url) as session:
        ids = dict(session.exec(select(Report.job_id, Report.id)).all())
        report_ids = [ids[job_id] for job_id in job_ids[:-1]]
        synthetic = synthetic_report(random.Random(0), correct=False, flagged=[5], n_features=48)
        synthetic.flagged[0].label = XSS_LABEL
        synthetic.flagged[0].card = FeatureCard(  # a card's text is untrusted too
            feature=5, description=XSS_LABEL, label=XSS_LABEL,
            contexts=[CardContext(before=XSS_PROMPT, peak="<b>", after=XSS_LABEL, activation=1.0)],
        )  # fmt: skip
        job = create_job(
            session, DiagnosisPayload(prompt=synthetic.prompt, expected=synthetic.expected)
        )
        xss_id, _ = store_report(session, synthetic, job.id)
    return audit.id, report_ids, xss_id


@pytest.fixture(scope="package")
def site(tmp_path_factory) -> Iterator[Site]:
    """Build the data, then serve the real app (auth on) from a thread on a free port.

    Package-scoped: the environment and the server are gone before other test folders run.
    """
    root = tmp_path_factory.mktemp("browser")
    lm = make_tiny_lm()
    docs = make_corpus()
    sae = make_planted_sae(lm, docs)
    atlas = build_atlas(
        lm, sae, docs, max_tokens=3_000, ctx_len=32, batch_size=8, n_contexts=4,
        score_context_len=8, progress=False,
    )  # fmt: skip
    save_sae(sae, root / "sae")
    atlas.save(root / "sae")
    db_url = f"sqlite:///{root / 'driftscope.db'}"
    env = {
        "DATABASE_URL": db_url,
        "DRIFTSCOPE_SAE": str(root / "sae"),
        "DRIFTSCOPE_SAE_ID": "planted-sae",
        "DRIFTSCOPE_AUTH": "1",
        "DRIFTSCOPE_QUEUE_BACKEND": "local",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DRIFTSCOPE_ATLAS", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        migrate(db_url)
        runtime = Runtime(lm=lm, sae=sae, atlas=atlas, sae_id="planted-sae")
        audit_id, report_ids, xss_id = _fill_database(runtime, db_url)
        with session_scope(db_url) as session:
            # admin: the rows above were written without an owner (as the in-process CLI does)
            key = create_api_key(session, "browser-tests", admin=True)
        from api.main import create_app

        port = _free_port()
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True, name="uvicorn")
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        try:
            yield Site(
                base_url=f"http://127.0.0.1:{port}",
                api_key=key,
                audit_id=audit_id,
                report_ids=report_ids,
                xss_report_id=xss_id,
                atlas_dir=str(root / "sae"),
                runtime=runtime,
            )
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            dispose_engines()
            atlas_cache.clear_cache()
            get_settings.cache_clear()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium; a missing browser fails the tests (it must not skip them silently)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `make install` (it installs Debian's "
            "chromium package) or `apt-get install chromium`",
            pytrace=False,
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def anonymous(browser: Browser) -> Iterator[BrowserContext]:
    """A browser context with no cookie."""
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A page of a context that is logged in (the API key in the page cookie)."""
    context = browser.new_context()
    context.add_cookies([{"name": KEY_COOKIE, "value": site.api_key, "url": site.base_url}])
    page = context.new_page()
    page.set_default_timeout(30_000)  # the machine is shared: a first page can take a while
    try:
        yield page
    finally:
        context.close()
