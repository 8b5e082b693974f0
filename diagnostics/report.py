"""The drift report: a versioned, JSON-serialisable record of one diagnosis.

It holds everything a page needs without re-running the model: the tokens of the model's path
and of the corrected path with their top features, the first wrong step, the divergence, the
flagged features with labels and evidence, the control, the verdict, the failure class, timings
and the identity of the model and SAE. `DriftReport.from_stored` reads bodies written by older
schema versions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from diagnostics.failure_classes import FailureClass
from diagnostics.feature_card import FeatureCard
from diagnostics.trace.records import Trace

REPORT_SCHEMA_VERSION = "3.0"
"""2.0: first_error; the expected path is the model's text with its first wrong step corrected;
fires_at holds token positions (`TokenActivation`); attributions are `FeatureAttribution`;
the answer record is `JudgedAnswer`; the output's source is recorded.
3.0: `trace`, the attribution graph of the failure through per-layer transcoders."""


class FeatureActivation(BaseModel):
    """One latent's activation at one token."""

    feature: int
    activation: float


class TokenActivation(BaseModel):
    """A latent's activation at one position of a path."""

    position: int  # index in the full sequence (prompt + continuation)
    token: str
    activation: float


class FeatureAttribution(BaseModel):
    """One latent's attribution of the logit gap, summed over positions."""

    feature: int
    attribution: float
    label: str = ""
    ablation_effect: float | None = None  # measured, when it was among the screened candidates
    flagged: bool = False


class PathToken(BaseModel):
    """A token of a path with the strongest features at it."""

    index: int  # position in the full sequence (prompt + continuation)
    token: str
    token_id: int
    top_features: list[FeatureActivation] = Field(default_factory=list)
    flagged: list[FeatureActivation] = Field(default_factory=list)  # flagged latents active here


class TokenPath(BaseModel):
    """A continuation of the prompt: the model's own output, or the corrected path."""

    text: str
    tokens: list[PathToken]


class FirstError(BaseModel):
    """The first wrong step of the model's output, and its correction."""

    kind: str  # calculation_slip | wrong_operation | misread_number | invented_step | missing_step | answer_only
    found_by: str  # calculator | gold_step | fallback
    output_span: tuple[int, int]  # [start, end) characters of the wrong step in model_path.text
    step_text: str
    should_be: str  # the corrected step ("" when the evidence supports no specific correction)
    evidence: str
    gold_source: str | None = None  # annotations | reference | question | derived
    confidence: Literal["checked", "derived", "uncertain"]  # how sure the location is


class NextToken(BaseModel):
    """A candidate next token and the model's probability for it."""

    token: str
    token_id: int
    prob: float


class Divergence(BaseModel):
    """The first token where the corrected path leaves the model's own (teacher forcing).

    Both paths share every token before it, so `path_index` indexes both continuations."""

    position: int  # index in the full sequence of the token being predicted
    path_index: int  # index within the continuation (same in both paths)
    output_offset: int | None = None  # character offset of the model's token in model_path.text
    expected_token: str
    expected_token_id: int
    model_token: str  # what the model wrote there (its greedy choice for a generated output)
    model_token_id: int
    logit_expected: float
    logit_model: float
    metric: float  # logit(expected) - logit(model's token); negative at a divergence
    prob_expected: float
    prob_model: float
    near_tie: bool = False  # prob_model - prob_expected < NEAR_TIE: a fork, not a confident turn
    context: str = ""  # the few tokens before the divergence
    top_next: list[NextToken] = Field(default_factory=list)  # the model's top 5 there (2.0+)


class FlaggedFeature(BaseModel):
    """A latent that pushes toward the wrong token and is off the correct path."""

    feature: int
    label: str = ""
    label_score: float | None = None  # detection AUROC of the shown label, from the atlas
    generic: bool = False  # dense, or firing on formatting or special positions (atlas)
    generic_reason: str = ""
    attribution: float  # summed activation x gradient of the metric (negative: toward wrong)
    activation_failing: float  # max activation on the model's own path
    activation_expected: float  # max activation on the corrected path
    atlas_mean_activation: float | None = None  # mean activation when firing, over the atlas text
    atlas_density: float | None = None
    off_path_reason: str = ""  # why it counts as off the correct path
    fires_at: list[TokenActivation] = Field(default_factory=list)  # strongest positions first
    in_prompt: bool = False  # fires on prompt tokens (not only on generated ones)
    ablation_effect: float | None = None  # metric change when this latent alone is zero-ablated
    card: FeatureCard | None = None  # description, strongest contexts, label score (atlas)


