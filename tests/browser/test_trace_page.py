"""A traced report's page in Chromium: at 1400 px and on a 390 px phone the page does not scroll
sideways (the graph scrolls inside its own box), and the graph, the coloured prompt and the
intervention chart are drawn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page

from diagnostics.diagnose import diagnose
from diagnostics.options import DiagnosisOptions
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.tracer import Tracer
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.report_store import store_report
from service.submissions import create_job
from tests.browser.conftest import Site
from tests.browser.test_readable import fits
from tests.conftest import make_firing_sae
from tests.unit.test_trace import PROMPT, tiny_lm_with_mlps, train_tiny_set

SHOTS = os.environ.get("DRIFTSCOPE_SCREENSHOTS")


@pytest.fixture(scope="module")
def traced_id(site: Site, tmp_path_factory) -> str:
    lm = tiny_lm_with_mlps()
    tracer = Tracer(
        train_tiny_set(lm, tmp_path_factory.mktemp("tc")),
        TraceConfig(max_feature_nodes=64, batch_size=8, null_draws=6),
    )
    opts = DiagnosisOptions(mode="exact", max_new_tokens=4, context=False, trace=True)
    report = diagnose(lm, make_firing_sae(lm, 64), PROMPT, "7", options=opts, tracer=tracer)
    with session_scope() as session:
        job = create_job(session, DiagnosisPayload(prompt=PROMPT, expected="7"))
        return store_report(session, report, job.id)[0]


@pytest.mark.parametrize("width", [1400, 390])
def test_the_trace_fits_the_page_and_its_graph_scrolls_inside(
    page: Page, site: Site, traced_id: str, width: int
):
    page.set_viewport_size({"width": width, "height": 900})
    response = page.goto(site.url(f"/reports/{traced_id}"))
    assert response is not None and response.status == 200
    fits(page, width)
    box = page.locator("div.graph-scroll").bounding_box()
    assert box is not None and box["width"] <= width
    assert page.locator("svg.trace-graph g.supernode").count() > 0
    assert page.locator("pre.influence span.infl.h8").count() >= 1
    chart = page.locator("svg.trace-chart").bounding_box()
    assert chart is not None and chart["width"] <= width
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/trace_{width}.png", full_page=True)
        page.locator("svg.trace-graph").screenshot(path=f"{SHOTS}/trace_graph_{width}.png")
