"""The pages read at a glance, at 1400 px and on a 390 px phone: the report page built around its
verdict, no sideways page scroll anywhere, labelled tooltips on every token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from api.pages.heatmap import display_text
from tests.browser.conftest import Site
from tests.browser.test_pages import _report

WIDTHS = [1400, 390]
SHOTS = os.environ.get("DRIFTSCOPE_SCREENSHOTS")  # a folder: save each page's screenshot there


def page_paths(site: Site) -> dict[str, str]:
    report = _report(site, site.report_ids[0])
    return {
        "reports": "/reports",
        "report": f"/reports/{site.report_ids[0]}",
        "report_xss": f"/reports/{site.xss_report_id}",
        "feature": f"/features/{report.flagged[0].feature}",
        "audits": "/audits",
        "audit": f"/audits/{site.audit_id}",
        "features": "/features?q=harbour",
        "diagnose": "/diagnoses/new",
        "audit_new": "/audits/new",
        "login": "/login",
    }


def fits(page: Page, width: int) -> None:
    """No horizontal page scroll at this viewport width."""
    wide = page.evaluate(
        """w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect()
        .right > w + 0.5).slice(0, 3).map(e => e.tagName + '.' + e.className)""",
        width,
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width, (page.url, wide)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_width_without_sideways_scroll(page: Page, site: Site, width: int):
    page.set_viewport_size({"width": width, "height": 900})
    for name, path in page_paths(site).items():
        response = page.goto(site.url(path))
        assert response is not None and response.status == 200, path
        fits(page, width)
        header = page.locator("header.top").bounding_box()
        assert header is not None and header["width"] >= width - 1  # the bar spans the page
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{SHOTS}/{name}_{width}.png", full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_report_page_is_built_around_the_verdict(page: Page, site: Site, width: int):
    report = _report(site, site.report_ids[0])
    d, fe = report.divergence, report.first_error
    assert d is not None and fe is not None and report.expected_path is not None
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    # the first wrong step highlighted in the model's text; the corrected path beside it
    start, end = fe.output_span
    expect(page.locator("pre.model-text mark.wrong")).to_have_text(
        report.model_path.text[start:end]
    )
    expect(page.locator("pre.model-text")).to_have_text(report.model_path.text)
    expect(page.locator("pre.corrected-text")).to_have_text(report.expected_path.text)
    expect(page.locator("pre.corrected-text mark.fix")).to_have_text(
        report.expected_path.text[d.output_offset :]
    )
    model_box = page.locator("pre.model-text").bounding_box()
    fixed_box = page.locator("pre.corrected-text").bounding_box()
    if width >= 1000:  # side by side, same top
        assert abs(model_box["y"] - fixed_box["y"]) < 2 and fixed_box["x"] > model_box["x"]
    else:  # stacked on a phone
        assert fixed_box["y"] > model_box["y"]
    # the next-token distribution at the divergence: the top 5 with probabilities
    rows = page.locator("table.next-tokens tbody tr")
    assert rows.count() == 5 + all(t.token_id != d.expected_token_id for t in d.top_next)
    for k, t in enumerate(d.top_next):
        expect(rows.nth(k)).to_contain_text(display_text(t.token))
        expect(rows.nth(k)).to_contain_text(f"{100 * t.prob:.1f}%")
    expect(page.locator("table.next-tokens tr.model")).to_contain_text(display_text(d.model_token))
    expect(page.locator("table.next-tokens tr.expected")).to_contain_text(
        display_text(d.expected_token)
    )
    # one attribution bar per position before the divergence, signed like the attribution
    bars = page.locator("svg.strip rect")
    expect(bars).to_have_count(len(report.attribution.per_position))
    signs = bars.evaluate_all("rs => rs.map(r => r.getAttribute('class'))")
    assert signs == ["pos" if v >= 0 else "neg" for v in report.attribution.per_position]
    # the flagged latents fit their card: each card, its contexts and numbers wrap, no table
    flagged = page.locator("section.flagged-features")
    card_width = flagged.evaluate("s => s.clientWidth")
    assert flagged.evaluate("s => s.scrollWidth") <= card_width
    first = page.locator(".flagged-item").first
    expect(first.locator(".flagged-numbers dt").first).to_have_text("ablation effect")
    # the evidence chart: the flagged set's gap change against every null and control draw
    expect(page.locator("svg.evidence-chart circle.null-draw")).to_have_count(
        len(report.null.draws)
    )
    expect(page.locator("svg.evidence-chart rect.control-draw")).to_have_count(
        len(report.control.draws)
    )
    expect(page.locator("svg.evidence-chart .flagged-label")).to_contain_text(
        f"{report.verification.metric_change:+.2g}"
    )
    # continuations after their prefix: the model's text up to the divergence, then the branch
    prefix = report.model_path.text[: d.output_offset]
    first = page.locator("pre.continuation").first
    expect(first.locator(".prefix")).to_have_text(prefix)
    expect(first).to_have_text(prefix + report.verification.continuation)
    fits(page, width)


def test_focus_on_a_token_shows_its_top_features_with_labels(page: Page, site: Site):
    from diagnostics.atlas import FeatureAtlas

    report = _report(site, site.report_ids[0])
    atlas = FeatureAtlas.load(site.atlas_dir)
    k, tok = next((k, t) for k, t in enumerate(report.model_path.tokens) if t.top_features)
    page.goto(site.url(f"/reports/{site.report_ids[0]}"))
    cell = page.locator('[aria-label="model path"] .tok').nth(k)
    expect(cell).to_have_text(display_text(tok.token))
    assert cell.evaluate("c => getComputedStyle(c, '::after').content") in ("none", "normal")
    cell.focus()
    tip = cell.evaluate("c => getComputedStyle(c, '::after').content").replace('\\"', '"')
    for f in tok.top_features:
        assert f"#{f.feature}" in tip
        label = next((g.label for g in report.flagged if g.feature == f.feature), None)
        assert (label or atlas.label(f.feature) or "(no label)")[:20] in tip
    page.mouse.move(0, 0)
    other = page.locator('[aria-label="model path"] .tok').nth(k + 1)
    other.hover()
    assert "position" in other.evaluate("c => getComputedStyle(c, '::after').content")
