"""Report records built from what the diagnosis stages computed: the first error, the
attribution with its strongest latents, a path's tokens with their top latents, and the flagged
latents' activations along both paths."""

from __future__ import annotations

from diagnostics.flagging import Atlas
from diagnostics.options import DiagnosisOptions
from diagnostics.report import (
    Attribution,
    DriftReport,
    FeatureActivation,
    FeatureAttribution,
    FirstError,
    PathToken,
    TokenPath,
)
from diagnostics.step_errors import StepError


def first_error_record(e: StepError | None) -> FirstError | None:
    """The report's record of the located first error."""
    if e is None:
        return None
    return FirstError(
        kind=e.kind.value,
        found_by=e.found_by.value,
        output_span=e.span,
        step_text=e.step_text,
        should_be=e.should_be,
        evidence=e.evidence,
        gold_source=e.gold_source,
        confidence=e.confidence.value,
    )


def attribution_record(attr, flagging, atlas: Atlas | None) -> Attribution:
    """The linear decomposition of the exact gap, and the strongest attributors either way
    (flagged or not, with their measured ablation effect when they were screened)."""
    per_feature = attr.per_feature  # [d_sae]
    features, error = float(per_feature.sum()), float(attr.error_attribution.sum())
    baseline = flagging.ablations.baseline()
    measured = dict(zip(flagging.screened, flagging.effects.tolist(), strict=True))
    flagged = {f.feature for f in flagging.flagged}

    def top(largest: bool) -> list[FeatureAttribution]:
        values = per_feature.topk(min(10, len(per_feature)), largest=largest)
        return [
            FeatureAttribution(
                feature=int(i),
                attribution=float(v),
                label=atlas.label(int(i)) if atlas is not None else "",
                ablation_effect=measured.get(int(i)),
                flagged=int(i) in flagged,
            )
            for v, i in zip(values.values, values.indices, strict=True)
            if (v > 0 if largest else v < 0)
        ]

    return Attribution(
        metric=attr.metric,
        baseline=baseline,
        total_feature_attribution=features,
        error_attribution=error,
        nonlinear=attr.metric - baseline - features - error if baseline is not None else None,
        per_position=(attr.attribution.sum(-1) + attr.error_attribution).tolist(),  # [seq]
        error_share=attr.error_share,
        top_positive=top(True),
        top_negative=top(False),
    )


def token_path(
    tok, seq, feats, prompt_len: int, opts: DiagnosisOptions, *, start: int
) -> TokenPath:
    """The tokens of seq [seq] from `start` with their strongest latents (feats [seq, d_sae])."""
    n = opts.top_features_per_token
    tokens = []
    for pos in range(start, len(seq)):
        row = feats[pos]
        top = row.topk(min(n, len(row))) if n else None
        tokens.append(
            PathToken(
                index=pos,
                token=tok.decode([int(seq[pos])]),
                token_id=int(seq[pos]),
                top_features=[
                    FeatureActivation(feature=int(i), activation=float(v))
                    for v, i in zip(top.values, top.indices, strict=True)
                    if v > 0
                ]
                if top is not None
                else [],
            )
        )
    return TokenPath(text=tok.decode(seq[prompt_len:], skip_special_tokens=True), tokens=tokens)


def mark_flagged(report: DriftReport, model_feats, exp_feats, flagged: list[int]) -> None:
    """Record the flagged latents' activations on every token of both paths (for the heatmap)."""
    for path, feats in ((report.model_path, model_feats), (report.expected_path, exp_feats)):
        if path is None:
            continue
        for token in path.tokens:
            token.flagged = [
                FeatureActivation(feature=j, activation=float(feats[token.index, j]))
                for j in flagged
                if feats[token.index, j] > 0
            ]
