"""A diagnosis asked to stop ends at its next stage boundary with Cancelled in its place, never
failing the other problems of its batch (the worker asks on behalf of a cancelled job)."""

from __future__ import annotations

import pytest

from diagnostics.diagnose import Problem, diagnose_batch
from diagnostics.options import DiagnosisOptions
from diagnostics.report import DriftReport
from diagnostics.stage_clock import Cancelled
from tests.conftest import make_firing_sae

OPTS = DiagnosisOptions(max_new_tokens=4, top_k=2, control_draws=0, null_draws=2, chat=False)


@pytest.fixture(scope="module")
def sae(tiny_lm):
    return make_firing_sae(tiny_lm, 128, seed=3)


def test_a_stopped_problem_ends_at_a_stage_boundary_and_the_others_finish(tiny_lm, sae):
    asked: list[int] = []

    def should_stop(i: int) -> bool:
        asked.append(i)
        return i == 0 and asked.count(0) > 1  # problem 0: stop once its diagnosis has begun

    problems = [Problem("what is 2 plus 3 ?", "5"), Problem("what is 4 times 2 ?", "8")]
    results = diagnose_batch(tiny_lm, sae, problems, options=OPTS, should_stop=should_stop)
    assert isinstance(results[0], Cancelled) and "stage" in str(results[0])
    assert isinstance(results[1], DriftReport)
    assert asked.count(1) >= 3  # asked before it started and at each of its stages


def test_a_problem_stopped_before_it_starts_never_runs(tiny_lm, sae):
    results = diagnose_batch(
        tiny_lm, sae, [Problem("what is 2 plus 3 ?", "5")], options=OPTS, should_stop=lambda i: True
    )
    assert isinstance(results[0], Cancelled) and "before its diagnosis started" in str(results[0])
