"""Pages that start and follow work, in Chromium: the feature index and its searches, steering
from a feature page, the diagnosis and audit forms, and the pages of queued jobs (they reload
themselves, then show the result). Jobs are run here by the real worker code (workers.jobs)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from diagnostics.atlas import FeatureAtlas
from tests.browser.conftest import Site
from tests.browser.test_pages import _report
from tests.browser.test_readable import WIDTHS, fits
from tests.unit.test_eval_audit import FIXTURE
from workers.jobs import run_job


@pytest.fixture(autouse=True)
def _leave_the_site_as_found(site: Site):
    """Delete what a test here submitted, so the other browser tests see the data they built."""
    from sqlmodel import delete, select

    from service.db import session_scope
    from service.models import Audit, Job, Report, ReportFeature

    with session_scope() as session:
        jobs = set(session.exec(select(Job.id)).all())
        audits = set(session.exec(select(Audit.id)).all())
    yield
    with session_scope() as session:
        new_jobs = set(session.exec(select(Job.id)).all()) - jobs
        reports = session.exec(select(Report.id).where(Report.job_id.in_(new_jobs))).all()
        session.exec(delete(ReportFeature).where(ReportFeature.report_id.in_(reports)))
        session.exec(delete(Report).where(Report.id.in_(reports)))
        session.exec(delete(Job).where(Job.id.in_(new_jobs)))
        new_audits = set(session.exec(select(Audit.id)).all()) - audits
        session.exec(delete(Audit).where(Audit.id.in_(new_audits)))
        session.commit()


def _run(site: Site, page: Page) -> None:
    """Run the job whose page is open, then reload it."""
    job_id = page.url.rsplit("/", 1)[-1]
    assert run_job(job_id, runtime=lambda: site.runtime) == "done"
    page.reload()


def _refreshes(page: Page) -> bool:
    return page.locator('meta[http-equiv="refresh"]').count() == 1


@pytest.mark.parametrize("width", WIDTHS)
def test_features_index_searches_labels_and_text(page: Page, site: Site, width: int):
    page.set_viewport_size({"width": width, "height": 900})
    atlas = FeatureAtlas.load(site.atlas_dir)
    flagged = _report(site, site.report_ids[0]).flagged[0]
    page.goto(site.url("/features"))
    fits(page, width)
    expect(page.locator("table.often")).to_contain_text(f"#{flagged.feature}")
    word = "harbour"
    page.fill('input[name="q"]', word)
    page.click("form.label-search button")
    expect(page).to_have_url(re.compile(r"/features\?q=harbour$"))
    expected = atlas.search_label(word)[:50]
    rows = page.locator("table.label-matches tbody tr")
    expect(rows).to_have_count(len(expected))
    expect(rows.first).to_contain_text(f"#{expected[0]}")
    fits(page, width)
    page.fill('input[name="text"]', "the golden gate bridge")
    page.fill('input[name="versus"]', "the sydney harbour bridge")
    page.click("form.text-search button")
    expect(page).to_have_url(re.compile(r"/features/search/[0-9a-f-]{36}$"))
    expect(page.locator("[data-status]")).to_have_text("queued")
    assert _refreshes(page)
    _run(site, page)
    expect(page.locator("[data-status]")).to_have_text("done")
    assert not _refreshes(page)
    hits = page.locator("table.hits tbody tr")
    assert hits.count() >= 1
    first = hits.first.locator("a.feat").get_attribute("href")
    assert first and first.startswith("/features/")
    fits(page, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_steering_from_a_feature_page_shows_both_texts_side_by_side(
    page: Page, site: Site, width: int
):
    page.set_viewport_size({"width": width, "height": 900})
    fid = _report(site, site.report_ids[0]).flagged[0].feature
    page.goto(site.url(f"/features/{fid}"))
    page.fill("#steer-prompt", "what is 2 plus")
    page.fill("#steer-clamp", "8")
    page.fill("#steer-tokens", "4")
    page.click("form.steer-form button")
    expect(page).to_have_url(re.compile(r"/steer/[0-9a-f-]{36}$"))
    expect(page.locator("h1")).to_contain_text(f"#{fid}")
    expect(page.locator("[data-status]")).to_have_text("queued")
    _run(site, page)
    baseline, steered = page.locator("pre.baseline-text"), page.locator("pre.steered-text")
    expect(baseline).to_have_count(1)
    expect(steered).to_have_count(1)
    a, b = baseline.bounding_box(), steered.bounding_box()
    if width >= 1000:
        assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"]
    else:
        assert b["y"] > a["y"]
    fits(page, width)


def test_diagnosis_form_follows_the_job_to_its_report(page: Page, site: Site):
    page.goto(site.url("/diagnoses/new"))
    page.fill("#prompt", "what is 2 plus 3 ?")
    page.fill("#expected", "5")
    page.select_option("#mode", "exact")
    page.uncheck('input[name="chat"]')
    page.click("form.diagnose-form button")
    expect(page).to_have_url(re.compile(r"/diagnoses/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator("[data-status]")).to_have_text("queued")
    expect(page.locator(".job-status")).to_contain_text("ETA about")  # diagnoses have finished
    assert _refreshes(page)
    # the API's 202 Location, asked for as HTML (a browser following it), is this page; leave
    # the self-refreshing page first, so its reload cannot race the navigation
    page.goto("about:blank")
    response = page.goto(site.url(f"/v1/diagnoses/{job_id}"))
    assert response is not None and response.status == 200
    expect(page).to_have_url(site.url(f"/diagnoses/{job_id}"))
    api = page.request.get(site.url(f"/v1/diagnoses/{job_id}"), headers={"X-API-Key": site.api_key})
    assert api.headers["content-type"] == "application/json" and api.json()["status"] == "queued"
    _run(site, page)
    expect(page).to_have_url(re.compile(r"/reports/[0-9a-f-]{36}$"))
    expect(page.locator(".verdict-text")).not_to_be_empty()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(site.url("/diagnoses/new"))
        fits(page, width)


def test_audit_upload_form_takes_an_lm_eval_run(page: Page, site: Site):
    page.goto(site.url("/audits/new"))
    page.set_input_files("#file", str(FIXTURE))
    page.select_option("#filter", "flexible-extract")
    page.fill("#limit", "1")
    page.click("form.audit-form button")
    expect(page).to_have_url(re.compile(r"/audits/[0-9a-f-]{36}$"))
    expect(page.locator("h1")).to_contain_text(FIXTURE.name)  # unnamed: its file, not a UUID
    expect(page.locator("body")).not_to_contain_text("/tmp/")
    expect(page.locator('[data-stat="total"]')).to_have_text("1")
    assert _refreshes(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(site.url("/audits/new"))
        fits(page, width)


def test_bad_form_and_filter_values_are_clear_422_pages(page: Page, site: Site):
    page.goto(site.url("/audits/new"))
    page.set_input_files("#file", str(FIXTURE))
    page.fill("#name", "bad filter")
    page.evaluate(
        "() => { const o = document.createElement('option'); o.value = 'loose'; "
        "document.querySelector('#filter').append(o); }"
    )
    page.select_option("#filter", "loose")
    with page.expect_response(re.compile(r"/audits/new$")) as info:
        page.click("form.audit-form button")
    assert info.value.status == 422
    expect(page.locator("main")).to_contain_text("strict-match")
    for query in ("feature=abc", "correct=maybe"):
        response = page.goto(site.url(f"/reports?{query}"))
        assert response is not None and response.status == 422
        expect(page.locator("main")).to_contain_text(query.split("=")[0])
        expect(page.locator("table.list")).to_have_count(0)
