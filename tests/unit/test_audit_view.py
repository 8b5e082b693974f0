"""The audit page's charts from a summary: recurring concepts when the summary has them, else
the flagged descriptions recurring over distinct failures; fix rates on one scale."""

from __future__ import annotations

import pandas as pd

from api.pages.audit_view import CHART_WIDTH, fix_rate_bars, item_prompt, recurring_concepts

ITEMS = pd.DataFrame(
    {
        "report_id": ["r0", "r1", "r2", None],
        "correct": [False, False, True, None],
    }
)
FEATURES = pd.DataFrame(
    {
        "report_id": ["r0", "r0", "r1", "r2", "r2"],
        "feature_id": [1, 2, 3, 1, 4],
        "label": ["plus sign", "months", "plus sign", "plus sign", ""],
    }
)


def test_flagged_descriptions_recur_over_distinct_failures_only():
    kind, bars = recurring_concepts({}, ITEMS, FEATURES, "a1")
    assert kind == "labels"
    # "plus sign" flags two failures (r0 by #1, r1 by #3); r2 is correct and does not count
    assert [(b.name, b.value) for b in bars] == [("plus sign", 2.0)]
    assert bars[0].width == CHART_WIDTH and bars[0].href == "/reports?audit_id=a1&label=plus%20sign"


def test_concepts_from_the_summary_are_drawn_when_present():
    summary = {
        "concepts": [{"label": "addition", "n_failures": 4}, {"label": "dates", "n_failures": 2}]
    }
    kind, bars = recurring_concepts(summary, ITEMS, FEATURES, "a1")
    assert kind == "concepts" and [b.name for b in bars] == ["addition", "dates"]
    assert bars[1].width == CHART_WIDTH / 2


def test_fix_rates_share_one_scale_and_skip_what_was_not_measured():
    bars = fix_rate_bars({"ablation_fix_rate": 0.5, "null_fix_rate": 0.1, "control_fix_rate": None})
    assert [(b.kind, b.text) for b in bars] == [("flagged", "50.0%"), ("null", "10.0%")]
    assert bars[0].width == CHART_WIDTH / 2


def test_an_eval_prompt_shows_its_last_question():
    prompt = "Question: 1+1?\nAnswer: 2\n\nQuestion: what is 2 plus 3?\nAnswer:"
    assert item_prompt(prompt) == "what is 2 plus 3?"
