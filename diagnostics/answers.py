"""Judge a model's output against the expected answer.

GSM8K conventions follow lm-evaluation-harness (gsm8k v3): strict-match `#### (-?[0-9.,]+)`,
flexible-extract = the last number in the text, with commas, `$` and a trailing `.` stripped.
`worked` reads a worked answer to a raw prompt, which the model may follow with new examples
("57 + 68 = 125\n\nQ: ..."): within the answer (up to a blank line or the next "Q:"), `#### N`,
else "the answer is N", else the result of its last equation, else its last number.
Other tasks use exact / contains / regex / numeric-with-tolerance. A free-text answer (exact,
contains, and any mode whose expected answer is not a number) is the answer the output's first
sentence gives (`answer_text_span`), so a wrong one is located at its own words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from diagnostics.solution_steps import parse_solution

AnswerMode = Literal["gsm8k", "worked", "exact", "contains", "regex", "numeric"]
ANSWER_MODES: tuple[str, ...] = ("gsm8k", "worked", "exact", "contains", "regex", "numeric")

STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_END = re.compile(r"\n\s*\n|\n\s*(?:Q|Question|Problem)\s*[:.]")
_ANSWER_IS = re.compile(r"answer is\s*:?\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class Judgment:
    """The verdict on one output."""

    correct: bool
    mode: str
    extracted: str | None  # the answer taken from the output (strict if present, else flexible)
    strict: str | None  # GSM8K strict-match extraction
    flexible: str | None  # last number in the output
    expected: str  # the expected answer, normalised
    format_ok: bool  # the answer was where the format says (e.g. after ####)
    expected_in_output: bool  # the expected value occurs in the output at all
    span: tuple[int, int] | None = None  # characters of the output the answer was taken from


def normalize_number(text: str) -> str:
    """'$1,234.50.' -> '1234.50'; leaves non-numbers stripped of spaces."""
    out = text.strip().replace(",", "").replace("$", "").rstrip(".")
    return out


def to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(normalize_number(text))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _strict_match(text: str) -> re.Match | None:
    return STRICT.search(text)


def _flexible_match(text: str) -> re.Match | None:
    numeric = [m for m in FLEXIBLE.finditer(text) if to_float(m.group(0)) is not None]
    return numeric[-1] if numeric else None


def extract_strict(text: str) -> str | None:
    match = _strict_match(text)
    return normalize_number(match.group(1)) if match else None


def extract_flexible(text: str) -> str | None:
    match = _flexible_match(text)
    return normalize_number(match.group(0)) if match else None


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, in order."""
    return [v for m in _NUMBER.finditer(text) if (v := to_float(m.group(0))) is not None]


_FINAL_STRICT = re.compile(r"#### ?-?[0-9][0-9.,]*?(?=[^0-9.,]|[.,][^0-9])")
_FINAL_ANSWER_IS = re.compile(
    r"answer is\s*:?\s*\$?\s*-?[0-9][0-9,]*(?:\.[0-9]+)?(?=[^0-9.,]|[.,][^0-9])", re.IGNORECASE
)
REPEATS_TO_STOP = 3
"""A line written this many times means the output is looping: nothing later changes the answer."""


def answer_is_final(text: str, mode: str) -> bool:
    """Has a generated answer said everything its judge will read? The stopping rule for
    generation, so that a judged answer never depends on where a token budget cuts it:
    - gsm8k: a complete `#### N` (strict-match reads the first one), or "the answer is N";
    - worked: its answer is closed (a blank line or the next "Q:" after some text), or either
      of the above;
    - any mode: the same line written REPEATS_TO_STOP times (a loop).
    A complete number is one followed by something that cannot continue it. EOS and the budget
    stop generation as well."""
    if mode in ("gsm8k", "worked") and (
        _FINAL_STRICT.search(text) or _FINAL_ANSWER_IS.search(text)
    ):
        return True
    if mode == "worked":
        lead = len(text) - len(text.lstrip())
        if _ANSWER_END.search(text, lead) and text.strip():
            return True
    lines = [line.strip() for line in text.split("\n")[:-1] if line.strip()]  # complete lines
    return bool(lines) and lines.count(lines[-1]) >= REPEATS_TO_STOP


def _worked_answer(output: str) -> tuple[int, int] | None:
    """The characters of a worked answer's final value (see the module doc)."""
    lead = len(output) - len(output.lstrip())
    cut = _ANSWER_END.search(output, lead)
    end = cut.start() if cut else len(output)
    answer = output[:end]
    if m := STRICT.search(answer):
        return m.span(1)
    if m := _ANSWER_IS.search(answer):
        return m.span(1)
    steps = parse_solution(answer).steps
    if steps and steps[-1].result.op is None:
        result = steps[-1].result
        return result.start, result.end
    numbers = [m for m in _NUMBER.finditer(answer) if to_float(m.group(0)) is not None]
    if numbers:
        m = numbers[-1]
        start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip("$")))
        return start, m.end()
    return None


_COPULA = re.compile(r"\b(?:is|are|was|were|be|called|named)\s+", re.IGNORECASE)
_SENTENCE = re.compile(r"[^\n.!?]*[^\s.!?][^\n.!?]*")


