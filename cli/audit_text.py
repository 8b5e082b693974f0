"""The audit summary as text, what it found first: first errors by kind (an example step each),
the responsible spans by kind, then only the recurring concepts whose ablation beats the
selection-matched null, each with its feature cards and its fix and flip counts against the null."""

from __future__ import annotations

TOP_CONCEPTS = 8


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def format_summary(summary: dict) -> str:
    """The summary as lines of text (see service.audit_summary.summarize)."""
    lines = [
        f"problems {summary['n_items']}  reports {summary['n_reports']}  "
        f"failed jobs {summary['n_failed_jobs']}",
        f"accuracy {pct(summary['accuracy'])}  strict {pct(summary['strict_accuracy'])}  "
        f"wrong {summary['n_wrong']}",
    ]
    if summary.get("first_errors"):
        lines.append(f"first errors ({summary['n_wrong']} wrong answers):")
        for e in summary["first_errors"]:
            ex = e["example"]
            should = f", should be {_short(ex['should_be'])!r}" if ex["should_be"] else ""
            example = f"  e.g. wrote {_short(ex['step'])!r}{should}" if ex["step"] else ""
            lines.append(f"  {e['kind'].replace('_', ' '):<20} {e['count']:>3}{example}")
    if summary.get("responsible_spans"):
        lines.append("which part of the problem carried it (responsible spans):")
        for s in summary["responsible_spans"]:
            text = f"  e.g. {_short(s['example']['text'])!r}" if s["example"]["text"] else ""
            lines.append(f"  {s['count']:>3}  {s['meaning']}{text}")
    lines += concept_lines(summary)
    lines.append(
        f"ablating the flagged latents fixed {pct(summary['ablation_fix_rate'])} of failures "
        f"(selection-matched null {pct(summary['null_fix_rate'])})"
    )
    return "\n".join(lines)


def concept_lines(summary: dict) -> list[str]:
    """The concepts that beat the null, each with its cards; or why there are none."""
    concepts, tested = summary.get("concepts") or [], summary.get("concepts_tested", 0)
    generic = summary.get("concepts_generic", 0)
    left_out = f"; {generic} generic ones left out" if generic else ""
    if not concepts:
        if tested:
            return [
                f"no recurring concept beats the selection-matched null ({tested} tested"
                f"{left_out}): no concept explains these failures better than chance selection"
            ]
        return [f"no concept recurs in two or more failures with a specific latent{left_out}"]
    lines = [
        f"concepts whose ablation beats the selection-matched null ({len(concepts)} of "
        f"{tested} recurring{left_out}):"
    ]
    for c in concepts[:TOP_CONCEPTS]:
        lines.append(f"  {c['concept']}: in {c['failures']} failures; {rates(c)}")
        for card in c["cards"]:
            lines += [f"    {line}" for line in card_lines(card)]
    return lines


def rates(c: dict) -> str:
    """'fixed 3 of 4 (null expects 0.6), flipped 4 of 4 (null 1.2); p = 0.004 corrected'."""
    parts = []
    for key, verb in (("fix", "fixed"), ("flip", "flipped")):
        r = c[key]
        parts.append(f"{verb} {r['count']} of {r['of']} (null expects {r['null_expected']:.1f})")
    return ", ".join(parts) + f"; p = {c['p_value']:.3g} corrected"


def card_lines(card: dict) -> list[str]:
    """A FeatureCard (as JSON) as text: its title, then its contexts with the peak in [[ ]]."""
    from diagnostics.feature_card import FeatureCard

    return FeatureCard.model_validate(card).lines("    ")


def _short(text: str, n: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
