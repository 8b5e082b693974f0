"""The causal output test on the tiny Llama: the one-position tail is exact, a planted output
effect is found, and random directions (the tiny SAE's random latents) are rejected."""

from __future__ import annotations

import numpy as np
import torch

from diagnostics.atlas.token_change import LayerTail, context_state, token_change
from diagnostics.splice import splice_sae
from tests.conftest import make_random_sae, make_tiny_lm
from tests.unit.test_atlas_build import PROMOTE_LATENT, planted  # noqa: F401  (fixture)


def test_the_one_position_tail_reproduces_the_model_with_and_without_an_edit():
    lm = make_tiny_lm()
    sae = make_random_sae(lm.d_model, 32, layer=lm.default_layer, seed=3)
    tail = LayerTail(lm, sae.cfg.hook_layer)
    ids = [
        0,
        *torch.randint(
            4, len(lm.tokenizer), (20,), generator=torch.Generator().manual_seed(0)
        ).tolist(),
    ]
    state = context_state(lm, sae, tail, ids)
    with torch.no_grad():
        full = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        full[tail.special] = -torch.inf
        torch.testing.assert_close(state.probs, full.softmax(-1), atol=1e-6, rtol=0)
        i, value = 5, 3.0

        def edit(f: torch.Tensor) -> torch.Tensor:  # [1, seq, d_sae]: clamp at the last position
            f = f.clone()
            f[:, -1, i] = value
            return f

        with splice_sae(lm, sae, edit=edit):
            ref = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        ref[tail.special] = -torch.inf
        delta = (value - state.features[i]) * sae.W_dec[i].float()
        mine = tail.logits(state, (state.hidden + delta)[None])[0]
    torch.testing.assert_close(mine.softmax(-1), ref.softmax(-1), atol=1e-6, rtol=0)
    assert (ref.softmax(-1) - full.softmax(-1)).abs().max() > 1e-3  # the edit did something


def test_a_planted_output_effect_passes_and_random_directions_do_not(planted):  # noqa: F811
    lm, _, _, atlas = planted
    apples = lm.tokenizer.convert_tokens_to_ids("apples")
    effect = atlas.output_effect(PROMOTE_LATENT)
    assert effect and effect[0].token_id == apples and effect[0].lift > 0
    test = atlas.output_test(PROMOTE_LATENT)
    assert test.p_value <= 0.02 and test.threshold is not None and effect[0].lift > test.threshold
    # every other latent of the planted SAE is a random unit direction: the null
    random_ids = [i for i in range(atlas.d_sae) if i not in (PROMOTE_LATENT, 7)]
    passed = [i for i in random_ids if atlas.output_effect(i)]
    assert len(passed) <= 0.1 * len(random_ids), passed
    p = np.array([atlas.output_test(i).p_value for i in random_ids])
    assert 0.2 < float(np.median(p)) < 0.8  # null p-values spread over (0, 1]


def test_an_untested_latent_shows_nothing():
    lm = make_tiny_lm()
    sae = make_random_sae(lm.d_model, 16, layer=lm.default_layer, seed=4)
    contexts = [[0, *range(4, 14)], [0, *range(14, 30)]]
    clamp = np.zeros(16, dtype=np.float32)
    clamp[2] = 5.0
    out = token_change(lm, sae, contexts, clamp, n_null=20, progress=False)
    assert np.isinf(out.threshold[0]) and out.p_value[0] == 1.0  # never fired: untested
    assert np.isfinite(out.threshold[2]) and out.null_max_lifts.shape[1] == 20
