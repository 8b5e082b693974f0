"""Optional LLM explainer: rewrite feature labels with an OpenAI-compatible chat endpoint.

Used only when configured (`DRIFTSCOPE_LLM_URL`, e.g. http://127.0.0.1:8000/v1, plus
`DRIFTSCOPE_LLM_MODEL` and optionally `DRIFTSCOPE_LLM_API_KEY`). The prompt shows the feature's
max-activating contexts with the peak token marked, its offline rule and its promoted output
tokens. The LLM text replaces the label (label_source "llm"); the offline rule is kept, and the
detection AUROC stays the score of that rule (scoring a free-text label needs an LLM classifier).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from diagnostics.atlas.labels import show_token
from diagnostics.atlas.records import FeatureEntry
from diagnostics.atlas.store import FeatureAtlas
from diagnostics.errors import DriftscopeError

SYSTEM_PROMPT = (
    "You label features of a sparse autoencoder on a language model. Given text excerpts where "
    "the feature fires (the peak token is marked <<like this>>) and the output tokens it promotes, "
    "answer with a label of at most 8 words naming what it detects. No preamble."
)


class LlmExplainerError(DriftscopeError):
    """The configured LLM endpoint failed or answered something unreadable."""

    exit_code = 6


@dataclass
class LlmExplainer:
    """A client of `{base_url}/chat/completions` (OpenAI-compatible)."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    max_contexts: int = 10

    @classmethod
    def from_env(cls) -> LlmExplainer | None:
        """The explainer configured by the environment, or None when no URL is set."""
        url = os.environ.get("DRIFTSCOPE_LLM_URL")
        if not url:
            return None
        return cls(
            base_url=url,
            model=os.environ.get("DRIFTSCOPE_LLM_MODEL", "default"),
            api_key=os.environ.get("DRIFTSCOPE_LLM_API_KEY") or None,
        )

    def prompt(self, entry: FeatureEntry) -> str:
        lines = [f"Feature {entry.id} (fires on {entry.density:.3%} of tokens)."]
        lines.append("Excerpts:")
        for ctx in entry.top_contexts[: self.max_contexts]:
            toks = [f"<<{t}>>" if k == ctx.peak_index else t for k, t in enumerate(ctx.tokens)]
            lines.append(f"- ({ctx.activation:.2f}) " + "".join(toks).replace("\n", " "))
        if entry.rule.tokens or entry.rule.ngrams:
            shown = [show_token(t) for t in entry.rule.ngrams + entry.rule.tokens]
            lines.append("Over-represented tokens: " + ", ".join(shown))
        promoted = [show_token(t.token) for t in entry.promoted_tokens[:10]]
        lines.append("Promoted output tokens: " + ", ".join(promoted))
        return "\n".join(lines)

    def explain(self, entry: FeatureEntry) -> str:
        """One label for one feature."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": self.prompt(entry)},
            ],
            "temperature": 0.0,
            "max_tokens": 32,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as err:
            raise LlmExplainerError(f"LLM explainer at {url} failed: {err}") from err
        try:
            text = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise LlmExplainerError(f"LLM explainer at {url} answered without a message") from err
        label = " ".join(str(text).split()).strip().strip('"')
        if not label:
            raise LlmExplainerError(f"LLM explainer at {url} answered an empty label")
        return label


def relabel(atlas: FeatureAtlas, explainer: LlmExplainer, ids: Iterable[int]) -> int:
    """Replace the labels of `ids` by the explainer's (label_source "llm"); returns how many."""
    n = 0
    for i in ids:
        entry = atlas.entry(i)
        if entry.is_dead:
            continue
        atlas.labels[i] = explainer.explain(entry)
        atlas.label_sources[i] = "llm"
        n += 1
    atlas.meta.llm_model = explainer.model
    return n
