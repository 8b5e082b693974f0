"""Render a DriftReport as plain text for the terminal."""

from __future__ import annotations

from diagnostics.report import DriftReport


def render_report(report: DriftReport) -> str:
    """A readable multi-line summary: verdict, divergence, flagged latents, evidence, timings."""
    j = report.judgement
    lines = [
        f"verdict   {report.verdict}",
        f"answer    {j.extracted!s} (expected {j.expected}; mode {j.mode}; "
        f"{'correct' if j.correct else 'wrong'}; class {report.failure_class.value})",
        f"evidence  {report.failure_evidence}",
        f"model     {report.identity.model_id}  sae {report.identity.sae_id or '-'} "
        f"({report.identity.hook_name}, {report.identity.sae_d_sae} latents)",
        "",
        "output    " + report.model_path.text.strip().replace("\n", "\n          "),
    ]
    d = report.divergence
    if d is not None:
        lines += [
            "",
            f"divergence at expected-path token {d.path_index} (sequence position {d.position}):",
            f"  ...{d.context!r} -> expected {d.expected_token!r} (p={d.prob_expected:.3f}), "
            f"model {d.model_token!r} (p={d.prob_model:.3f}); "
            f"logit gap {d.metric:+.2f}",
        ]
    a = report.attribution
    if a is not None:
        lines.append(
            f"attribution: latents {a.total_feature_attribution:+.2f}, SAE error "
            f"{a.error_attribution:+.2f} (error share {a.error_share:.0%})"
        )
    if report.flagged:
        lines += ["", "flagged latents (push toward the wrong token, off the correct path):"]
        lines.append(
            f"  {'latent':>7}  {'attrib':>7}  {'ablate':>7}  {'act':>6}  {'usual':>6}  label / where"
        )
        for f in report.flagged:
            effect = f"{f.ablation_effect:+7.2f}" if f.ablation_effect is not None else "      -"
            where = ", ".join(repr(t) for t in f.fires_at_tokens[:4])
            label = f.label or "(no label)"
            score = f" [AUROC {f.label_score:.2f}]" if f.label_score is not None else ""
            usual = (
                f"{f.atlas_mean_activation:6.2f}"
                if f.atlas_mean_activation is not None
                else "     -"
            )
            lines.append(
                f"  {f.feature:>7}  {f.attribution:+7.2f}  {effect}  {f.activation_failing:6.2f}  {usual}  "
                f"{label}{score}; fires on {where}"
            )
    v, c = report.verification, report.control
    if v is not None:
        lines += [
            "",
            f"ablating {len(v.features)} flagged latents: logit gap {v.metric_before:+.2f} -> "
            f"{v.metric_after:+.2f} ({v.metric_change:+.2f}); answer "
            f"{'FIXED' if v.fixed else 'not fixed'}",
            "  continuation: " + v.continuation.strip().replace("\n", " ")[:160],
        ]
        if c is not None:
            lines.append(
                f"control, {len(c.draws)} matched random sets: median change "
                f"{c.median_metric_change:+.2f}, fix rate {c.fix_rate:.0%}"
            )
    for w in report.warnings:
        lines.append(f"warning: {w}")
    t = report.timings
    lines += [
        "",
        f"timings   generate {t.generate_s:.1f}s, paths {t.paths_s:.1f}s, attribution "
        f"{t.attribution_s:.1f}s, verification {t.verification_s:.1f}s, total {t.total_s:.1f}s",
    ]
    return "\n".join(lines)
