"""Classify a wrong answer: whole-output failures first (degenerate text, no extractable answer),
then the kind of the first wrong step (`diagnostics.first_error`: calculation slip, wrong
operation, misread number, invented step, missing step, or an answer that does not follow from
correct work), so the class and the first error never disagree. The expected value written but
not as the answer is a format failure only when no step was located; `other` is left for
outputs where no step could be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from diagnostics.answers import Judgment

if TYPE_CHECKING:
    from diagnostics.first_error import StepError


class FailureClass(StrEnum):
    none = "none"  # the answer is correct
    format = "format"
    degenerate = "degenerate"
    calculation_slip = "calculation_slip"
    misread_number = "misread_number"
    wrong_operation = "wrong_operation"
    invented_step = "invented_step"
    missing_step = "missing_step"
    answer_only = "answer_only"  # the work checks out; the answer does not follow from it
    distraction = "distraction"  # an irrelevant part of the prompt caused it (context effects)
    other = "other"  # nothing could be checked


@dataclass(frozen=True)
class Classification:
    """A failure class and the evidence for it."""

    failure_class: FailureClass
    evidence: str


def is_degenerate(output: str, n: int = 4) -> bool:
    """Empty, or a single n-gram of words makes up most of the text."""
    words = output.split()
    if len(words) < 3:
        return not output.strip()
    grams = [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))]
    most = max(grams.count(g) for g in set(grams))
    return len(words) >= 4 * n and most * n >= 0.5 * len(words)


def classify_failure(
    output: str, judgment: Judgment, first_error: StepError | None
) -> Classification:
    """The class of a judged output, given its first wrong step (None when none was located)."""
    if judgment.correct:
        return Classification(FailureClass.none, "the answer is correct")
    if is_degenerate(output):
        return Classification(FailureClass.degenerate, "empty or repetitive output")
    if judgment.extracted is None:
        return Classification(FailureClass.format, "no answer could be extracted")
    if first_error is not None and first_error.found_by != "fallback":
        return Classification(FailureClass(first_error.kind.value), first_error.evidence)
    if judgment.expected_in_output:
        return Classification(
            FailureClass.format,
            f"the expected value {judgment.expected} is in the output, but the answer taken "
            f"from it is {judgment.extracted}",
        )
    return Classification(FailureClass.other, "no step of the output could be checked")
