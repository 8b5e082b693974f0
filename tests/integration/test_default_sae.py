"""The shipped default SAE on the real model: identity, size, splice, quality smoke check, and a
full diagnosis of a failing addition."""

from __future__ import annotations

import torch

from diagnostics.diagnose import diagnose
from diagnostics.hooks import residuals_at
from diagnostics.options import DiagnosisOptions
from diagnostics.sae import load_sae
from diagnostics.sae.io import WEIGHTS_FILE, default_sae_dir
from diagnostics.splice import splice_sae

PROMPT = "Natalia sold 48 clips in April and 41 clips in May. How many clips did she sell in total?"


def test_shipped_files_and_identity(bundled_lm):
    directory = default_sae_dir()
    assert (directory / WEIGHTS_FILE).stat().st_size <= 30 * 2**20
    sae = load_sae("default")
    meta = sae.cfg.metadata
    assert sae.cfg.d_in == 576 and sae.cfg.d_sae >= 16 * 576
    assert meta.hook_name == "blocks.15.hook_resid_post"
    assert meta.model_name == bundled_lm.model_id
    assert meta.extra["distinct_training_tokens"] >= 5_000_000
    for key in ("l0", "explained_variance", "ce_loss_recovered", "ce_increase", "dead_fraction"):
        assert key in meta.extra["eval"]


def test_default_sae_splice_is_identity_and_reconstructs(bundled_lm):
    sae = load_sae("default")
    ids = bundled_lm.prompt_ids(PROMPT)[None]
    with torch.no_grad():
        clean = bundled_lm.model(ids).logits
        with splice_sae(bundled_lm, sae) as rec:
            spliced = bundled_lm.model(ids).logits
        x = residuals_at(bundled_lm, ids, 15)[0]
    assert (spliced - clean).abs().max().item() < 1e-4
    text = rec.included[0]
    f = rec.features[0][text]
    x, x_hat = x[text], sae.decode(f)
    ev = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert float(ev) > 0.6  # a short-prompt smoke check; the held-out floors are in docs/sae.md
    assert 5 < float((f > 0).sum(-1).float().mean()) < 100


def test_diagnose_a_failing_addition(bundled_lm):
    sae = load_sae("default")
    options = DiagnosisOptions(chat=False, max_new_tokens=12, control_draws=2)  # mode: worked
    for a, b in ((57, 68), (38, 47), (29, 86), (64, 79), (45, 96)):
        prompt = f"Q: What is {a} + {b}?\nA:"
        report = diagnose(bundled_lm, sae, prompt, str(a + b), options=options)
        if not report.correct:
            break
    assert not report.correct, "the model solved every probe; pick harder ones"
    d = report.divergence
    assert d is not None and d.metric < 0
    # its written sum ('57 + 68 = 135') or bare answer is the first error, and the divergence is
    # inside it: the result digits, not a restated operand
    fe = report.first_error
    assert fe is not None and fe.kind in ("calculation_slip", "wrong_operation")
    assert fe.found_by in ("calculator", "gold_step")
    assert fe.output_span[0] <= d.output_offset < fe.output_span[1]
    a = report.attribution
    assert a is not None
    # the share of |error| against all latents is at most its share against the strongest ones
    err, strongest = abs(a.error_attribution), sum(abs(t.attribution) for t in a.top_positive)
    strongest += sum(abs(t.attribution) for t in a.top_negative)
    assert err > 0 and strongest > 0 and 0 < a.error_share <= err / (err + strongest) + 1e-9
    # every flagged latent was ablated alone and moved the gap toward the expected token
    assert report.flagged and all(f.ablation_effect > 0 for f in report.flagged)
    # ranked by effect x excess activation; without an atlas the excess is the peak activation
    scores = [f.ablation_effect * f.fires_at[0].activation for f in report.flagged]  # peak first
    assert scores == sorted(scores, reverse=True)
    assert report.verification is not None and report.control is not None
    assert report.verdict.startswith("Wrong")