class AblationResult(BaseModel):
    """Zero-ablating a set of latents (error term kept) at every position."""

    features: list[int]
    metric_before: float
    metric_after: float
    metric_change: float
    continuation: str  # greedy continuation from the divergence point with the ablation on
    fixed: bool  # the continuation reaches the expected answer
    takes_correction: bool | None = None  # its first token is the corrected token


class SetAblation(BaseModel):
    """A set of random latents ablated together: a draw of a control or of the null."""

    features: list[int]  # empty when a null draw's selection kept none
    metric_change: float  # gap change with them ablated together
    fixed: bool | None = None  # None: no continuation was run for this draw
    continuation: str | None = None


class ControlResult(BaseModel):
    """Random active latents matched by activation to the flagged ones, ablated together with
    no selection: a baseline for scale (gap changes only), not the evidence (see
    SelectionMatchedNull). Stored bodies may still hold the old `fix_rate` of continued control
    draws; reading ignores it (pydantic drops unknown fields), so no schema version changed."""

    kind: Literal["matched_random"] = "matched_random"
    draws: list[SetAblation]
    median_metric_change: float


class SelectionMatchedNull(BaseModel):
    """Random candidates put through the flagged latents' screen-and-select procedure."""

    kind: Literal["selection_matched"] = "selection_matched"
    candidates_per_draw: int  # as many random latents as were screened
    pool: int  # random latents ablated alone, resampled into the draws
    draws: list[SetAblation]
    median_metric_change: float
    p90_metric_change: float
    percentile: float  # of the flagged set's gap change among the draws' (0-100)
    fix_rate: float | None  # over the draws with a continuation
    threshold_percentile: float  # the flagged set explains the failure only above this
    seconds: float  # CPU seconds of the null: its screen of the pool and its continuations


class Attribution(BaseModel):
    """How the gap at the divergence splits over SAE latents and the SAE error term.

    Attributions are linear estimates (activation x gradient, zero baseline). With the gap when
    every node at the SAE's layer is zero (`baseline`) they add up to the exact gap:
    metric = baseline + total_feature_attribution + error_attribution + nonlinear."""

    metric: float  # the exact gap, logit(corrected) - logit(model's token)
    baseline: float | None = None  # the gap with the SAE's layer zeroed (all nodes off)
    total_feature_attribution: float  # linear estimate, all latents
    error_attribution: float  # linear estimate, the SAE error term
    nonlinear: float | None = None  # what the linear estimates leave out
    error_share: float  # |error| / (|error| + sum |feature attributions|)
    top_positive: list[FeatureAttribution] = Field(
        default_factory=list
    )  # toward the expected token
    top_negative: list[FeatureAttribution] = Field(default_factory=list)  # toward the model's token
    per_position: list[float] = Field(
        default_factory=list
    )  # [seq up to the divergence] latents + error term at each position (empty in old reports)


class SpanEffect(BaseModel):
    """A prompt span deleted (a sentence) or changed (a number), and what that does."""

    kind: Literal["sentence", "number"]
    span: tuple[int, int]  # [start, end) characters of the prompt
    text: str
    replacement: str | None = None  # a number's stand-in value
    gap: float  # the logit gap at the divergence with the span edited
    gap_change: float  # vs the unedited prompt (> 0: toward the corrected token)
    fixed: bool | None = None  # regenerated from the edited prompt: right? (None: not tried)
    answer: str | None = None  # the regenerated answer


class ContextAttribution(BaseModel):
    """Which part of the prompt carries the failure, by counterfactual deletion."""

    effects: list[SpanEffect]
    responsible_span: tuple[int, int] | None  # [start, end) characters of the prompt
    responsible_reason: str
    responsible_latents: list[FeatureAttribution] = Field(default_factory=list)  # at that span
    seconds: float = 0.0


class JudgedAnswer(BaseModel):
    """The verdict on the model's answer."""

    correct: bool
    mode: str
    extracted: str | None
    expected: str
    format_ok: bool


