"""The drift report: a versioned, JSON-serialisable record of one diagnosis.

It holds everything a page needs without re-running the model: the tokens of both paths with
their top features, the divergence, the flagged features with labels and evidence, the random
control, the verdict, the failure class, timings and the identity of the model and SAE.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from diagnostics.failure_classes import FailureClass

REPORT_SCHEMA_VERSION = "1.0"


class FeatureActivation(BaseModel):
    """One latent's activation at one token."""

    feature: int
    activation: float


class PathToken(BaseModel):
    """A token of a path with the strongest features at it."""

    index: int  # position in the full sequence (prompt + continuation)
    token: str
    token_id: int
    top_features: list[FeatureActivation] = Field(default_factory=list)
    flagged: list[FeatureActivation] = Field(default_factory=list)  # flagged latents active here


class TokenPath(BaseModel):
    """A continuation of the prompt: the model's own output, or the expected path."""

    text: str
    tokens: list[PathToken]


class Divergence(BaseModel):
    """Where the expected path leaves the model's preferred path (teacher forcing)."""

    position: int  # index in the full sequence of the token being predicted
    path_index: int  # index within the expected continuation
    expected_token: str
    expected_token_id: int
    model_token: str  # the model's top prediction there
    model_token_id: int
    logit_expected: float
    logit_model: float
    metric: float  # logit(expected) - logit(model's token); negative at a divergence
    prob_expected: float
    prob_model: float
    numeric: bool  # the expected token is part of a number
    first_any_position: int | None = None  # first differing token of any kind, if earlier
    context: str = ""  # the few tokens before the divergence


class FlaggedFeature(BaseModel):
    """A latent that pushes toward the wrong token and is off the correct path."""

    feature: int
    label: str = ""
    label_score: float | None = None  # detection AUROC of the label, from the atlas
    attribution: float  # summed activation x gradient of the metric (negative: toward wrong)
    activation_failing: float  # max activation on the model's own path
    activation_expected: float  # max activation on the expected path
    atlas_mean_activation: float | None = None  # mean activation when firing, over the atlas text
    atlas_density: float | None = None
    off_path_reason: str = ""  # why it counts as off the correct path
    fires_at: list[FeatureActivation] = Field(default_factory=list)  # feature = token index here
    fires_at_tokens: list[str] = Field(default_factory=list)
    in_prompt: bool = False  # fires on prompt tokens (not only on generated ones)
    ablation_effect: float | None = None  # metric change when this latent alone is zero-ablated


class AblationResult(BaseModel):
    """Zero-ablating a set of latents (error term kept) at every position."""

    features: list[int]
    metric_before: float
    metric_after: float
    metric_change: float
    continuation: str  # greedy continuation from the divergence point with the ablation on
    fixed: bool  # the continuation reaches the expected answer


class ControlResult(BaseModel):
    """The same ablation on random active latents matched by activation (several draws)."""

    draws: list[AblationResult]
    median_metric_change: float
    fix_rate: float


class Attribution(BaseModel):
    """How the metric at the divergence splits over SAE latents and the SAE error term."""

    metric: float
    total_feature_attribution: float
    error_attribution: float
    error_share: float  # |error| / (|error| + sum |feature attributions|)
    top_positive: list[FeatureActivation] = Field(default_factory=list)  # activation = attribution
    top_negative: list[FeatureActivation] = Field(default_factory=list)


class Judgement(BaseModel):
    """The verdict on the model's answer."""

    correct: bool
    mode: str
    extracted: str | None
    expected: str
    format_ok: bool


class Timings(BaseModel):
    generate_s: float = 0.0
    paths_s: float = 0.0
    attribution_s: float = 0.0
    verification_s: float = 0.0
    total_s: float = 0.0


class Identity(BaseModel):
    model_id: str
    hook_name: str
    sae_id: str
    sae_d_sae: int
    atlas_version: str | None = None


class DriftReport(BaseModel):
    """One diagnosis: where and why the model left the correct path, with evidence."""

    schema_version: str = REPORT_SCHEMA_VERSION
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    identity: Identity
    prompt: str
    expected: str
    reference: str | None = None
    chat: bool = True
    judgement: Judgement
    failure_class: FailureClass
    failure_evidence: str
    model_path: TokenPath
    expected_path: TokenPath | None = None
    divergence: Divergence | None = None
    attribution: Attribution | None = None
    flagged: list[FlaggedFeature] = Field(default_factory=list)
    verification: AblationResult | None = None
    control: ControlResult | None = None
    verdict: str
    timings: Timings = Field(default_factory=Timings)
    warnings: list[str] = Field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.judgement.correct

    @property
    def flagged_ids(self) -> list[int]:
        return [f.feature for f in self.flagged]
