"""The verdict's trace sentence from trace records: the path in words when the top supernodes
beat the null's 90th percentile, "weak" otherwise."""

from __future__ import annotations

import pytest

from diagnostics.trace.records import (
    FeatureRef,
    Supernode,
    TokenInfluence,
    Trace,
    TraceCost,
    TraceIntervention,
    TraceNull,
    TraceNullDraw,
)
from diagnostics.trace.verdict_text import peak_span, trace_sentence

PROMPT = "She sold 48 clips in April and half as many clips in May."


def words(text: str, influence: dict[str, float]) -> list[TokenInfluence]:
    out, pos = [], 0
    for w in text.split():
        start = text.index(w, pos)
        pos = start + len(w)
        out.append(TokenInfluence(start=start, end=pos, token=w, influence=influence.get(w, 0.01)))
    return out


def make_trace(gap_change: float, null_changes: list[float]) -> Trace:
    null = TraceNull(
        draws=[TraceNullDraw(members=3, gap_change=c, flipped=False) for c in null_changes],
        median_gap_change=sorted(null_changes)[len(null_changes) // 2],
        p90_gap_change=sorted(null_changes)[int(0.9 * (len(null_changes) - 1))],
        flip_rate=0.0,
        percentile=100.0,
    )
    return Trace(
        transcoders="t", target="x", gap=-1.0, graph_gap=-0.9, node_threshold=0.8,
        edge_threshold=0.98,
        prompt_influence=words(PROMPT, {"as": 0.3, "many": 0.32, "half": 0.2}),
        supernodes=[Supernode(label="L12/F7", label_source="feature_id", position=9,
                              token=" many", layers=(11, 13),
                              members=[FeatureRef(layer=12, position=9, feature=7)],
                              influence=0.4)],
        replacement_score=0.5, completeness_score=0.8,
        interventions=[TraceIntervention(supernodes=[0], mode="zero", gap_before=-1.0,
                                         gap_after=-1.0 + gap_change, gap_change=gap_change,
                                         flipped=gap_change > 1, fixed=gap_change > 1)],
        null=null, evidence="supported" if gap_change > null.p90_gap_change else "weak",
        cost=TraceCost(wall_s=1, cpu_s=1, graph_wall_s=1, graph_cpu_s=1, peak_rss_mb=1,
                       n_tokens=20, active_features=10, feature_nodes=10, batch_size=8,
                       device="cpu"),
    )  # fmt: skip


def test_peak_span_joins_strong_neighbours():
    a, b, share = peak_span(words(PROMPT, {"as": 0.3, "many": 0.32, "half": 0.2}))
    assert PROMPT[a:b] == "half as many"
    assert 0.5 < share < 1


def test_supported_trace_names_the_path():
    text = trace_sentence(make_trace(1.5, [0.0, 0.1, 0.2, 0.1, 0.05]), PROMPT, "", " 96")
    assert "the turn to ' 96' comes mostly from 'half as many'" in text
    assert "through L12/F7 at 'many' (L11-13)" in text
    assert "flips the turn and fixes the answer, beating 5 random selections" in text
    assert "weak" not in text


def test_trace_below_the_null_is_weak():
    text = trace_sentence(make_trace(0.1, [0.0, 0.3, 0.2, 0.4, 0.5]), PROMPT, "", " 96")
    assert text.startswith("The attribution graph's evidence is weak")
    assert "does not beat 5 random selections" in text


def test_an_earlier_wrong_number_in_the_output_is_named_first():
    trace = make_trace(1.5, [0.0, 0.1, 0.2, 0.1, 0.05])
    output = "So she sold 48/2 = 16 clips in April."
    trace.output_influence = words(output, {"16": 2.0, "48/2": 0.3})
    text = trace_sentence(trace, PROMPT, output, " 96")
    # "16" holds 2.0 of the output's 2.37 and the prompt's 0.91: 61% of all tokens' influence
    assert (
        "comes mostly from its own earlier '16' (61% of all tokens' influence) and 'half as many'"
        in text
    )


def test_a_peak_below_half_of_the_influence_is_not_called_mostly():
    trace = make_trace(1.5, [0.0, 0.1, 0.2, 0.1, 0.05])
    # every word 0.1, "many" 0.3: no neighbour reaches half of it; it holds 0.3 of 1.5 (13 words)
    trace.prompt_influence = words(PROMPT, {w: 0.1 for w in PROMPT.split()} | {"many": 0.3})
    text = trace_sentence(trace, PROMPT, "", " 96")
    assert "comes most of all from 'many' (20% of the prompt's influence)" in text
    assert "mostly" not in text
    # a flat prompt names at most six tokens, not the whole prompt
    flat = words(PROMPT, {w: 0.1 for w in PROMPT.split()})
    a, b, share = peak_span(flat)
    assert len(PROMPT[a:b].split()) == 6 and share == pytest.approx(6 / 13)
