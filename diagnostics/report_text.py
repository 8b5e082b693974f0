"""Render a DriftReport as plain text for the terminal."""

from __future__ import annotations

from diagnostics.named_latents import activation_note, attribution_note
from diagnostics.report import DriftReport
from diagnostics.trace.verdict_text import trace_lines


def render_report(report: DriftReport) -> str:
    """A readable multi-line summary: verdict, first wrong step, the two paths where they part,
    flagged latents, evidence, timings."""
    j = report.judgement
    lines = [
        f"verdict   {report.verdict}",
        f"answer    {j.extracted!s} (expected {j.expected}; mode {j.mode}; "
        f"{'correct' if j.correct else 'wrong'}; class {report.failure_class.value})",
        f"model     {report.identity.model_id}  sae {report.identity.sae_id or '-'} "
        f"({report.identity.hook_name}, {report.identity.sae_d_sae} latents)",
        "",
        "output    " + report.model_path.text.strip().replace("\n", "\n          "),
    ]
    if report.output_source == "given":
        same = {True: "greedy decoding gives it", False: "not the model's greedy output"}
        lines.append(f"          (given output; {same.get(report.greedy_reproduces, '')})")
    fe = report.first_error
    if fe is not None:
        gold = f", gold from {fe.gold_source}" if fe.gold_source else ""
        lines += [
            "",
            f"first wrong step  {fe.kind} (found by {fe.found_by}{gold}; location "
            f"{fe.confidence}), characters "
            f"{fe.output_span[0]}-{fe.output_span[1]} of the output:",
            f"  wrote     {_one_line(fe.step_text)!r}",
        ]
        if fe.should_be:
            lines.append(f"  should be {_one_line(fe.should_be)!r}")
        lines.append(f"  because   {fe.evidence}")
    d = report.divergence
    if d is not None:
        lines += ["", f"divergence at output token {d.path_index} (character {d.output_offset}):"]
        lines += _aligned(report)
        tie = "  NEAR-TIE: a fork, not a confident wrong turn" if d.near_tie else ""
        lines.append(
            f"  model {d.model_token!r} p={d.prob_model:.3f}, corrected {d.expected_token!r} "
            f"p={d.prob_expected:.3f}; logit gap {d.metric:+.2f}{tie}"
        )
    a = report.attribution
    if a is not None:
        rest = f" + nonlinear {a.nonlinear:+.2f}" if a.nonlinear is not None else ""
        base = f"baseline {a.baseline:+.2f} + " if a.baseline is not None else ""
        lines.append(
            f"gap {a.metric:+.2f} = {base}latents {a.total_feature_attribution:+.2f} + SAE error "
            f"{a.error_attribution:+.2f}{rest}  (linear estimates; error share {a.error_share:.0%})"
        )
        unflagged = [t for t in a.top_negative[:5] if not t.flagged]
        if unflagged:
            shown = ", ".join(
                f"#{t.feature} {t.attribution:+.2f}"
                + (
                    f" (ablated alone {t.ablation_effect:+.2f})"
                    if t.ablation_effect is not None
                    else ""
                )
                for t in unflagged
            )
            lines.append(f"  strongest push toward the wrong token, not flagged: {shown}")
    if report.flagged:
        lines += ["", *flagged_lines(report)]
    v, c = report.verification, report.control
    if v is not None:
        lines += [
            "",
            f"ablating {len(v.features)} flagged latents: logit gap {v.metric_before:+.2f} -> "
            f"{v.metric_after:+.2f} ({v.metric_change:+.2f}); answer "
            f"{'FIXED' if v.fixed else 'not fixed'}",
            "  continuation: " + v.continuation.strip().replace("\n", " ")[:160],
        ]
        n = report.null
        if n is not None:
            fixes = (
                f", fix rate {n.fix_rate:.0%} of {sum(d.fixed is not None for d in n.draws)}"
                if n.fix_rate is not None
                else ""
            )
            lines.append(
                f"selection-matched null, {len(n.draws)} draws ({n.candidates_per_draw} random "
                f"candidates each, pool {n.pool}): median {n.median_metric_change:+.2f}, 90th "
                f"percentile {n.p90_metric_change:+.2f}{fixes}; flagged at percentile "
                f"{n.percentile:.0f} -> evidence {report.evidence}"
            )
        if c is not None:
            lines.append(
                f"plain matched-random baseline, {len(c.draws)} sets (no selection): median change "
                f"{c.median_metric_change:+.2f}"
            )
    if report.trace is not None:
        lines += trace_lines(report.trace)
    for w in report.warnings:
        lines.append(f"warning: {w}")
    t = report.timings
    lines += [
        "",
        f"timings   generate {t.generate_s:.1f}s, paths {t.paths_s:.1f}s, attribution "
        f"{t.attribution_s:.1f}s, verification {t.verification_s:.1f}s, context "
        f"{t.context_s:.1f}s, total {t.total_s:.1f}s (wall; CPU {t.cpu_s.get('total', 0):.1f}s)",
    ]
    return "\n".join(lines)


def flagged_lines(report: DriftReport) -> list[str]:
    """The flagged latents, each with its card (description, strongest held-out contexts with
    the peak token in [[ ]], label score) and what its numbers mean."""
    lines = [
        "flagged latents (each confirmed by its own ablation: zeroing it alone moves the gap "
        "toward the corrected token; specific first, generic last):"
    ]
    for f in report.flagged:
        effect = f"{f.ablation_effect:+.2f}" if f.ablation_effect is not None else "-"
        card = f.card.lines("      ") if f.card is not None else [f"#{f.feature} {f.label}"]
        mark = f"  [generic: {f.generic_reason}]" if f.generic and f.card is None else ""
        lines.append(f"  {card[0]}{mark}")
        lines += card[1:]
        where = ", ".join(repr(t.token) for t in f.fires_at[:4])
        lines.append(
            f"      ablated alone {effect}; attribution {f.attribution:+.2f}; activation "
            f"{activation_note(f)}"
            + (f"; fires on {where}" if where else "")
            + (" (in the prompt)" if f.in_prompt else "")
        )
        if note := attribution_note(f):
            lines.append(f"      ({note})")
    return lines


def _aligned(report: DriftReport, width: int = 40) -> list[str]:
    """The shared prefix once, then the model's branch and the corrected branch below it."""
    d, corrected = report.divergence, report.expected_path
    if d is None or corrected is None:
        return []
    k = d.path_index
    shared = "".join(t.token for t in corrected.tokens[:k])
    prefix = _one_line(shared)[-width:]
    model_branch = "".join(t.token for t in _continuation(report)[k:])
    fixed_branch = "".join(t.token for t in corrected.tokens[k:])
    return [
        f"  shared      ...{prefix!r}",
        f"  model     → {_one_line(model_branch)[:width]!r}",
        f"  corrected → {_one_line(fixed_branch)[:width]!r}",
    ]


def _continuation(report: DriftReport):
    """The model path's output tokens (it starts with the prompt)."""
    start = report.expected_path.tokens[0].index if report.expected_path else 0
    return [t for t in report.model_path.tokens if t.index >= start]


def _one_line(text: str) -> str:
    return text.replace("\n", "⏎")
