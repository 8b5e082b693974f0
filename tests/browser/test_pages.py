"""The web pages in headless Chromium against the real app and real stored reports."""

from __future__ import annotations

import re
import struct

from playwright.sync_api import BrowserContext, Page, expect

from api.pages.heatmap import display_text
from diagnostics.atlas import FeatureAtlas
from diagnostics.atlas.describe import element_rows
from service.db import session_scope
from service.ownership import EVERYONE
from service.report_queries import stored_report
from tests.browser.conftest import XSS_LABEL, XSS_PROMPT, Site


def _report(site: Site, report_id: str):
    with session_scope() as session:
        return stored_report(session, report_id, scope=EVERYONE).report


def test_list_shows_the_reports_and_links_to_each_report_page(page: Page, site: Site):
    page.goto(site.url("/"))
    expect(page).to_have_url(site.url("/reports"))
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(4)  # three diagnosed problems and the synthetic report
    expect(page.locator(".pager")).to_contain_text("1–4 of 4")
    page.get_by_role("link", name="how many apples did she sell").click()
    expect(page).to_have_url(site.url(f"/reports/{site.report_ids[1]}"))
    expect(page.locator("h1")).to_contain_text(site.report_ids[1])


def test_list_filters_by_feature_and_class(page: Page, site: Site):
    flagged = _report(site, site.report_ids[0]).flagged[0].feature
    page.goto(site.url("/reports"))
    page.fill("input[name=feature]", str(flagged))
    page.click("form.filters button")
    expect(page).to_have_url(re.compile(rf"feature={flagged}"))
    for link in page.locator("table.list tbody tr").all():
        expect(link.locator(f'a.feat[href="/features/{flagged}"]')).to_have_count(1)
    page.goto(site.url("/reports?failure_class=none&correct=&feature="))
    expect(page.locator(".empty")).to_contain_text("No report matches")


def test_report_page_aligns_the_paths_where_they_part(page: Page, site: Site):
    report = _report(site, site.report_ids[0])
    d = report.divergence
    assert d is not None and report.expected_path is not None and report.first_error is not None
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    corrected = page.locator('[aria-label="corrected branch"] .tok.divergence')
    branch = page.locator('[aria-label="model branch"] .tok.divergence')
    model = page.locator('[aria-label="model path"] .tok.divergence')
    for marked in (corrected, branch, model):
        expect(marked).to_have_count(1)
    expect(corrected).to_have_text(display_text(d.expected_token))
    expect(branch).to_have_text(display_text(d.model_token))
    expect(model).to_have_text(display_text(d.model_token))
    # both branch rows show the same shared text before the outlined token
    shared = "e => [...e.parentElement.children].slice(0, [...e.parentElement.children].indexOf(e)).map(c => c.textContent).join('')"
    assert corrected.evaluate(shared) == branch.evaluate(shared)
    assert corrected.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"
    plain = page.locator('[aria-label="corrected branch"] .tok:not(.divergence)').first
    assert plain.evaluate("e => getComputedStyle(e).outlineStyle") == "none"
    # the first wrong step is underlined in the model's path, and named in its card
    expect(page.locator(".first-error")).to_contain_text(report.first_error.step_text.strip())
    assert page.locator('[aria-label="model path"] .tok.wrong-step').count() >= 1
    # heat: the strongest flagged activation gets the darkest colour, unflagged tokens none
    hot = page.locator(".tokens .tok.h8")
    assert hot.count() >= 1
    cold = page.locator(".tokens .tok.h0").first
    colour = "e => getComputedStyle(e).backgroundColor"
    assert hot.first.evaluate(colour) != cold.evaluate(colour)
    expect(page.locator(".verdict-text")).to_have_text(report.verdict)
    expect(page.locator(".verdict")).to_contain_text(report.failure_class.value)
    expect(page.locator("tr.null")).to_contain_text("selection-matched null")
    expect(page.locator("tr.control")).to_contain_text("random control")
    expect(page.locator("table.kv")).to_contain_text(["generate", "planted-sae"])


