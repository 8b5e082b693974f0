"""The verdict: one paragraph that says where the model went wrong and what the evidence shows,
each claim backed by a number in the same report."""

from __future__ import annotations

from diagnostics.report import DriftReport


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
        parts.append(f"The first wrong step is '{_short(fe.step_text)}'{should}: {fe.evidence}.")
    elif fe is not None:
        parts.append(
            "No step of the output could be checked, so the divergence is the final answer: it "
            "explains how the answer was written, not where the reasoning broke."
        )
    if d is None:
        parts.append("The corrected path does not leave the model's own; nothing to attribute.")
        return " ".join(parts)
    turn = (
        "a near-tie, so this is a fork the model nearly took the other way, not a confident wrong turn"
        if d.near_tie
        else "a confident wrong turn"
    )
    parts.append(
        f"There the model preferred {d.model_token!r} (p={d.prob_model:.2f}) over "
        f"{d.expected_token!r} (p={d.prob_expected:.2f}), {turn}."
    )
    if report.flagged:
        names = ", ".join(
            f"#{f.feature}" + (f" '{f.label}'" if f.label else "") for f in report.flagged[:3]
        )
        parts.append(f"Strongest latents pushing toward the wrong token: {names}.")
    v, c = report.verification, report.control
    if v is not None:
        ctrl = f" vs {c.median_metric_change:+.2f} for matched random latents" if c else ""
        fixed = "fixed the answer" if v.fixed else "did not fix the answer"
        parts.append(
            f"Ablating the {len(v.features)} flagged latents changed the logit gap by "
            f"{v.metric_change:+.2f}{ctrl}, and {fixed}."
        )
    return " ".join(parts)


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
