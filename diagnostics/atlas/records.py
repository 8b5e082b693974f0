"""Typed records of the feature atlas: one latent's entry, its label rule, contexts, token effects."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

LabelSource = Literal["ngram", "llm", "peaks", "none"]
"""peaks: no description; labelled by the tokens its strongest contexts peak on (transcoders)."""


class ContextExample(BaseModel):
    """A token window around the peak activation of a latent on one held-out text window."""

    tokens: list[str]  # decoded tokens of the window, peak included
    peak_index: int  # position of the peak token in `tokens`
    activation: float  # the latent's activation at the peak
    token_activations: list[float] = Field(default_factory=list)  # per token of `tokens`


class TokenValue(BaseModel):
    """An output token and its logit effect (decoder direction through final norm and unembed)."""

    token: str
    token_id: int
    value: float


class TokenLift(BaseModel):
    """A next token that rises when the latent is clamped, in the model's real distribution."""

    token: str
    token_id: int
    lift: float  # mean p(token | clamped) - p(token) over the held-out contexts
    significant: bool  # above the random-direction threshold of the causal test


class OutputTest(BaseModel):
    """The causal output test of one latent (see `diagnostics.atlas.token_change`)."""

    tokens: list[TokenLift]  # the top tokens by lift, significant or not
    threshold: float | None  # a token is shown when its lift exceeds this; None: untested
    p_value: float | None  # of the latent's largest lift against random directions
    edit_norm: float  # norm of the clamp edit in the residual stream
    n_contexts: int


class LabelRule(BaseModel):
    """The structured, machine-checkable form of an offline label.

    A text context "matches" the rule when one of `token_ids` occurs in it, or one of `ngram_ids`
    occurs as a contiguous run. Labels are scored by how well the latent separates matching
    contexts from similar non-matching ones (see `diagnostics.atlas.scoring`).
    """

    token_ids: list[int] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)  # decoded `token_ids`
    ngram_ids: list[list[int]] = Field(default_factory=list)
    ngrams: list[str] = Field(default_factory=list)  # decoded `ngram_ids`
    coverage: float = 0.0  # share of the latent's firings on a rule match (explain split)
    precision: float = 0.0  # share of rule matches on which the latent fires (explain split)
    log_odds: list[float] = Field(default_factory=list)  # z-scored log-odds of each element
    # per element (tokens, then n-grams), explain split: firings on it, and its occurrences
    fires: list[int] = Field(default_factory=list)
    occurrences: list[int] = Field(default_factory=list)
    described: list[int] = Field(default_factory=list)  # elements the short description names

    @property
    def empty(self) -> bool:
        return not self.token_ids and not self.ngram_ids


class FeatureEntry(BaseModel):
    """Everything the atlas knows about one SAE latent."""

    id: int
    density: float  # fraction of held-out tokens on which it fires
    mean_activation: float  # mean over the tokens where it fires
    max_activation: float
    quantiles: dict[str, float]  # activation quantiles given it fires, e.g. {"q0.5": ...}
    label: str  # what a person reads: the description, plus the causal output tokens if any
    label_source: LabelSource
    description: str  # the short input-side description ('' without a rule)
    description_auroc: float | None  # detection AUROC of the description's own matcher
    rule_text: str  # the full rule, e.g. '"How many" | "How" | "The total"'
    llm_auroc: float | None = None  # detection AUROC of an LLM label's triggers, if relabelled
    rule: LabelRule
    detection_auroc: float | None  # rule-matching vs hard-negative held-out contexts
    random_label_auroc: float | None  # same, with another feature's rule (control)
    n_positive_contexts: int = 0  # held-out contexts matching the rule (scoring split)
    n_negative_contexts: int = 0  # hard negatives used
    is_dead: bool = False
    is_dense: bool  # fires on more than 10% of tokens
    is_unigram: bool  # a single token explains it (most firings, most of that token's occurrences)
    is_generic: bool  # dense (> 5%), or fires mostly on formatting / a window's first token
    generic_reason: str  # why it is generic ('' when it is not)
    output: OutputTest | None  # causal output side; None when the atlas has no output test
    top_contexts: list[ContextExample]
    peaks_on_rule: float | None  # share of top contexts whose peak token matches the rule
    promoted_tokens: list[TokenValue]  # decoder direction through the unembedding (not causal)
    suppressed_tokens: list[TokenValue]


class AtlasMeta(BaseModel):
    """How an atlas was built and what it summarises."""

    version: int
    model_id: str
    hook_name: str
    d_sae: int
    sae_fingerprint: str  # sha1 of the decoder weights, to catch an atlas paired with another SAE
    n_tokens: int  # text tokens seen (all splits)
    n_windows: int
    n_explain_tokens: int  # tokens used for statistics of labels and contexts
    n_score_contexts: int  # held-out contexts used to score labels
    score_context_len: int
    ctx_len: int
    sources: list[str] = Field(default_factory=list)
    split: str = ""
    quantile_levels: list[float]
    dense_threshold: float
    build_seconds: float = 0.0
    summary: dict[str, float | int | None] = Field(default_factory=dict)
    output_test: dict[str, float | int | str] = Field(default_factory=dict)  # how it was run
    llm_model: str | None = None  # set when labels were rewritten by an LLM explainer
