"""The knobs of one diagnosis, shared by the library, the CLI (its options and bounds are read
from here), the API schemas and the job payloads. A light module: pydantic only."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from diagnostics.answers import AnswerMode

PROBE_TIMEOUT_S = 0.05
"""Longest a submitted pattern may run on each probe string before it is refused."""
PROBES: tuple[str, ...] = tuple(
    c * 40 + tail for c in ("a", "0", " ", ".", "ab", "a1", "#### 1") for tail in ("!", "\n\x01")
)
"""Runs of letters, digits, spaces and punctuation ending in a character that breaks them: the
inputs on which a nested repetition (`^(a+)+$`, `(\\d*)*x`) backtracks exponentially."""


def check_user_pattern(pattern: str) -> str:
    """`pattern` if it compiles (with the `regex` package that runs it) and finishes each probe
    within PROBE_TIMEOUT_S; ValueError otherwise."""
    import regex

    if "\x00" in pattern:
        raise ValueError("the pattern holds a NUL character")
    try:
        compiled = regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError) as err:
        raise ValueError(f"not a valid regular expression: {err}") from None
    for probe in PROBES:
        try:
            compiled.search(probe, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            raise ValueError(
                f"the pattern ran longer than {PROBE_TIMEOUT_S:g} s on the probe {probe!r} "
                "(nested repetition backtracks): simplify it"
            ) from None
    return pattern


class DiagnosisOptions(BaseModel):
    """Knobs of one diagnosis (shared by the library, CLI and API)."""

    mode: AnswerMode | None = Field(
        None,
        description="How the answer is judged (default: gsm8k for chat prompts, worked for raw "
        "ones).",
    )
    pattern: str | None = Field(None, max_length=500, description="Regex for mode 'regex'.")
    tolerance: float = Field(1e-6, ge=0, le=1, description="Relative tolerance for numbers.")
    chat: bool = Field(True, description="Wrap the prompt in the chat template.")
    max_new_tokens: int = Field(256, ge=1, le=1024, description="Generation budget.")
    top_k: int = Field(5, ge=1, le=50, description="Latents to flag and ablate together.")
    control_draws: int = Field(3, ge=0, le=20, description="Random matched control sets.")
    null_draws: int = Field(
        20, ge=0, le=200, description="Draws of the selection-matched null (0: none)."
    )
    null_continuations: int = Field(
        3, ge=0, le=20, description="Null draws whose greedy continuation is also judged."
    )
    context: bool = Field(
        True, description="Find the prompt sentence that carries the failure (deletion tests)."
    )
    top_features_per_token: int = Field(3, ge=0, le=20, description="Features kept per token.")
    verify: bool = Field(True, description="Run the ablation checks (slower).")
    trace: bool = Field(
        False,
        description="Trace the failure's attribution graph through the per-layer transcoders "
        "(minutes on a CPU, seconds on a GPU).",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the random control.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        return None if pattern is None else check_user_pattern(pattern)

    @model_validator(mode="after")
    def _regex_has_pattern(self) -> DiagnosisOptions:
        if self.mode == "regex" and not self.pattern:
            raise ValueError("answer mode 'regex' needs a pattern")
        return self

    @property
    def answer_mode(self) -> AnswerMode:
        """The mode in effect: the one asked for, else gsm8k for chat and worked for raw."""
        return self.mode or ("gsm8k" if self.chat else "worked")
