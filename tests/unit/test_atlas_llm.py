"""The optional LLM explainer against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from diagnostics.atlas.explainer_llm import (
    LlmExplainer,
    LlmExplainerError,
    parse_answer,
    relabel,
    score_llm_labels,
    trigger_rule,
)
from tests.unit.test_atlas_build import GATE_LATENT, planted  # noqa: F401  (fixture)

ANSWER = '```json\n{"label": "the word gate, as in Golden Gate", "triggers": ["gate"]}\n```'


class _FakeChatServer(BaseHTTPRequestHandler):
    requests: list[dict] = []
    reply: dict = {"choices": [{"message": {"role": "assistant", "content": ANSWER}}]}

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


def test_explainer_from_env_posts_contexts_relabels_and_is_scored(planted, server, monkeypatch):  # noqa: F811
    lm, sae, _, atlas = planted
    atlas = atlas.__class__(**{**atlas.__dict__, "labels": list(atlas.labels)})  # a copy
    atlas.label_sources = list(atlas.label_sources)
    atlas.arrays = dict(atlas.arrays)
    monkeypatch.setenv("DRIFTSCOPE_LLM_URL", server)
    monkeypatch.setenv("DRIFTSCOPE_LLM_MODEL", "fake-7b")
    monkeypatch.setenv("DRIFTSCOPE_LLM_API_KEY", "sk-test")
    explainer = LlmExplainer.from_env()
    assert explainer is not None
    before = atlas.entry(GATE_LATENT)
    answers = relabel(atlas, explainer, [GATE_LATENT])
    assert answers[GATE_LATENT].triggers == ["gate"]
    entry = atlas.entry(GATE_LATENT)
    assert entry.label.startswith("the word gate, as in Golden Gate")
    assert entry.label_source == "llm" and atlas.meta.llm_model == "fake-7b"
    assert entry.description == before.description and entry.rule == before.rule
    (req,) = _FakeChatServer.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "fake-7b"
    user = req["body"]["messages"][-1]["content"]
    assert "<<gate>>" in user and "Offline description" in user
    # scored like the offline descriptions: on the atlas's held-out windows, hard negatives
    llm = score_llm_labels(lm, sae, atlas, answers)
    assert llm[GATE_LATENT] == pytest.approx(before.description_auroc, abs=0.02)
    assert atlas.entry(GATE_LATENT).llm_auroc == pytest.approx(float(llm[GATE_LATENT]), abs=1e-4)
    # a wrong trigger list scores worse
    wrong = {GATE_LATENT: parse_answer('{"label": "sydney", "triggers": ["sydney"]}')}
    assert score_llm_labels(lm, sae, atlas, wrong)[GATE_LATENT] < llm[GATE_LATENT] - 0.2


def test_answers_parse_with_and_without_json(planted):  # noqa: F811
    lm = planted[0]
    assert parse_answer('{"label": " a  b ", "triggers": ["x", " "]}').triggers == ["x"]
    plain = parse_answer("fires on 'gate' and \"bridge\"")
    assert plain.label == "fires on 'gate' and \"bridge\"" and plain.triggers == ["gate", "bridge"]
    rule = trigger_rule(lm.tokenizer, ["gate", "golden gate"])
    gate = lm.tokenizer.convert_tokens_to_ids("gate")
    golden = lm.tokenizer.convert_tokens_to_ids("golden")
    assert gate in rule.token_ids and [golden, gate] in rule.ngram_ids


def test_explainer_unconfigured_and_failures(server, monkeypatch):
    monkeypatch.delenv("DRIFTSCOPE_LLM_URL", raising=False)
    assert LlmExplainer.from_env() is None
    bad = LlmExplainer(base_url="http://127.0.0.1:9/v1", model="m", timeout=2)
    from diagnostics.atlas.records import FeatureEntry, LabelRule

    entry = FeatureEntry(
        id=0, density=0.1, mean_activation=1, max_activation=2, quantiles={}, label="x",
        label_source="ngram", description="x", description_auroc=None, rule_text="",
        rule=LabelRule(), detection_auroc=None, random_label_auroc=None, is_dense=False,
        is_unigram=False, is_generic=False, generic_reason="", output=None, top_contexts=[],
        peaks_on_rule=None, promoted_tokens=[], suppressed_tokens=[],
    )  # fmt: skip
    with pytest.raises(LlmExplainerError, match="failed"):
        bad.explain(entry)
    _FakeChatServer.reply = {"choices": []}
    try:
        with pytest.raises(LlmExplainerError, match="without a message"):
            LlmExplainer(base_url=server, model="m").explain(entry)
    finally:
        _FakeChatServer.reply = {"choices": [{"message": {"content": ANSWER}}]}
