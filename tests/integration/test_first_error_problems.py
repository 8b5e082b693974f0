"""Issue 25's five problems, diagnosed end to end with the bundled model: the report's first
error, its confidence, the verdict's wording and the class agree (attribution runs; the
ablation null and sentence deletions are left out to keep this to a minute)."""

from __future__ import annotations

import pytest

from diagnostics.diagnose import diagnose
from diagnostics.options import DiagnosisOptions
from diagnostics.sae import load_sae

CHEAP = DiagnosisOptions(verify=False, context=False, null_draws=0, control_draws=0)


@pytest.fixture(scope="module")
def sae():
    return load_sae("default")


def test_lena_a_right_step_is_not_blamed(bundled_lm, sae):
    q = "Lena buys 3 notebooks that cost $4 each and one pen that costs $2. How much does she spend?"
    out = (
        "3 * 4 = 12 dollars on the notebooks and 1 * 2 = 2 dollars on the pen. The total cost "
        "of the notebooks and the pen is 3 + 1 = 4 dollars.\n#### 1"
    )
    r = diagnose(bundled_lm, sae, q, "14", output=out, options=CHEAP)
    fe = r.first_error
    assert fe.step_text == "3 + 1 = 4" and fe.confidence == "derived"
    assert r.failure_class.value == fe.kind
    assert r.divergence.output_offset >= out.index("3 + 1") - 1


def test_sam_the_invented_first_claim_is_located(bundled_lm, sae):
    q = (
        "Sam is 4 years older than his sister, who is twice as old as their 5-year-old cousin. "
        "How old is Sam?"
    )
    out = "Sam is 5 years old. His sister is twice as old as Sam, so she is 2 * 5 = 10 years old. "
    out += "The answer is 5."
    r = diagnose(bundled_lm, sae, q, "14", output=out, options=CHEAP)
    assert r.first_error.step_text.startswith("Sam is 5 years old")
    assert r.first_error.confidence == "uncertain"
    assert r.divergence.output_offset < out.index(".")  # at the claim, not the answer
    assert "location itself is uncertain" in r.verdict and r.evidence != "supported"


def test_canberra_a_text_answer_is_judged_and_located(bundled_lm, sae):
    for mode in (None, "contains"):
        opts = CHEAP.model_copy(update={"mode": mode})
        r = diagnose(bundled_lm, sae, "The capital of Australia is", "Canberra", options=opts)
        if r.correct:
            pytest.skip("the model answered Canberra")
        text = r.model_path.text
        assert r.judgement.extracted and r.judgement.extracted in text
        assert r.failure_class.value != "format"
        at = text.index(r.judgement.extracted)  # the divergence token may carry its space
        assert at - 1 <= r.divergence.output_offset <= at
        assert (
            r.divergence.expected_token.strip()
            == "Canberra"[: len(r.divergence.expected_token.strip())]
        )


def test_a_given_output_is_not_the_models_preference(bundled_lm, sae):
    q = (
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
        "in May. How many clips did Natalia sell altogether in April and May?"
    )
    out = "Natalia sold 48 / 2 = 24 clips in May.\n48 + 24 = 82.\n#### 82"
    r = diagnose(bundled_lm, sae, q, "72", output=out, options=CHEAP)
    assert r.first_error.kind == "calculation_slip" and r.first_error.confidence == "checked"
    d = r.divergence
    if d.prob_model < max(t.prob for t in d.top_next):
        assert "given output has" in r.verdict and "the model preferred" not in r.verdict
