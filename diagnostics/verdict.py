"""The verdict: one paragraph that says where the model went wrong and what the evidence shows,
each claim backed by a number in the same report, and the caveats a reader must know."""

from __future__ import annotations

from diagnostics.named_latents import ONLY_GENERIC, latent_phrase, specific
from diagnostics.report import DriftReport
from diagnostics.trace.verdict_text import trace_sentence

ERROR_SHARE_WARNING = 0.5
"""Above this share of the attribution in the SAE error term, the latents explain little."""


def write_verdict(report: DriftReport) -> str:
    j, fe, d = report.judgement, report.first_error, report.divergence
    if j.correct:
        return f"Correct: the model answered {j.extracted}."
    parts = [
        f"Wrong ({report.failure_class.value.replace('_', ' ')}): answered {j.extracted}, "
        f"expected {j.expected}."
    ]
    if fe is not None and fe.found_by != "fallback":
        should = f" (should be '{fe.should_be}')" if fe.should_be else ""
        where = "probably " if fe.confidence == "uncertain" else ""
        parts.append(
            f"The first wrong step is {where}'{_short(fe.step_text)}'{should}: {fe.evidence}."
        )
    elif fe is not None:
        parts.append(
            "No step of the output could be checked, so the divergence is the final answer: it "
            "explains how the answer was written, not where the reasoning broke."
        )
    if location_uncertain(report):
        parts.append(
            f"The location itself is uncertain ({_uncertain_why(report)}); what follows about "
            "latents holds for this token, which may not be where the reasoning broke."
        )
    if d is None:
        parts.append("The corrected path does not leave the model's own; nothing to attribute.")
        return " ".join(parts)
    parts.append(_turn(report))
    ctx = report.context
    if ctx is not None and ctx.responsible_span is not None:
        a, b = ctx.responsible_span
        parts.append(
            f"The prompt's sentence '{_short(report.prompt[a:b])}' carries it: {ctx.responsible_reason}."
        )
    if report.trace is not None:
        parts.append(
            trace_sentence(report.trace, report.prompt, report.model_path.text, d.model_token)
        )
    v, null = report.verification, report.null
    if not report.flagged:
        parts.append("No latent was confirmed by its own ablation; no feature explanation.")
        return " ".join(parts)
    named = specific(report.flagged)[:3]
    names = ", ".join(latent_phrase(f) for f in named)
    if not named:
        parts.append(ONLY_GENERIC[0].upper() + ONLY_GENERIC[1:] + ".")
    if v is None:
        if names:
            parts.append(f"Candidate latents (not verified): {names}.")
        return " ".join(parts)
    fixed = "fixes the answer" if v.fixed else "does not fix the answer"
    if null is None:
        parts.append(
            (f"Latents pushing toward the wrong token: {names}. " if names else "")
            + f"Ablating the {len(v.features)} "
            f"flagged latents changes the gap by {v.metric_change:+.2f} and {fixed}; without a "
            "selection-matched null this is not evidence."
        )
    elif report.evidence == "supported":
        parts.append(
            (f"The latents that pushed it there: {names}. " if names else "")
            + f"Ablating the {len(v.features)} flagged "
            f"latents changes the gap by {v.metric_change:+.2f}, more than "
            f"{null.percentile:.0f}% of {len(null.draws)} random sets chosen the same way "
            f"(their median {null.median_metric_change:+.2f}, 90th percentile "
            f"{null.p90_metric_change:+.2f}), and {fixed}."
        )
    elif (
        location_uncertain(report)
        and v.metric_change > 0
        and (null.percentile >= null.threshold_percentile)
    ):
        parts.append(
            f"Latents that pushed toward the wrong token: {names}. Ablating the "
            f"{len(v.features)} flagged latents changes the gap by {v.metric_change:+.2f}, more "
            f"than {null.percentile:.0f}% of {len(null.draws)} random sets chosen the same way, "
            f"and {fixed}; with the location uncertain this is not called supported."
        )
    else:
        parts.append(
            "The evidence is weak: ablating the flagged latents"
            + (f" ({names})" if names else "")
            + " changes the gap by "
            f"{v.metric_change:+.2f}, which puts them at the {null.percentile:.0f}th percentile of "
            f"{len(null.draws)} random sets chosen the same way (90th percentile "
            f"{null.p90_metric_change:+.2f}); they do not explain the failure better than chance "
            f"selection, and the ablation {fixed}."
        )
    return " ".join(parts)


def location_uncertain(report: DriftReport) -> bool:
    """Is the first wrong step's location itself uncertain (a prose-only check, derivations
    that disagree, or an answer after claims nobody could check)? Evidence is only called
    supported when it is not."""
    fe = report.first_error
    return fe is None or fe.confidence == "uncertain"


def _uncertain_why(report: DriftReport) -> str:
    fe = report.first_error
    if fe is None or fe.found_by == "fallback":
        return "nothing the output states before its answer could be checked"
    if fe.found_by == "question_binding":
        return "it rests on a reading of the prose alone"
    return "the derivations that reach the expected answer disagree about this step"


def _turn(report: DriftReport) -> str:
    """What happens at the divergence. A given output is teacher-forced: where the model would
    not itself write its wrong token, that is said plainly, not called its preference."""
    d = report.divergence
    assert d is not None
    model = f"{d.model_token!r} (p={d.prob_model:.2f})"
    corrected = f"{d.expected_token!r} (p={d.prob_expected:.2f})"
    top = max((t.prob for t in d.top_next), default=d.prob_model)
    if report.output_source == "given" and d.prob_model < top:
        prefers = "the corrected token" if d.prob_expected >= top else "another token"
        return (
            f"There the given output has {model} where the corrected path has {corrected}; the "
            f"model itself would write {prefers} here "
            "(the wrong token is the given text's, not the model's choice)."
        )
    turn = (
        "a near-tie, so this is a fork the model nearly took the other way, not a confident wrong turn"
        if d.near_tie
        else "a confident wrong turn"
    )
    return f"There the model preferred {model} over {corrected}, {turn}."


def caveats(report: DriftReport) -> list[str]:
    """What a reader must know before trusting the report's evidence."""
    out = []
    d, v, a = report.divergence, report.verification, report.attribution
    if d is not None and d.near_tie:
        out.append(
            f"near-tie at the divergence: p(model's token) - p(corrected) = "
            f"{d.prob_model - d.prob_expected:.2f}; the model nearly took the corrected turn"
        )
    if a is not None and a.error_share > ERROR_SHARE_WARNING:
        out.append(
            f"the SAE error term holds {a.error_share:.0%} of the attribution: the latents "
            "explain less than half of what moved the gap"
        )
    if report.flagged and all(f.generic for f in report.flagged):
        out.append(
            "every flagged latent is generic (dense, or firing on formatting or positions): they "
            "say how the model writes, not what misled it"
        )
    if v is None:
        return out
    random_fixes = [d.fixed for c in (report.control, report.null) if c for d in c.draws if d.fixed]
    if any(random_fixes) and not v.fixed:
        out.append(
            "a random control set fixed the answer and the flagged set did not: the fix is not "
            "specific to the flagged latents"
        )
    if v.metric_after > 0 and not v.fixed:
        if v.takes_correction:
            out.append(
                f"with the flagged latents ablated the model takes the corrected token (gap "
                f"{v.metric_after:+.2f}), but later steps still reach a wrong answer: the "
                "ablation repairs this step, not the rest of the solution"
            )
        else:
            out.append(
                f"the gap crossed zero ({v.metric_after:+.2f}), but a third token became the "
                "most likely, so the continuation still leaves the corrected path"
            )
    return out


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