def answer_text_span(output: str) -> tuple[int, int] | None:
    """The answer a free-text output gives: in its first sentence, the words after its last
    'is'/'are'/'was'/... ("The capital of Australia is Sydney." -> "Sydney"), else the whole
    sentence; without the closing punctuation (an output of punctuation alone is its own
    answer)."""
    m = _SENTENCE.search(output)
    if m is None:  # punctuation alone ('!') is the whole answer
        stripped = output.strip()
        return (output.find(stripped), output.find(stripped) + len(stripped)) if stripped else None
    start, end = m.start() + len(m.group(0)) - len(m.group(0).lstrip()), m.end()
    end -= len(output[start:end]) - len(output[start:end].rstrip())
    copulas = list(_COPULA.finditer(output, start, end))
    if copulas and copulas[-1].end() < end:
        start = copulas[-1].end()
    return (start, end) if end > start else None


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def _same_number(a: str | None, b: str, tolerance: float = 1e-6) -> bool:
    fa, fb = to_float(a), to_float(b)
    return fa is not None and fb is not None and abs(fa - fb) <= tolerance * max(1.0, abs(fb))


USER_PATTERN_TIMEOUT_S = 1.0
"""Longest one match of a user's answer pattern may run (the worker's lease and heartbeat must
not wait on a backtracking pattern)."""


def search_user_pattern(pattern: str, text: str, timeout_s: float = USER_PATTERN_TIMEOUT_S):
    """`regex.search(pattern, text)` bounded to `timeout_s` seconds, checked inside the C
    matcher; ValueError when the pattern is invalid or runs past the bound."""
    import regex

    try:
        return regex.search(pattern, text, timeout=timeout_s)
    except regex.error as err:
        raise ValueError(f"invalid answer pattern {pattern!r}: {err}") from err
    except TimeoutError:
        raise ValueError(
            f"the answer pattern {pattern!r} ran longer than {timeout_s:g} s on this output "
            "(nested repetition backtracks)"
        ) from None


def judge(
    output: str,
    expected: str,
    mode: AnswerMode = "gsm8k",
    *,
    tolerance: float = 1e-6,
    pattern: str | None = None,
) -> Judgment:
    """Is `output` correct for `expected` under `mode`?"""
    if mode not in ANSWER_MODES:
        raise ValueError(f"unknown answer mode {mode!r}: use one of {', '.join(ANSWER_MODES)}")
    if mode in ("gsm8k", "worked", "numeric") and to_float(expected) is None:
        mode = "contains"  # a word ("Canberra") is judged as text, never as a number
    strict_m, flexible_m = _strict_match(output), _flexible_match(output)
    strict = normalize_number(strict_m.group(1)) if strict_m else None
    flexible = normalize_number(flexible_m.group(0)) if flexible_m else None
    span: tuple[int, int] | None = None
    exp_norm = normalize_number(expected) if to_float(expected) is not None else expected.strip()
    exp_value = to_float(expected)
    expected_in_output = (
        any(abs(v - exp_value) <= tolerance * max(1.0, abs(exp_value)) for v in numbers_in(output))
        if exp_value is not None
        else exp_norm.lower() in output.lower()
    )
    if mode == "gsm8k":
        extracted = strict if strict is not None else flexible
        correct = _same_number(extracted, exp_norm)
        format_ok = strict is not None
        span = strict_m.span(1) if strict_m else (flexible_m.span(0) if flexible_m else None)
    elif mode == "worked":
        span = _worked_answer(output)
        extracted = normalize_number(output[span[0] : span[1]]) if span else None
        correct = _same_number(extracted, exp_norm, tolerance)
        format_ok = span is not None
    elif mode == "numeric":
        extracted = flexible
        correct = _same_number(flexible, exp_norm, tolerance)
        format_ok = flexible is not None
        span = flexible_m.span(0) if flexible_m else None
    elif mode == "exact":  # the whole output, or the answer its first sentence gives
        span = answer_text_span(output)
        extracted = output[span[0] : span[1]] if span else None
        correct = _same_text(output, expected) or (extracted is not None and _same_text(
            extracted, expected
        ))  # fmt: skip
        format_ok = True
    elif mode == "contains":
        correct = expected.strip().lower() in output.lower()
        at = output.lower().find(expected.strip().lower())
        span = (at, at + len(expected.strip())) if correct else answer_text_span(output)
        extracted = output[span[0] : span[1]] if span else None
        format_ok = True
    else:  # regex
        if not pattern:
            raise ValueError("answer mode 'regex' needs a pattern")
        match = search_user_pattern(pattern, output)
        extracted = (
            (match.group(1) if match and match.groups() else match.group(0)) if match else None
        )
        correct = extracted is not None and (
            _same_number(extracted, exp_norm, tolerance) or extracted.strip() == expected.strip()
        )
        format_ok = match is not None
        if match:
            span = match.span(1) if match.groups() else match.span(0)
    return Judgment(
        correct=bool(correct),
        mode=mode,
        extracted=extracted,
        strict=strict,
        flexible=flexible,
        expected=exp_norm,
        format_ok=format_ok,
        expected_in_output=expected_in_output,
        span=span,
    )
