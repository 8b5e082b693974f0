"""A user's answer pattern cannot hold a worker: refused when it backtracks on a probe string, and
bounded in time (inside the C matcher, where a thread-based heartbeat cannot run) when it runs."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from diagnostics.answers import judge
from diagnostics.options import DiagnosisOptions


@pytest.mark.parametrize("pattern", [r"^(a|a)+$", r"^(a|aa)+$", r"^(\d|\d)*$"])
def test_a_backtracking_pattern_is_refused_quickly(pattern):
    start = time.monotonic()
    with pytest.raises(ValidationError, match="nested repetition backtracks"):
        DiagnosisOptions(mode="regex", pattern=pattern)
    assert time.monotonic() - start < 2.0


def test_usual_answer_patterns_pass_the_probes():
    for pattern in (r"#### (\d+)", r"answer is\s*(-?\d+)", r"(\w+\s?)*$", r"^(a+)+$"):
        assert DiagnosisOptions(mode="regex", pattern=pattern).pattern == pattern


def test_judging_with_a_pattern_the_probes_missed_is_bounded():
    """`(b|b)+` passes the probes (no run of b in them) but backtracks on this output: the judge
    stops it after its bound and says why."""
    assert DiagnosisOptions(mode="regex", pattern=r"^(b|b)+$")
    start = time.monotonic()
    with pytest.raises(ValueError, match="ran longer than"):
        judge("b" * 30 + "c", "1", "regex", pattern=r"^(b|b)+$")
    assert time.monotonic() - start < 5.0
    assert judge("the answer is 12", "12", "regex", pattern=r"answer is (\d+)").correct
