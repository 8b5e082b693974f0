"""Attribution is exact to first order (the check circuit-tracer applies to its edges): scaling one
latent, or the SAE error term, by 1 - eps at every attributed position moves the logit gap by
-eps x its attribution."""

from __future__ import annotations

import pytest
import torch

from diagnostics.attribution import LogitGap, attribute, logit_difference
from diagnostics.hooks import hook_resid_post
from diagnostics.language_model import special_token_ids
from tests.conftest import make_firing_sae

PROMPT = "what is 2 plus 3 ?"
EPS = 1e-3


@pytest.fixture(scope="module")
def case(tiny_lm):
    """The SAE, the gap and the attribution there."""
    sae = make_firing_sae(tiny_lm, 128, seed=3)
    ids = tiny_lm.prompt_ids(PROMPT, chat=True)  # chat markers: positions outside the SAE
    pos = len(ids) - 1
    with torch.no_grad():
        logits = tiny_lm.model(ids[None]).logits[0, pos]
    target, other = int(logits.argsort()[-2]), int(logits.argmax())
    gap = LogitGap(ids, pos, target, other)
    return sae, gap, attribute(tiny_lm, sae, gap)


def test_scaling_a_latent_moves_the_gap_by_its_attribution(tiny_lm, case):
    sae, gap, res = case
    clean = logit_difference(tiny_lm, sae, gap)
    checked = res.per_feature.abs().topk(8).indices.tolist()
    assert float(res.per_feature[checked[-1]].abs()) > 1e-3  # real attributions, not zeros

    for j in checked:

        def scale(f: torch.Tensor, j: int = j) -> torch.Tensor:  # [batch, seq, d_sae]
            out = f.clone()
            out[..., j] *= 1 - EPS
            return out

        moved = logit_difference(tiny_lm, sae, gap, edit=scale) - clean
        assert -moved / EPS == pytest.approx(float(res.per_feature[j]), rel=0.02, abs=1e-4)


def test_scaling_the_error_term_moves_the_gap_by_its_attribution(tiny_lm, case):
    sae, target_gap, res = case
    seq = target_gap.prefix
    included = ~torch.isin(seq, special_token_ids(tiny_lm.tokenizer))  # [seq], as in the splice

    pos, target, other = target_gap.position, target_gap.target, target_gap.other

    def gap(eps: float) -> float:
        def residual(x: torch.Tensor) -> torch.Tensor:  # [1, seq, d_model]
            x_hat = sae.decode(sae.encode(x) * included[None, :, None].to(x.dtype))
            return x - eps * (x - x_hat)  # x_hat + (1 - eps) * error

        with torch.no_grad(), hook_resid_post(tiny_lm, sae.cfg.hook_layer, residual):
            logits = tiny_lm.model(seq[None]).logits[0, pos]
        return float(logits[target] - logits[other])

    error_attribution = float(res.error_attribution.sum())
    assert abs(error_attribution) > 1e-3
    assert gap(0.0) == pytest.approx(res.metric, abs=1e-5)
    assert -(gap(EPS) - gap(0.0)) / EPS == pytest.approx(error_attribution, rel=0.02, abs=1e-4)
