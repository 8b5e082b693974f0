"""Optional LLM explainer: rewrite feature labels with an OpenAI-compatible chat endpoint.

Used only when configured (`DRIFTSCOPE_LLM_URL`, e.g. http://127.0.0.1:8000/v1, plus
`DRIFTSCOPE_LLM_MODEL` and optionally `DRIFTSCOPE_LLM_API_KEY`). The prompt shows the feature's
max-activating contexts with the peak token marked, its offline description and rule, and the
output tokens that passed the causal test. The LLM answers a label and the words it fires on
("triggers"); the label replaces the readable label (label_source "llm"; the offline description
and rule are kept) and the triggers become a rule scored by the same detection AUROC as the
offline descriptions, on the atlas's held-out windows (`score_llm_labels`), so the two compare.
What is scored is the trigger list, not the prose of the label (that would need an LLM classifier).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from diagnostics.atlas.describe import readable_label
from diagnostics.atlas.records import FeatureEntry, LabelRule
from diagnostics.atlas.scoring import score_labels
from diagnostics.atlas.store import FeatureAtlas
from diagnostics.atlas.surface import show_token
from diagnostics.errors import DriftscopeError

SYSTEM_PROMPT = (
    "You label features of a sparse autoencoder on a language model. Given text excerpts where "
    "the feature fires (the peak token is marked <<like this>>), answer with JSON only: "
    '{"label": "<at most 8 words naming what it detects>", "triggers": ["<up to 10 words or '
    'short phrases from the excerpts it fires on>"]}.'
)


@dataclass
class LlmLabel:
    """An LLM's label of one feature and the words it says the feature fires on."""

    label: str
    triggers: list[str]


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
        if entry.description:
            lines.append(f"Offline description: {entry.description}")
            lines.append("Over-represented tokens: " + entry.rule_text)
        outputs = (
            [show_token(t.token) for t in entry.output.tokens if t.significant]
            if entry.output
            else []
        )
        if outputs:
            lines.append("Next tokens it makes likelier when amplified: " + ", ".join(outputs))
        return "\n".join(lines)

    def explain(self, entry: FeatureEntry) -> LlmLabel:
        """One label, and its trigger words, for one feature."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": self.prompt(entry)},
            ],
            "temperature": 0.0,
            "max_tokens": 160,
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
        parsed = parse_answer(str(text))
        if not parsed.label:
            raise LlmExplainerError(f"LLM explainer at {url} answered an empty label")
        return parsed


def parse_answer(text: str) -> LlmLabel:
    """The label and triggers of an answer: JSON (possibly fenced), else the text as the label
    and its quoted words as triggers."""
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        doc = json.loads(body)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        triggers = doc.get("triggers") or []
        return LlmLabel(
            label=" ".join(str(doc.get("label", "")).split()),
            triggers=[str(t) for t in triggers if str(t).strip()][:10]
            if isinstance(triggers, list)
            else [],
        )
    label = " ".join(text.split())
    if len(label) > 1 and label[0] == label[-1] == '"':
        label = label[1:-1].strip()
    return LlmLabel(label=label, triggers=re.findall(r"['\"“]([^'\"”]+)['\"”]", label)[:10])


def trigger_rule(tokenizer, triggers: list[str]) -> LabelRule:
    """A rule matching the triggers: a one-token word (with and without a leading space and
    capital) as a token, a longer one by its last two tokens (where the feature would fire)."""
    token_ids: list[int] = []
    ngram_ids: list[list[int]] = []
    for trigger in triggers:
        word = trigger.strip()
        for variant in {word, " " + word, word.capitalize(), " " + word.capitalize()}:
            ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(ids) == 1 and ids[0] not in token_ids:
                token_ids.append(int(ids[0]))
            elif len(ids) > 1 and list(ids[-2:]) not in ngram_ids:
                ngram_ids.append([int(t) for t in ids[-2:]])
    return LabelRule(
        token_ids=token_ids,
        tokens=[tokenizer.decode([t]) for t in token_ids],
        ngram_ids=ngram_ids,
        ngrams=[tokenizer.decode(g) for g in ngram_ids],
    )


def relabel(
    atlas: FeatureAtlas, explainer: LlmExplainer, ids: Iterable[int]
) -> dict[int, LlmLabel]:
    """Replace the labels of `ids` by the explainer's (label_source "llm"); returns them."""
    out: dict[int, LlmLabel] = {}
    for i in ids:
        entry = atlas.entry(i)
        if entry.is_dead:
            continue
        answer = explainer.explain(entry)
        atlas.labels[i] = readable_label(answer.label, [t.token for t in atlas.output_effect(i)])
        atlas.label_sources[i] = "llm"
        out[i] = answer
    atlas.meta.llm_model = explainer.model
    return out


@torch.no_grad()
def score_llm_labels(lm, sae, atlas: FeatureAtlas, answers: dict[int, LlmLabel]) -> np.ndarray:
    """Detection AUROC [d_sae] of the LLM labels' trigger rules (NaN elsewhere), on the atlas's
    held-out windows, by the machinery that scores offline labels; stored as `llm_auroc`."""
    from diagnostics.atlas.collect import score_chunks
    from diagnostics.hooks import residuals_at

    windows = torch.from_numpy(atlas.arrays["score_windows"].astype(np.int64))  # [n, ctx]
    pad = 65535 if atlas.arrays["score_windows"].dtype == np.uint16 else -1
    special = torch.tensor(sorted(set(lm.tokenizer.all_special_ids)))
    length = atlas.meta.score_context_len
    chunk_ids, chunk_acts = [], []
    for start in range(0, len(windows), 16):
        ids = windows[start : start + 16]
        mask = ids != pad
        ids = torch.where(mask, ids, 0)
        keep = mask & ~torch.isin(ids, special)
        resid = residuals_at(lm, ids.to(lm.device), sae.cfg.hook_layer, mask.long().to(lm.device))
        feats = sae.encode(resid.cpu()).float() * keep[..., None]
        rows = torch.ones(len(ids), dtype=torch.bool)
        c_ids, c_acts = score_chunks(feats, ids, keep, rows, length)
        chunk_ids.append(c_ids)
        chunk_acts.append(c_acts)
    rules = [LabelRule() for _ in range(atlas.d_sae)]
    for i, answer in answers.items():
        rules[i] = trigger_rule(lm.tokenizer, answer.triggers)
    scores = score_labels(rules, torch.cat(chunk_ids), torch.cat(chunk_acts))
    llm = atlas.arrays.get("llm_auroc", np.full(atlas.d_sae, np.nan, dtype=np.float32)).copy()
    done = np.array(sorted(answers), dtype=np.int64)
    llm[done] = scores.detection_auroc[done]
    atlas.arrays["llm_auroc"] = llm
    return llm
