"""What a job asks the worker to do: one typed payload per job kind, written by the submitter
(service.submissions) into `job.payload` and read back by the worker (workers.jobs)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, Field

from diagnostics.options import DiagnosisOptions
from service.models import JobKind
from service.validation import INT32_MAX, FeatureId, NonBlankText, Text

PROMPT_HARD_LIMIT = 100_000  # schema bound; settings.max_prompt_chars is the configured limit
Clamp = Annotated[float, Field(ge=-1_000, le=1_000, allow_inf_nan=False)]
ConceptTokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]


class DiagnosisPayload(BaseModel):
    """Diagnose `prompt` against `expected` (and a worked `reference` solution, if any); with
    `output`, diagnose that response as given (an eval run's) instead of generating one."""

    kind: ClassVar[JobKind] = JobKind.diagnosis
    prompt: str
    expected: str
    reference: str | None = None
    output: str | None = Field(None, max_length=PROMPT_HARD_LIMIT)
    options: DiagnosisOptions = Field(default_factory=DiagnosisOptions)


class SteerPayload(BaseModel):
    """Generate with SAE features clamped (multiples of their max activation)."""

    kind: ClassVar[JobKind] = JobKind.steer
    prompt: NonBlankText = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    clamps: dict[FeatureId, Clamp] = Field(
        min_length=1,
        max_length=64,
        description="Feature id (an integer, written as a JSON object key) -> multiple of its "
        "max activation.",
        json_schema_extra={"propertyNames": {"pattern": "^(0|[1-9][0-9]{0,9})$"}},
    )
    max_new_tokens: int = Field(40, ge=1, le=512)
    chat: bool = True
    concept: list[Annotated[Text, Field(max_length=200)] | ConceptTokenId] | None = Field(
        None, max_length=64
    )


class SearchPayload(BaseModel):
    """Find the latents that fire on `text` (and not on `versus`), as `features search` does."""

    kind: ClassVar[JobKind] = JobKind.search
    text: Text = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    versus: Text | None = Field(None, max_length=PROMPT_HARD_LIMIT)
    top: int = Field(20, ge=1, le=200)


JobPayload = DiagnosisPayload | SteerPayload | SearchPayload
PAYLOAD_OF: dict[JobKind, type[JobPayload]] = {
    p.kind: p for p in (DiagnosisPayload, SteerPayload, SearchPayload)
}


def read_payload(kind: str, payload: dict) -> JobPayload:
    """The typed payload of a stored job (ValidationError when it does not fit its kind)."""
    return PAYLOAD_OF[JobKind(kind)].model_validate(payload)  # type: ignore[return-value]
