"""What a job asks the worker to do: one typed payload per job kind, written by the submitter
(service.submissions) into `job.payload` and read back by the worker (workers.jobs)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from diagnostics.options import DiagnosisOptions
from service.models import JobKind

PROMPT_HARD_LIMIT = 100_000  # schema bound; settings.max_prompt_chars is the configured limit


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
    prompt: str = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    clamps: dict[int, float] = Field(min_length=1, max_length=64)
    max_new_tokens: int = Field(40, ge=1, le=512)
    chat: bool = True
    concept: list[str | int] | None = Field(None, max_length=64)


class SearchPayload(BaseModel):
    """Find the latents that fire on `text` (and not on `versus`), as `features search` does."""

    kind: ClassVar[JobKind] = JobKind.search
    text: str = Field(min_length=1, max_length=PROMPT_HARD_LIMIT)
    versus: str | None = Field(None, max_length=PROMPT_HARD_LIMIT)
    top: int = Field(20, ge=1, le=200)


JobPayload = DiagnosisPayload | SteerPayload | SearchPayload
PAYLOAD_OF: dict[JobKind, type[JobPayload]] = {
    p.kind: p for p in (DiagnosisPayload, SteerPayload, SearchPayload)
}


def read_payload(kind: str, payload: dict) -> JobPayload:
    """The typed payload of a stored job (ValidationError when it does not fit its kind)."""
    return PAYLOAD_OF[JobKind(kind)].model_validate(payload)  # type: ignore[return-value]
