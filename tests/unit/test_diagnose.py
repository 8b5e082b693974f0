"""The diagnosis engine on a tiny random Llama with a random SAE: attribution against real
ablations, a planted latent recovered, the report's contents and JSON round trip."""

import pytest
import torch

from diagnostics.attribution import LogitGap, attribute, logit_difference
from diagnostics.diagnose import Problem, diagnose, diagnose_batch
from diagnostics.flagging import screen_candidates, spuriousness_order
from diagnostics.hooks import hook_resid_post
from diagnostics.options import DiagnosisOptions
from diagnostics.report import DriftReport
from diagnostics.verification import AblationScreen, matched_random_features, zero_ablation
from tests.conftest import make_firing_sae

PROMPT = "what is 2 plus 3 ?"


@pytest.fixture(scope="module")
def sae(tiny_lm):
    return make_firing_sae(tiny_lm, 128, seed=3)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_attribution_predicts_single_latent_ablation(tiny_lm, sae):
    ids = tiny_lm.prompt_ids(PROMPT, chat=False)
    pos = len(ids) - 1
    logits = tiny_lm.model(ids[None]).logits[0, pos]
    target, other = int(logits.argsort()[-2]), int(logits.argmax())
    gap = LogitGap(ids, pos, target, other)
    res = attribute(tiny_lm, sae, gap)
    clean = logit_difference(tiny_lm, sae, gap)
    assert res.metric == pytest.approx(clean, abs=1e-4)
    err, feats = abs(float(res.error_attribution.sum())), float(res.per_feature.abs().sum())
    assert err > 0 and feats > 0  # a random SAE leaves an error term; its latents carry some
    assert res.error_share == pytest.approx(err / (err + feats))
    top = res.per_feature.abs().topk(15).indices
    effects = torch.tensor(
        [logit_difference(tiny_lm, sae, gap, edit=zero_ablation([int(j)])) - clean for j in top]
    )
    # zero-ablating a latent removes its contribution: change ~ -attribution (a linear estimate
    # of a large intervention: the order holds, and the sign where the attribution is large)
    assert _spearman(-res.per_feature[top], effects) > 0.8
    assert (torch.sign(effects[:8]) == torch.sign(-res.per_feature[top[:8]])).all()


def test_screened_single_ablations_equal_full_forwards_one_at_a_time(tiny_lm, sae):
    ids = tiny_lm.prompt_ids(PROMPT, chat=False)
    pos = len(ids) - 1
    gap = LogitGap(ids, pos, 5, 9)
    attr = attribute(tiny_lm, sae, gap)
    active = torch.nonzero(attr.features.sum(0) > 0).squeeze(1).tolist()
    silent = next(j for j in range(128) if j not in active)
    features = active[:5] + [silent]  # active latents, and one that does not fire (no effect)
    screen = AblationScreen(tiny_lm, sae, gap, attr.residual, attr.features, before=attr.metric)
    screen.batch_size = 2
    batched = screen.effects(features)
    assert screen._upper.exact  # the upper-layers path reproduced the full forward
    one_by_one = [
        logit_difference(tiny_lm, sae, gap, edit=zero_ablation([j])) - attr.metric for j in features
    ]
    assert batched.tolist() == pytest.approx(one_by_one, abs=1e-4)
    assert all(abs(e) > 1e-4 for e in one_by_one[:5]) and batched[-1] == pytest.approx(0, abs=1e-6)


def test_matched_controls_avoid_flagged_and_match_activation():
    activation = torch.tensor([0.0, 5.0, 4.9, 0.1, 5.1, 3.0, 0.0, 4.8])
    draws = matched_random_features(
        activation, [1], 20, generator=torch.Generator().manual_seed(0), pool=2
    )
    assert len(draws) == 20
    assert {d[0] for d in draws} <= {2, 4}  # the two nearest in log-activation, never 1 itself


