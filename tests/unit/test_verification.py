"""Batched verification: one generate for every ablated set, each row its own edit and its own
stop, equal to running each set alone."""

import pytest
import torch

from diagnostics.attribution import LogitGap, logit_difference
from diagnostics.splice import splice_sae
from diagnostics.verification import Verifier, zero_ablation
from tests.conftest import make_random_sae

PROMPT = "what is 2 plus 3 ?"


@pytest.fixture(scope="module")
def dense_sae(tiny_lm):
    sae = make_random_sae(tiny_lm.d_model, 128, layer=2, seed=5)
    with torch.no_grad():
        sae.threshold.zero_()
        sae.b_enc.zero_()
    return sae


def test_batched_rows_equal_each_set_alone(tiny_lm, dense_sae):
    ids = tiny_lm.prompt_ids(PROMPT, chat=False)
    gap = LogitGap(ids, len(ids) - 1, 5, 9)
    before = logit_difference(tiny_lm, dense_sae, gap)
    verifier = Verifier(
        lm=tiny_lm,
        sae=dense_sae,
        gap=gap,
        before=before,
        prefix_text="",
        judge_fn=lambda text: "5" in text,
        stop=lambda text: False,
        max_new_tokens=6,
    )
    sets = [[1, 2, 3], [40, 41], list(range(0, 128, 2))]
    results = verifier.run(sets)
    for latents, result in zip(sets, results, strict=True):
        edit = zero_ablation(latents)
        alone = logit_difference(tiny_lm, dense_sae, gap, edit=edit)
        assert result.metric_after == pytest.approx(alone, abs=1e-4)
        with splice_sae(tiny_lm, dense_sae, edit=edit):
            tokens = tiny_lm.generate_ids(gap.prefix, max_new_tokens=6)
        assert result.continuation == tiny_lm.tokenizer.decode(tokens, skip_special_tokens=True)
    assert len({r.continuation for r in results}) > 1  # the rows really had different edits


def test_each_row_stops_on_its_own(tiny_lm):
    ids = tiny_lm.prompt_ids(PROMPT, chat=False)
    rows = tiny_lm.generate_rows(
        [ids, ids[:-2]], max_new_tokens=8, stop=lambda text: len(text.replace(" ", "")) >= 3
    )
    # this random model writes '???…' after the prompt and 'plus plus …' after its start
    assert [len(r) for r in rows.ids] == [3, 1]
    for prompt, row in zip([ids, ids[:-2]], rows.ids, strict=True):  # left padding changes nothing
        assert row.tolist() == tiny_lm.generate_ids(prompt, max_new_tokens=len(row)).tolist()