class Timings(BaseModel):
    """Wall seconds per stage (what a user waited) and CPU seconds of the diagnosing process per
    stage (what it cost; `cpu_s` keys: generate, paths, attribution, null, continuations,
    context, total)."""

    generate_s: float = 0.0
    paths_s: float = 0.0
    attribution_s: float = 0.0
    verification_s: float = 0.0  # the selection-matched null, the control and continuations
    context_s: float = 0.0
    total_s: float = 0.0
    cpu_s: dict[str, float] = Field(default_factory=dict)


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
    output_source: Literal["greedy", "given"] = "greedy"
    greedy_reproduces: bool | None = None  # for a given output: is it the model's greedy output?
    judgement: JudgedAnswer
    failure_class: FailureClass
    failure_evidence: str
    model_path: TokenPath
    first_error: FirstError | None = None
    expected_path: TokenPath | None = None  # the model's text up to the divergence, corrected
    divergence: Divergence | None = None
    attribution: Attribution | None = None
    flagged: list[FlaggedFeature] = Field(default_factory=list)
    verification: AblationResult | None = None
    null: SelectionMatchedNull | None = None
    control: ControlResult | None = None
    evidence: Literal["supported", "weak", "none"] = "none"  # flagged vs the selection-matched null
    context: ContextAttribution | None = None
    trace: Trace | None = None  # the attribution graph of the failure (3.0+; opt-in)
    verdict: str
    timings: Timings = Field(default_factory=Timings)
    warnings: list[str] = Field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.judgement.correct

    @property
    def flagged_ids(self) -> list[int]:
        return [f.feature for f in self.flagged]

    @classmethod
    def from_stored(cls, body: dict[str, Any]) -> DriftReport:
        """A report from its stored JSON, of this schema version or an older one."""
        return cls.model_validate(upgrade_report_body(body))


def upgrade_report_body(body: dict[str, Any]) -> dict[str, Any]:
    """A stored report body in the current schema, upgraded one major version at a time."""
    version = str(body.get("schema_version", "1.0"))
    if version.startswith("1."):
        body = _upgrade_1_to_2(body)
    if str(body.get("schema_version")).startswith("2."):
        body = _upgrade_2_to_3(body)
    return body


def _upgrade_2_to_3(body: dict[str, Any]) -> dict[str, Any]:
    """2.x bodies had no trace and no `first_error.confidence`."""
    return {**_with_first_error_confidence(body), "trace": None, "schema_version": "3.0"}


def _upgrade_1_to_2(body: dict[str, Any]) -> dict[str, Any]:
    """1.x bodies: `fires_at` entries held the position under `feature` (tokens in
    `fires_at_tokens`), top attributions held the value under `activation`, the divergence had
    `numeric`/`first_any_position`; no first error."""
    body = dict(body)
    flagged = []
    for f in body.get("flagged") or []:
        f = dict(f)
        tokens = f.pop("fires_at_tokens", None) or []
        f["fires_at"] = [
            {
                "position": a["feature"],
                "token": tokens[k] if k < len(tokens) else "",
                "activation": a["activation"],
            }
            for k, a in enumerate(f.get("fires_at") or [])
        ]
        flagged.append(f)
    body["flagged"] = flagged
    if body.get("attribution"):
        attr = dict(body["attribution"])
        for key in ("top_positive", "top_negative"):
            attr[key] = [
                {"feature": a["feature"], "attribution": a["activation"]}
                for a in attr.get(key) or []
            ]
        body["attribution"] = attr
    if body.get("divergence"):
        d = {
            k: v
            for k, v in body["divergence"].items()
            if k not in ("numeric", "first_any_position")
        }
        d["near_tie"] = d.get("prob_model", 1.0) - d.get("prob_expected", 0.0) < NEAR_TIE
        body["divergence"] = d
    body["schema_version"] = "2.0"
    return body


NEAR_TIE = 0.2
"""A divergence is a near-tie when p(model's token) - p(expected token) is below this: the model
was about as ready to take the right turn, so the divergence is a fork, not a confident error."""


def _with_first_error_confidence(body: dict[str, Any]) -> dict[str, Any]:
    """Bodies before 3.0 have no `first_error.confidence`: the calculator's checks and a given
    gold (annotations, reference, the question's own expression) are `checked`; a derived gold
    then kept one derivation whether or not others disagreed, and a prose check or fallback
    says nothing firm, so those are `uncertain`."""
    fe = body.get("first_error")
    if not fe or "confidence" in fe:
        return body
    given = fe.get("gold_source") in ("annotations", "reference", "question")
    by_calculator = fe.get("found_by") == "calculator" and not fe.get("gold_source")
    checked = given or by_calculator
    return {**body, "first_error": {**fe, "confidence": "checked" if checked else "uncertain"}}