def test_planted_latent_is_flagged_and_its_ablation_fixes_the_answer(tiny_lm, sae):
    opts = DiagnosisOptions(mode="exact", chat=False, max_new_tokens=1, control_draws=3)
    base = tiny_lm.generate(PROMPT, chat=False, max_new_tokens=1).text
    planted = 17

    def plant(alpha: float):  # on the text tokens; the BOS (position 0) is outside the SAE
        def add(x: torch.Tensor) -> torch.Tensor:  # [batch, seq, d_model]
            mask = (torch.arange(x.shape[1]) > 0).to(x.dtype)[:, None]  # [seq, 1]
            return x + alpha * mask * sae.W_dec[planted]

        return hook_resid_post(tiny_lm, 0, add)

    for alpha in (0.5, 1.0, 2.0, 4.0):
        with plant(alpha):
            flipped = tiny_lm.generate(PROMPT, chat=False, max_new_tokens=1).text
        if flipped != base:
            break
    assert flipped != base
    with plant(alpha):
        report = diagnose(tiny_lm, sae, PROMPT, base, options=opts)
    assert not report.correct and report.divergence is not None
    assert report.divergence.metric < 0
    assert report.flagged[0].feature == planted
    assert report.verification.fixed and report.verification.metric_change > 0
    assert report.control is not None and len(report.control.draws) == 3
    assert report.verification.metric_change > 3 * abs(report.control.median_metric_change)
    assert planted not in {f for d in report.control.draws for f in d.features}
    # the selection-matched null repeats the screen-and-select on random latents: the planted
    # latent beats it, and no null draw ever contains a screened candidate
    null = report.null
    assert null.kind == "selection_matched" and len(null.draws) == opts.null_draws
    assert null.candidates_per_draw >= len(report.flagged)
    assert null.pool > 0
    assert null.percentile >= 90 and report.evidence == "supported"
    assert planted not in {f for d in null.draws for f in d.features}
    assert sum(d.fixed is not None for d in null.draws) <= opts.null_continuations
    a = report.attribution  # the linear decomposition adds up to the exact gap
    assert a.metric == pytest.approx(
        a.baseline + a.total_feature_attribution + a.error_attribution + a.nonlinear
    )
    assert len(a.per_position) == report.divergence.position  # the prefix the gap is read at
    assert sum(a.per_position) == pytest.approx(
        a.total_feature_attribution + a.error_attribution, rel=1e-4, abs=1e-4
    )
    # the next-token distribution at the divergence: the greedy choice first, probabilities kept
    top = report.divergence.top_next
    assert len(top) == 5 and [t.prob for t in top] == sorted((t.prob for t in top), reverse=True)
    assert top[0].token_id == report.divergence.model_token_id
    assert top[0].prob == pytest.approx(report.divergence.prob_model)
    # the flagged latents are marked on the tokens where they fire
    assert any(t.flagged for t in report.model_path.tokens)
    again = DriftReport.model_validate_json(report.model_dump_json())
    assert again == report


def test_correct_answer_gets_a_short_report(tiny_lm, sae):
    base = tiny_lm.generate(PROMPT, chat=False, max_new_tokens=1).text
    report = diagnose(
        tiny_lm,
        sae,
        PROMPT,
        base,
        options=DiagnosisOptions(mode="exact", chat=False, max_new_tokens=1),
    )
    assert report.correct and report.failure_class == "none"
    assert report.divergence is None and report.flagged == [] and report.expected_path is None
    assert report.verdict.startswith("Correct") and report.timings.total_s > 0


def test_screen_takes_unusually_active_latents_not_just_big_ones():
    attribution = torch.zeros(40)
    attribution[[3, 4]] = torch.tensor([-2.0, -1.0])  # push toward the wrong token
    attribution[7] = 0.5  # a saturated latent: its gradient points the other way
    features = torch.zeros(6, 40)  # [seq, d_sae]
    features[:, 10:20] = 30.0  # big everywhere, as usual for them
    features[5, 7] = 50.0  # 49 above its usual level, at one position
    features[2, 21] = 2.0  # far above its tiny usual level, but a small write
    usual = torch.ones(40)
    usual[10:20] = 40.0
    usual[21] = 0.01
    screen = screen_candidates(attribution, features, usual, n=2)
    # attribution first, then by excess activation: latent 7 before 21 and the ordinary 10-19
    assert screen == [3, 4, 7, 21]


def test_spurious_latents_must_both_move_the_answer_and_fire_above_usual():
    effects = torch.tensor([3.0, 0.5, -1.0, 1.0, 0.2])  # ablating each alone: gap change
    excess = torch.tensor([0.5, 40.0, 100.0, -2.0, -1.0])  # peak minus usual activation
    # 1: a modest effect from a far-above-usual latent beats 0 (big effect, ordinary level);
    # 2 is anomalous but ablating it hurts: never confirmed; 3 and 4 have no excess: by effect
    assert spuriousness_order(effects, excess) == [1, 0, 3, 4]


def test_a_batch_diagnoses_each_problem_as_alone_and_isolates_failures(tiny_lm, sae):
    opts = DiagnosisOptions(mode="exact", chat=False, max_new_tokens=3, null_draws=4)
    problems = [
        Problem("what is 2 plus 3 ?", "5"),
        Problem("how many apples did she sell ?", "7"),
        Problem("what is 1 plus 1 ?", "2", output=""),  # a given, empty response
        Problem("what is 4 times 2 ?", "8"),
    ]
    seen = []
    batch = diagnose_batch(
        tiny_lm, sae, problems, options=opts, batch_size=3, on_report=lambda i, r: seen.append(i)
    )
    assert sorted(seen) == [0, 1, 2, 3]
    for p, got in zip(problems, batch, strict=True):
        alone = diagnose(tiny_lm, sae, p.prompt, p.expected, options=opts, output=p.output)
        assert got.model_path == alone.model_path and got.verdict == alone.verdict
        assert got.output_source == ("given" if p.output is not None else "greedy")
    assert batch[2].model_path.text == "" and not batch[2].correct
    broken = diagnose_batch(tiny_lm, sae, [Problem("what is 2 plus 3 ?", "5")],
                            options=opts.model_copy(update={"mode": "regex"}))  # fmt: skip
    assert isinstance(broken[0], ValueError)  # regex mode without a pattern, reported in place
