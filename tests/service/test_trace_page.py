"""A traced report on its page: the graph as inline SVG, the prompt coloured by influence, the
interventions against the null, and the graph JSON circuit-tracer's viewer opens."""

from __future__ import annotations

import re

import pytest
from circuit_tracer.frontend.graph_models import Model as GraphModel
from sqlmodel import select

from diagnostics.diagnose import diagnose
from diagnostics.options import DiagnosisOptions
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.tracer import Tracer
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import ApiKey
from service.report_store import store_report
from service.submissions import create_job
from tests.conftest import make_firing_sae
from tests.unit.test_trace import PROMPT, tiny_lm_with_mlps, train_tiny_set


@pytest.fixture(scope="module")
def traced_report(tmp_path_factory):
    lm = tiny_lm_with_mlps()
    set_dir = train_tiny_set(lm, tmp_path_factory.mktemp("tc"))
    tracer = Tracer(set_dir, TraceConfig(max_feature_nodes=64, batch_size=8, null_draws=6))
    opts = DiagnosisOptions(mode="exact", max_new_tokens=4, context=False, trace=True)
    report = diagnose(lm, make_firing_sae(lm, 64), PROMPT, "7", options=opts, tracer=tracer)
    assert report.trace is not None and report.trace.supernodes
    return report


def test_the_report_page_draws_the_trace_and_serves_its_graph_json(client, traced_report):
    with session_scope() as session:
        owner = session.exec(select(ApiKey.id).where(ApiKey.name == "tests")).first()
        job = create_job(session, DiagnosisPayload(prompt=PROMPT, expected="7"), owner)
        report_id = store_report(session, traced_report, job.id, owner_key_id=owner)[0]
    page = client.get(f"/reports/{report_id}")
    assert page.status_code == 200
    html = page.text
    t = traced_report.trace
    assert '<div class="graph-scroll">' in html and '<svg class="trace-graph"' in html
    assert html.count('<g class="supernode">') == min(len(t.supernodes), 30)
    assert t.supernodes[0].label in html
    # every prompt word is a piece of the coloured prompt, the strongest at the top level
    pieces = re.findall(r'<span class="infl h(\d)"[^>]*>([^<]*)</span>', html)
    assert "".join(text for _, text in pieces).startswith(PROMPT)
    assert max(int(level) for level, _ in pieces) == 8
    assert '<svg class="trace-chart"' in html and html.count('class="null-draw"') >= 6
    assert "cdn" not in html.lower() and "<script" not in html
    graph = client.get(f"/reports/{report_id}/graph.json")
    assert graph.status_code == 200
    model = GraphModel.model_validate(graph.json())
    assert {n.node_id for n in model.nodes} == {n.node_id for n in t.nodes}
    assert [s[0] for s in model.qParams.supernodes] == [s.label for s in t.supernodes]
    assert len(model.links) == len(t.edges)
    assert client.get("/reports/nope/graph.json").status_code == 404
