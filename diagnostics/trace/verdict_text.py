"""The verdict's sentence about the attribution graph: the path in words when its supernodes
beat the null, else that the evidence is weak."""

from __future__ import annotations

from diagnostics.atlas.surface import show_token
from diagnostics.trace.records import Supernode, TokenInfluence, Trace, evidence_intervention

SPAN_SHARE_OF_PEAK = 0.5
"""Tokens next to the most influential one join its span while they hold this share of its
influence ..."""
MAX_SPAN_TOKENS = 6
"""... up to this many tokens (a flat influence names one phrase, not the whole prompt)."""


def peak_span(influences: list[TokenInfluence]) -> tuple[int, int, float] | None:
    """[start, end) characters around the most influential token (neighbours holding at least
    SPAN_SHARE_OF_PEAK of its influence join, up to MAX_SPAN_TOKENS), and the span's share of
    the total."""
    total = sum(t.influence for t in influences)
    if not influences or total <= 0:
        return None
    k = max(range(len(influences)), key=lambda i: influences[i].influence)
    floor = SPAN_SHARE_OF_PEAK * influences[k].influence
    a = b = k
    while b - a + 1 < MAX_SPAN_TOKENS:  # grow toward the stronger neighbour that qualifies
        left = influences[a - 1].influence if a > 0 else -1.0
        right = influences[b + 1].influence if b + 1 < len(influences) else -1.0
        if max(left, right) < floor:
            break
        if left >= right:
            a -= 1
        else:
            b += 1
    share = sum(t.influence for t in influences[a : b + 1]) / total
    return influences[a].start, influences[b].end, share


def trace_sentence(trace: Trace, prompt: str, output: str, model_token: str) -> str:
    """One or two sentences: where the turn comes from and whether interventions confirm it."""
    where, shares = [], []
    span = peak_span(trace.prompt_influence)
    if span is not None:
        a, b, share = span
        where.append(f"'{_short(prompt[a:b])}' ({share:.0%} of the prompt's influence)")
        shares.append(share)
    out_span = peak_span(trace.output_influence)
    prompt_total = sum(t.influence for t in trace.prompt_influence)
    output_total = sum(t.influence for t in trace.output_influence)
    if out_span is not None and output_total > prompt_total:
        a, b, share = out_span
        of_all = share * output_total / (output_total + prompt_total)
        where.insert(
            0, f"its own earlier '{_short(output[a:b])}' ({of_all:.0%} of all tokens' influence)"
        )
        shares.insert(0, of_all)
    together, null = evidence_intervention(trace.interventions), trace.null
    top = trace.supernodes[: len(together.supernodes)] if together else []
    through = ", ".join(f"{s.label} at '{show_token(s.token)}' ({layers(s)})" for s in top)
    origin = " and ".join(where) or "no single prompt token"
    verb = "comes mostly from" if shares and shares[0] >= 0.5 else "comes most of all from"
    path = f"the turn to {model_token!r} {verb} {origin}" + (
        f" through {through}" if through else ""
    )
    if together is None or null is None:
        return f"In the attribution graph, {path}; no intervention checked it, so this is not evidence."
    effect = (
        f"zeroing these {len(together.supernodes)} supernodes on the real model changes the gap "
        f"by {together.gap_change:+.3f}"
        + (", flips the turn" if together.flipped else ", does not flip the turn")
        + (" and fixes the answer" if together.fixed else "")
    )
    versus = (
        f"{len(null.draws)} random selections made the same way (90th percentile "
        f"{null.p90_gap_change:+.3f}, flip rate {null.flip_rate:.0%})"
    )
    if trace.evidence == "supported":
        return f"In the attribution graph, {path}: {effect}, beating {versus}."
    return (
        f"The attribution graph's evidence is weak: {path}, but {effect}, which does not beat "
        f"{versus}."
    )


def layers(s: Supernode) -> str:
    """'L3' or 'L2-3': the layers a supernode's members sit at."""
    low, high = s.layers
    return f"L{low}" if low == high else f"L{low}-{high}"


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def trace_lines(trace: Trace) -> list[str]:
    """The trace in the CLI's text report: supernodes, interventions, the null, the cost."""
    lines = [
        "",
        f"attribution graph ({trace.transcoders}; {trace.target}; pruned at node "
        f"{trace.node_threshold}, edge {trace.edge_threshold}): replacement score "
        f"{trace.replacement_score:.2f}, completeness {trace.completeness_score:.2f}, "
        f"direct effects sum to {trace.graph_gap:+.2f} of the gap {trace.gap:+.2f}",
    ]
    for k, s in enumerate(trace.supernodes[:5]):
        source = "" if s.label_source == "atlas" else " (no atlas label)"
        n = len(s.members)
        lines.append(
            f"  #{k + 1} {s.label}{source} at '{show_token(s.token)}', {layers(s)}, {n} "
            f"feature{'s' if n > 1 else ''}, influence {s.influence:.3f}"
        )
    for i in trace.interventions:
        which = "+".join(f"#{k + 1}" for k in i.supernodes)
        fixed = "" if i.fixed is None else (", answer FIXED" if i.fixed else ", answer not fixed")
        lines.append(
            f"  {i.mode} {which}: gap {i.gap_before:+.2f} -> {i.gap_after:+.2f} "
            f"({i.gap_change:+.2f}){', takes the corrected token' if i.flipped else ''}{fixed}"
        )
    if trace.null is not None:
        n = trace.null
        lines.append(
            f"  null, {len(n.draws)} draws: median {n.median_gap_change:+.2f}, 90th percentile "
            f"{n.p90_gap_change:+.2f}, flip rate {n.flip_rate:.0%} -> evidence {trace.evidence}"
        )
    c = trace.cost
    lines.append(
        f"  cost {c.cpu_s:.1f} CPU-s ({c.wall_s:.1f}s wall), graph {c.graph_cpu_s:.1f} CPU-s, "
        f"{c.n_tokens} tokens, {c.feature_nodes}/{c.active_features} features attributed, peak "
        f"RSS {c.peak_rss_mb:.0f} MB"
    )
    return lines
