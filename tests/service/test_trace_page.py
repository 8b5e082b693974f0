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


def test_an_audits_summary_counts_supernodes_recurring_across_traced_failures(
    client, traced_report
):
    from service.datasets import ProblemItem
    from service.submissions import create_audit

    items = [ProblemItem(k, PROMPT, "7") for k in range(2)]
    with session_scope() as session:
        owner = session.exec(select(ApiKey.id).where(ApiKey.name == "tests")).first()
        audit, job_ids = create_audit(session, items, DiagnosisOptions(trace=True), name="t",
                                      source="t", owner_key_id=owner)  # fmt: skip
        for job_id in job_ids:  # the same failure twice: every supernode recurs
            store_report(session, traced_report, job_id, audit_id=audit.id, owner_key_id=owner)
    summary = client.get(f"/v1/audits/{audit.id}/summary")
    assert summary.status_code == 200, summary.text
    recurring = summary.json()["trace_supernodes"]
    t = traced_report.trace
    assert len(recurring) == min(20, len({(s.members[0].layer, s.members[0].feature)
                                          for s in t.supernodes}))  # fmt: skip
    top = next(r for r in recurring if r["label"] == t.supernodes[0].label)
    assert top["failures"] == 2 and top["intervened"] == 2
    zero_top = next(i for i in t.interventions if i.mode == "zero" and i.supernodes == [0])
    assert top["flip_rate"] == float(zero_top.flipped)
    assert top["null_flip_rate"] == pytest.approx(t.null.flip_rate)
    assert top["by_kind"][traced_report.failure_class.value]["failures"] == 2
    page = client.get(f"/audits/{audit.id}")
    assert page.status_code == 200 and "Supernodes recurring across traced failures" in page.text
    assert t.supernodes[0].label in page.text


def test_an_api_job_with_the_trace_option_stores_a_traced_report(client, service_env, tmp_path):
    """options.trace on POST /v1/diagnoses: the worker traces with its runtime's transcoder set
    (a tiny one trained on the service's model here) and the stored report carries the trace."""
    from diagnostics.model_loading import load_model
    from diagnostics.sae import load_sae
    from workers.jobs import run_job
    from workers.runtime import Runtime

    lm, sae = load_model(service_env.model), load_sae(service_env.sae)
    tracer = Tracer(train_tiny_set(lm, tmp_path), TraceConfig(max_feature_nodes=32, null_draws=4))
    runtime = Runtime(lm=lm, sae=sae, atlas=None, sae_id="random-sae", tracer=tracer)
    options = {"max_new_tokens": 4, "top_k": 3, "control_draws": 1, "trace": True,
               "context": False, "mode": "exact"}  # fmt: skip
    resp = client.post(
        "/v1/diagnoses", json={"prompt": PROMPT, "expected": "7", "options": options}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert run_job(job_id, settings=service_env, runtime=lambda: runtime) == "done"
    report = client.get(f"/v1/diagnoses/{job_id}").json()["report"]
    assert report["schema_version"] == "3.0"
    assert report["divergence"] is not None  # the random model does not answer 7
    trace = report["trace"]
    assert trace["cost"]["n_tokens"] == report["divergence"]["position"]
    assert trace["prompt_influence"] and trace["node_threshold"] == 0.8
