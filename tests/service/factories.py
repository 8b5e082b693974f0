"""Schema-valid synthetic drift reports (for query tests and the report-query benchmark)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from diagnostics.failure_classes import FailureClass
from diagnostics.report import (
    AblationResult,
    ControlResult,
    DriftReport,
    FlaggedFeature,
    Identity,
    JudgedAnswer,
    PathToken,
    SelectionMatchedNull,
    SetAblation,
    TokenPath,
)

LABELS = ["numbers ending in 5", "the word 'total'", "currency amounts", "halving", "months of the year",
          "plural nouns", "question marks", "multiplication signs"]  # fmt: skip
WRONG_CLASSES = [c for c in FailureClass if c is not FailureClass.none]


def synthetic_report(
    rng: random.Random,
    *,
    correct: bool | None = None,
    flagged: list[int] | None = None,
    fixed: bool | None = None,
    model_id: str = "tiny-llama",
    sae_id: str = "random-sae",
    created_at: datetime | None = None,
    n_features: int = 512,
) -> DriftReport:
    """A report with plausible fields; wrong ones carry flagged features, a verification and a control."""
    correct = rng.random() < 0.4 if correct is None else correct
    answer = str(rng.randint(1, 500))
    extracted = answer if correct else str(int(answer) + rng.randint(1, 9))
    tokens = [
        PathToken(index=10 + i, token=t, token_id=i)
        for i, t in enumerate(["The", " answer", " is", f" {extracted}"])
    ]
    report = DriftReport(
        identity=Identity(model_id=model_id, hook_name="blocks.2.hook_resid_post", sae_id=sae_id, sae_d_sae=n_features),
        prompt=f"Question {rng.randint(0, 10**6)}: what is the total?",
        expected=answer,
        judgement=JudgedAnswer(correct=correct, mode="gsm8k", extracted=extracted, expected=answer, format_ok=rng.random() < 0.8),
        failure_class=FailureClass.none if correct else rng.choice(WRONG_CLASSES),
        failure_evidence="synthetic",
        model_path=TokenPath(text=f"The answer is {extracted}", tokens=tokens),
        verdict="Correct." if correct else f"Wrong: answered {extracted}, expected {answer}.",
        created_at=created_at or datetime.now(UTC) - timedelta(seconds=rng.randint(0, 86_400 * 30)),
    )  # fmt: skip
    if correct:
        return report
    features = flagged if flagged is not None else rng.sample(range(n_features), 3)
    report.flagged = [
        FlaggedFeature(
            feature=f,
            label=LABELS[f % len(LABELS)],
            attribution=-rng.random() * 2,
            activation_failing=rng.random() * 5,
            activation_expected=0.0,
            ablation_effect=rng.random(),
        )
        for f in features
    ]
    fixed = rng.random() < 0.3 if fixed is None else fixed
    report.verification = AblationResult(
        features=features, metric_before=-1.0, metric_after=0.5, metric_change=1.5,
        continuation=answer if fixed else extracted, fixed=fixed,
    )  # fmt: skip
    report.control = ControlResult(
        draws=[SetAblation(features=[n_features - 1], metric_change=0.1)], median_metric_change=0.1
    )
    draws = [SetAblation(features=[n_features - 2 - k], metric_change=0.05 * k) for k in range(5)]
    draws[0] = draws[0].model_copy(update={"fixed": False, "continuation": extracted})
    report.null = SelectionMatchedNull(
        candidates_per_draw=32, pool=64, draws=draws, median_metric_change=0.1,
        p90_metric_change=0.2, percentile=100.0, fix_rate=0.0, threshold_percentile=90.0,
        seconds=1.0,
    )  # fmt: skip
    report.evidence = "supported"
    return report