def test_flagged_feature_label_is_shown_and_links_to_the_feature_page(page: Page, site: Site):
    report = _report(site, site.report_ids[0])
    first = report.flagged[0]
    assert first.label, "the atlas should have labelled the flagged feature"
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    row = page.locator(".flagged-item").first
    expect(row.locator(".card-label")).to_contain_text(first.label)
    # the ablation bar (the item's first) is blue: ablating it moves toward the corrected token
    expect(row.locator("svg.bar").first.locator("rect.pos")).to_have_count(1)
    sign = "neg" if first.attribution < 0 else "pos"
    expect(row.locator("svg.bar").nth(1).locator(f"rect.{sign}")).to_have_count(1)
    assert first.ablation_effect > 0  # flagged because ablating it helps
    row.get_by_role("link", name=f"#{first.feature}").click()
    expect(page).to_have_url(site.url(f"/features/{first.feature}"))
    entry = FeatureAtlas.load(site.atlas_dir).entry(first.feature)
    expect(page.locator(".feature-label")).to_have_text(entry.label)
    expect(page.locator("dl.grid")).to_contain_text(
        f"detection AUROC {entry.description_auroc:.3g} for the description"
    )
    expect(page.locator(".generic-note")).to_have_count(1 if entry.is_generic else 0)
    contexts = page.locator(".context")
    expect(contexts).to_have_count(len(entry.top_contexts))
    expect(contexts.first.locator(".tok.peak")).to_have_text(
        display_text(entry.top_contexts[0].tokens[entry.top_contexts[0].peak_index])
    )
    contradicts = entry.peaks_on_rule is not None and entry.peaks_on_rule < 0.5
    expect(page.locator(".contradiction")).to_have_count(1 if contradicts else 0)
    page.locator("details.rule summary").click()
    expect(page.locator("table.rule-elements")).to_contain_text(element_rows(entry.rule)[0].text)
    shown = [t for t in entry.output.tokens if t.significant]
    causal = page.locator("table.causal")
    expect(causal).to_have_count(1 if shown else 0)
    if shown:
        expect(causal).to_contain_text(display_text(shown[0].token))
    expect(page.locator("table.effects").last).to_contain_text(
        display_text(entry.suppressed_tokens[0].token)
    )
    # the feature's reports open coloured by it (the link keeps the filter)
    page.locator(f'a[href="/reports/{site.report_ids[0]}?feature={first.feature}"]').first.click()
    expect(page).to_have_url(site.url(f"/reports/{site.report_ids[0]}?feature={first.feature}"))
    expect(page.locator(".colour-by a.active")).to_have_text(f"#{first.feature}")


def test_colouring_by_one_feature(page: Page, site: Site):
    report = _report(site, site.report_ids[0])
    feature = report.flagged[-1].feature
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    page.locator(".colour-by").get_by_role("link", name=f"#{feature}").click()
    expect(page).to_have_url(re.compile(rf"\?feature={feature}$"))
    classes = page.locator('[aria-label="model path"] .tok').evaluate_all(
        "cells => cells.map(c => c.className)"
    )
    hot = ["h0" not in c.split() for c in classes]
    fires = [
        any(f.feature == feature and f.activation > 0 for f in t.flagged)
        for t in report.model_path.tokens
    ]
    assert any(fires) and hot == fires


def test_untrusted_text_is_rendered_as_text(page: Page, site: Site):
    page.goto(site.url(f"/reports/{site.report_ids[2]}"))
    expect(page.locator("pre.prompt-text")).to_have_text(XSS_PROMPT)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("main script").count() == 0
    page.goto(site.url(f"/reports/{site.xss_report_id}"))
    expect(page.locator(".flagged-item .card-label").first).to_contain_text(XSS_LABEL)
    expect(page.locator(".flagged-item mark.peak").first).to_have_text("<b>")
    assert page.locator("main img").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.goto(site.url("/reports"))  # the list shows the prompt preview as text too
    expect(page.locator("table.list")).to_contain_text("<script>window.pwned=1</script>")
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_audit_page_leads_with_first_errors_spans_then_concepts(page: Page, site: Site):
    reports = [_report(site, rid) for rid in site.report_ids]
    n_correct = sum(r.correct for r in reports)
    page.goto(site.url("/audits"))
    page.get_by_role("link", name="browser-test").click()
    expect(page).to_have_url(site.url(f"/audits/{site.audit_id}"))
    expect(page.locator('[data-stat="done"]')).to_have_text("3")
    expect(page.locator('[data-stat="total"]')).to_have_text("4")
    expect(page.locator('[data-stat="failed"]')).to_have_text("1")
    expect(page.locator('[data-stat="accuracy"]')).to_have_text(f"{100 * n_correct / 3:.1f}%")
    # it leads with the first errors by kind (one example step each), then the spans
    kinds: dict[str, int] = {}
    for r in reports:
        if not r.correct:
            kind = r.first_error.kind if r.first_error else "not located"
            kinds[kind] = kinds.get(kind, 0) + 1
    for name, n in kinds.items():
        expect(page.locator(f'.first-errors [data-count="{name}"]')).to_have_text(str(n))
    expect(page.locator(".first-errors svg.hbar")).to_have_count(len(kinds))
    headings = page.locator("main h2").all_inner_texts()
    order = [next(k for k, h in enumerate(headings) if h.startswith(t)) for t in
             ("First errors", "Which part of the problems", "Concepts that beat", "Problems")]  # fmt: skip
    assert order == sorted(order)
    # the answers bar: correct, wrong, failed jobs, pending
    n_wrong = sum(kinds.values())
    parts = (("correct", n_correct), ("wrong", n_wrong), ("failed", 1), ("pending", 0))
    for kind, n in parts:
        expect(page.locator(f'[data-segment="{kind}"]')).to_have_text(str(n))
    expect(page.locator("svg.accuracy rect")).to_have_count(sum(n > 0 for _, n in parts))
    # flagged against null fix rates, as bars of the share of failures
    wrong = [r for r in reports if not r.correct]
    fixed = sum(bool(r.verification and r.verification.fixed) for r in wrong) / len(wrong)
    expect(page.locator('.fix-rates [data-value="flagged, ablated"]')).to_have_text(
        f"{100 * fixed:.1f}%"
    )
    null_rates = [r.null.fix_rate for r in wrong if r.null and r.null.fix_rate is not None]
    null_bar = page.locator('.fix-rates [data-value="selection-matched null"]')
    if null_rates:
        expect(null_bar).to_have_text(f"{100 * sum(null_rates) / len(null_rates):.1f}%")
    else:
        expect(null_bar).to_have_count(0)
    # finished: the page no longer reloads itself
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    # concepts: only those that beat the null, else a sentence that says none does
    concepts = page.locator(".concepts .concept")
    if concepts.count() == 0:
        expect(page.locator(".concepts .nothing-beats")).to_be_visible()
    expect(page.locator("table.items tbody tr")).to_have_count(4)
    expect(page.locator("table.items")).to_contain_text("failed")
    # per item: the first error and the flagged labels; labels recurring in failures as bars
    items = page.locator("table.items tbody tr")
    for k, r in enumerate(reports):
        if r.first_error is not None:
            expect(items.nth(k).locator(".first-error-cell")).to_contain_text(
                r.first_error.kind.replace("_", " ")
            )
        for f in r.flagged:
            expect(items.nth(k)).to_contain_text(f.label[:40])
    expect(items.nth(3)).to_contain_text("what is 1 plus 1 ?")  # its job failed: the prompt anyway


