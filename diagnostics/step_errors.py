"""The record of a first wrong step: its kind, how it was found, how sure its location is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from diagnostics.corrections import Correction


class ErrorKind(StrEnum):
    calculation_slip = "calculation_slip"
    wrong_operation = "wrong_operation"
    misread_number = "misread_number"
    invented_step = "invented_step"
    missing_step = "missing_step"
    answer_only = "answer_only"


class FoundBy(StrEnum):
    calculator = "calculator"  # arithmetic or operand provenance, no gold needed
    gold_step = "gold_step"  # against gold steps (annotations, reference, question, derived)
    question_binding = "question_binding"  # a question number restated for the wrong thing
    fallback = "fallback"  # nothing could be checked: the final answer is all there is


class Confidence(StrEnum):
    """How sure the location is."""

    checked = "checked"  # the calculator, GSM8K annotations, a reference, or the question's sum
    derived = "derived"  # one derivation consistent with the steps before it says so
    uncertain = "uncertain"  # derivations disagree, a prose-only check, or nothing checkable


CHECKED_SOURCES = ("annotations", "reference", "question")
"""Gold sources that are given, not searched for."""


@dataclass(frozen=True)
class StepError:
    """Where the model's solution first goes wrong, and what it should have written."""

    kind: ErrorKind
    found_by: FoundBy
    span: tuple[int, int]  # [start, end) characters of the wrong step in the output
    step_text: str
    should_be: str  # the corrected step, e.g. "48 / 2 = 24" ("" when unknown)
    evidence: str  # one sentence: why this step is wrong
    correction: Correction | None  # None: the evidence supports no specific correction
    gold_source: str | None = None  # where the gold step came from (annotations, derived, ...)
    confidence: Confidence = Confidence.checked  # how sure the location is
