"""The audit page's charts from a summary: fix rates on one scale; an eval prompt's question."""

from __future__ import annotations

from api.pages.audit_view import CHART_WIDTH, fix_rate_bars, item_prompt


def test_fix_rates_share_one_scale_and_skip_what_was_not_measured():
    bars = fix_rate_bars({"ablation_fix_rate": 0.5, "null_fix_rate": None})
    assert [(b.kind, b.text) for b in bars] == [("flagged", "50.0%")]
    bars = fix_rate_bars({"ablation_fix_rate": 0.5, "null_fix_rate": 0.1})
    assert [(b.kind, b.text) for b in bars] == [("flagged", "50.0%"), ("null", "10.0%")]
    assert bars[0].width == CHART_WIDTH / 2


def test_an_eval_prompt_shows_its_last_question():
    prompt = "Question: 1+1?\nAnswer: 2\n\nQuestion: what is 2 plus 3?\nAnswer:"
    assert item_prompt(prompt) == "what is 2 plus 3?"