def test_unknown_ids_are_html_404_pages(page: Page, site: Site):
    for path in ("/reports/no-such-report", "/features/100000", "/features/abc", "/audits/nope"):
        response = page.goto(site.url(path))
        assert response is not None and response.status == 404, path
        assert response.headers["content-type"].startswith("text/html")
        expect(page.locator("h1")).to_contain_text("404")
    response = page.goto(site.url("/no/such/page"))
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_contain_text("404 · Not Found")
    api = page.request.get(site.url("/v1/reports/nope"), headers={"X-API-Key": site.api_key})
    assert api.status == 404 and api.headers["content-type"] == "application/problem+json"


def test_pages_need_the_api_key_and_the_login_form_keeps_it(anonymous: BrowserContext, site: Site):
    page = anonymous.new_page()
    target = f"/reports/{site.report_ids[0]}"
    response = page.goto(site.url(target))
    assert response is not None and response.status == 401
    report = _report(site, site.report_ids[0])
    expect(page.locator("#key")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text(report.prompt)  # nothing leaks
    expect(page.locator("body")).not_to_contain_text(report.verdict)
    page.fill("#key", "ds_000000000000_wrong")
    page.click("form button[type=submit]")
    expect(page.locator(".alert")).to_contain_text("unknown or revoked")
    page.fill("#key", site.api_key)
    page.click("form button[type=submit]")
    expect(page).to_have_url(site.url(target))
    cookie = next(c for c in anonymous.cookies() if c["name"] == "driftscope_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click("form.logout button")
    expect(page).to_have_url(site.url("/login"))
    assert page.goto(site.url("/reports")).status == 401


def test_feature_page_without_an_atlas(page: Page, site: Site, tmp_path, monkeypatch):
    from service.settings import get_settings

    flagged = _report(site, site.report_ids[0]).flagged[0].feature
    monkeypatch.setenv("DRIFTSCOPE_ATLAS", str(tmp_path))  # an empty directory
    get_settings.cache_clear()
    try:
        page.goto(site.url(f"/features/{flagged}"))
        expect(page.locator(".no-atlas")).to_contain_text("No feature atlas is available")
        expect(page.locator(f'a[href^="/reports/{site.report_ids[0]}"]')).not_to_have_count(0)
        flagged_anywhere = {
            f.feature for rid in site.report_ids for f in _report(site, rid).flagged
        }
        unflagged = min(set(range(48)) - flagged_anywhere - {5})
        assert page.goto(site.url(f"/features/{unflagged}")).status == 404
    finally:
        monkeypatch.delenv("DRIFTSCOPE_ATLAS")
        get_settings.cache_clear()


def test_report_page_screenshot(page: Page, site: Site):
    """The report page renders whole: a full-page screenshot as tall as the document, longer than
    a screen, with every section of the report laid out inside it and no sideways scroll."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    png = page.screenshot(full_page=True)
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR chunk
    assert (width, height) == (1280, page.evaluate("document.documentElement.scrollHeight"))
    assert height > 900
    sections = page.locator("section.card").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [r.top + window.scrollY, r.height]; })"
    )
    assert len(sections) >= 4
    assert all(h > 0 and 0 <= top and top + h <= height for top, h in sections), sections
    expect(page.locator(".verdict-text")).to_have_text(_report(site, site.report_ids[0]).verdict)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no sideways scroll
