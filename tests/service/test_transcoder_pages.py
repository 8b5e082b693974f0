"""Transcoder features on the pages: a page per `layer/feature`, the label search over every
layer, a graph node named by the atlas and linked to its page, and a clear 404 without an atlas
(tiny model, a trained tiny set, its atlas from one pass)."""

from __future__ import annotations

import html

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api import atlas_cache
from diagnostics.atlas.transcoder_atlas import TranscoderAtlas
from diagnostics.atlas.transcoder_build import build_transcoder_atlas
from diagnostics.diagnose import diagnose
from diagnostics.options import DiagnosisOptions
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.tracer import Tracer
from service.db import session_scope
from service.job_payloads import DiagnosisPayload
from service.models import ApiKey
from service.report_store import store_report
from service.settings import get_settings
from service.submissions import create_job
from tests.conftest import WORDS, make_firing_sae
from tests.unit.test_trace import PROMPT, tiny_lm_with_mlps, train_tiny_set

CONFIG = TraceConfig(max_feature_nodes=64, batch_size=8, null_draws=4)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A report traced before the set had an atlas, then the set's atlas."""
    lm = tiny_lm_with_mlps()
    set_dir = train_tiny_set(lm, tmp_path_factory.mktemp("tc"))
    opts = DiagnosisOptions(mode="exact", max_new_tokens=4, context=False, trace=True)
    sae = make_firing_sae(lm, 64)
    report = diagnose(lm, sae, PROMPT, "7", options=opts, tracer=Tracer(set_dir, CONFIG))
    assert report.trace is not None and report.trace.supernodes
    assert {s.label_source for s in report.trace.supernodes} == {"feature_id"}
    docs = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40)) for i in range(80)]
    docs += [PROMPT] * 5
    build_transcoder_atlas(
        lm, set_dir, docs, checkpoint_dir=set_dir / "atlas.build", max_tokens=2_000, ctx_len=32,
        batch_size=8, n_contexts=8, score_context_len=8, progress=False,
    )  # fmt: skip
    return report, set_dir, TranscoderAtlas.load(set_dir)


@pytest.fixture
def tc_client(service_env, api_key, monkeypatch, traced):
    def client_for(set_dir) -> TestClient:
        from api.main import create_app

        monkeypatch.setenv("DRIFTSCOPE_TRANSCODERS", str(set_dir))
        get_settings.cache_clear()
        atlas_cache.clear_cache()
        return TestClient(create_app(), headers={"X-API-Key": api_key})

    yield client_for
    atlas_cache.clear_cache()


def _live(atlas: TranscoderAtlas) -> tuple[int, int]:
    """A live feature whose label no other feature of the set has."""
    labels = [
        (atlas.label(layer, i), layer, i) for layer in atlas.layers for i in range(atlas.d_tc)
    ]
    counts = {}
    for label, *_ in labels:
        counts[label] = counts.get(label, 0) + 1
    return next((layer, i) for label, layer, i in labels if label and counts[label] == 1
                and atlas.layer(layer).live[i])  # fmt: skip


def test_a_transcoder_feature_has_a_page_and_is_found_by_its_label(tc_client, traced):
    _, set_dir, atlas = traced
    layer, i = _live(atlas)
    label = atlas.label(layer, i)
    with tc_client(set_dir) as client:
        page = client.get(f"/features/{layer}/{i}")
        assert page.status_code == 200, page.text
        text = html.unescape(page.text)
        assert f"#{layer}/{i}" in text and f"Transcoder feature {i} of layer {layer}" in text
        assert label in text and "Max-activating contexts" in text
        assert "steer-form" not in text  # steering clamps SAE latents only
        found = client.get("/features", params={"q": label})
        assert found.status_code == 200
        assert f'href="/features/{layer}/{i}"' in found.text
        assert client.get(f"/features/{layer}/{atlas.d_tc}").status_code == 404
        assert client.get(f"/features/99/{i}").status_code == 404
        assert client.get("/features/search/not-a-job").status_code == 404  # still its route


def test_without_an_atlas_the_pages_say_how_to_build_one(tc_client, traced, tmp_path):
    with tc_client(tmp_path) as client:
        page = client.get("/features/1/2")
        assert page.status_code == 404
        assert "features build --transcoders" in html.unescape(page.text)
        index = client.get("/features", params={"q": "bridge"})
        assert index.status_code == 200 and "No transcoder atlas is available" in index.text


def test_graph_nodes_show_their_atlas_labels_and_link_to_their_pages(tc_client, traced):
    report, set_dir, atlas = traced
    with session_scope() as session:
        owner = session.exec(select(ApiKey.id).where(ApiKey.name == "tests")).first()
        job = create_job(session, DiagnosisPayload(prompt=PROMPT, expected="7"), owner)
        report_id = store_report(session, report, job.id, owner_key_id=owner)[0]
    with tc_client(set_dir) as client:
        page = html.unescape(client.get(f"/reports/{report_id}").text)
    named = 0
    for s in report.trace.supernodes[:8]:
        seed = s.members[0]
        href = f'href="/features/{seed.layer}/{seed.feature}"'
        assert href in page
        label = atlas.node_label(seed.layer, seed.feature)
        if label:
            named += 1
            assert f'<a class="feat" {href}>{label}</a>' in page  # the supernode table
    assert named > 0
    # a tracer made for the set names the supernodes from its atlas when it traces
    from diagnostics.trace.tracer import make_tracer

    tracer = make_tracer(str(set_dir), "cpu")
    assert tracer.labels(*next((m.layer, m.feature) for s in report.trace.supernodes
                               for m in s.members if atlas.node_label(m.layer, m.feature)))  # fmt: skip
