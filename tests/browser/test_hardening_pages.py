"""Page fixes found by trying them: long token chips wrap on a 390 px phone, the problem text
opens the report, the report list shows each first wrong step, and /docs's schema accordion stays
inside a phone's screen."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from diagnostics.report import TokenActivation
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.report_store import store_report
from service.submissions import create_job
from tests.browser.conftest import Site
from tests.browser.test_pages import _report
from tests.browser.test_readable import fits
from tests.service.factories import synthetic_report

PHONE = {"width": 390, "height": 900}


@pytest.fixture(scope="module")
def long_token_report(site: Site) -> str:
    """A report whose flagged feature fires at long tokens (a URL, a run of digits)."""
    report = synthetic_report(random.Random(7), correct=False, flagged=[6, 7])
    long_tokens = ["https://example.org/a/very/long/path/of/a/url", "1234567890" * 6, " total"]
    for f in report.flagged:
        f.fires_at = [
            TokenActivation(position=i, token=t, activation=1.0) for i, t in enumerate(long_tokens)
        ]
    with session_scope() as session:
        job = create_job(session, DiagnosisPayload(prompt=report.prompt, expected=report.expected))
        report_id, _ = store_report(session, report, job.id)
        job_id = job.id
    yield report_id
    with session_scope() as session:  # the site's other tests count its reports
        for table, key, value in (
            ("report_feature", "report_id", report_id),
            ("report", "id", report_id),
            ("job", "id", job_id),
        ):
            session.execute(sa.text(f"DELETE FROM {table} WHERE {key} = :v"), {"v": value})
        session.commit()


def test_long_fires_at_tokens_wrap_on_a_phone(page: Page, site: Site, long_token_report: str):
    page.set_viewport_size(PHONE)
    page.goto(site.url(f"/reports/{long_token_report}"))
    expect(page.locator(".fires .tokcode").first).to_be_visible()
    fits(page, PHONE["width"])


def test_the_problem_opens_the_report(page: Page, site: Site):
    report = _report(site, site.report_ids[0])
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    problem = page.locator("section.problem")
    expect(problem.locator("pre.prompt-text")).to_have_text(report.prompt)
    below = page.locator("section.first-error").bounding_box()
    assert problem.bounding_box()["y"] < below["y"]
    assert page.locator("section.card").nth(1).get_attribute("class") == "card problem"


def test_the_report_list_shows_the_first_wrong_step(page: Page, site: Site):
    report = _report(site, site.report_ids[0])
    assert report.first_error is not None
    page.goto(site.url(f"/reports?audit_id={site.audit_id}"))
    expect(page.locator("table.reports thead")).to_contain_text("first wrong step")
    row = page.locator(f"table.reports tbody tr:has(a[href^='/reports/{site.report_ids[0]}'])")
    expect(row.locator("td.step-cell")).to_contain_text(report.first_error.step_text[:40].strip())


def test_docs_schema_accordion_fits_a_phone(page: Page, site: Site):
    page.set_viewport_size(PHONE)
    page.goto(site.url("/docs"))
    models = page.locator("section.models")
    expect(models).to_be_visible(timeout=60_000)
    for name in ["Body_create_audit_route_v1_audits_post", "DriftReport", "AuditProgress"]:
        schema = models.locator("article.json-schema-2020-12").filter(has_text=name).first
        schema.locator("button.json-schema-2020-12-expand-deep-button").first.click()
    page.wait_for_timeout(500)
    past_the_edge = page.evaluate(
        """w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect()
        .right > w + 0.5).map(e => e.tagName + '.' + e.className)""",
        PHONE["width"],
    )
    assert past_the_edge == []
