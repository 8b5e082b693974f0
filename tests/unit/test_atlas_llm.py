"""The optional LLM explainer against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from diagnostics.atlas.explainer_llm import LlmExplainer, LlmExplainerError, relabel
from tests.unit.test_atlas_build import GATE_LATENT, planted  # noqa: F401  (fixture)


class _FakeChatServer(BaseHTTPRequestHandler):
    requests: list[dict] = []
    reply: dict = {
        "choices": [{"message": {"role": "assistant", "content": " 'gate' as in Golden Gate "}}]
    }

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        data = json.dumps(type(self).reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChatServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _FakeChatServer.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_explainer_from_env_posts_contexts_and_relabels(planted, server, monkeypatch):  # noqa: F811
    _, _, _, atlas = planted
    monkeypatch.setenv("DRIFTSCOPE_LLM_URL", server)
    monkeypatch.setenv("DRIFTSCOPE_LLM_MODEL", "fake-7b")
    monkeypatch.setenv("DRIFTSCOPE_LLM_API_KEY", "sk-test")
    explainer = LlmExplainer.from_env()
    assert explainer is not None
    rule_before = atlas.entry(GATE_LATENT).rule
    auroc_before = atlas.entry(GATE_LATENT).detection_auroc
    assert relabel(atlas, explainer, [GATE_LATENT]) == 1
    entry = atlas.entry(GATE_LATENT)
    assert entry.label == "'gate' as in Golden Gate" and entry.label_source == "llm"
    assert entry.rule == rule_before and entry.detection_auroc == auroc_before
    assert atlas.meta.llm_model == "fake-7b"
    (req,) = _FakeChatServer.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "fake-7b"
    user = req["body"]["messages"][-1]["content"]
    assert "<<gate>>" in user and "Promoted output tokens" in user


def test_explainer_unconfigured_and_failures(server, monkeypatch):
    monkeypatch.delenv("DRIFTSCOPE_LLM_URL", raising=False)
    assert LlmExplainer.from_env() is None
    bad = LlmExplainer(base_url="http://127.0.0.1:9/v1", model="m", timeout=2)
    from diagnostics.atlas.records import FeatureEntry, LabelRule

    entry = FeatureEntry(
        id=0, density=0.1, mean_activation=1, max_activation=2, quantiles={}, label="x",
        label_source="ngram+logit", rule=LabelRule(), detection_auroc=None,
        random_label_auroc=None, is_dense=False, is_unigram=False, top_contexts=[],
        promoted_tokens=[], suppressed_tokens=[],
    )  # fmt: skip
    with pytest.raises(LlmExplainerError, match="failed"):
        bad.explain(entry)
    _FakeChatServer.reply = {"choices": []}
    try:
        with pytest.raises(LlmExplainerError, match="without a message"):
            LlmExplainer(base_url=server, model="m").explain(entry)
    finally:
        _FakeChatServer.reply = {"choices": [{"message": {"content": "x"}}]}
