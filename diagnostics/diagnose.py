"""Diagnose one prompt: where the model leaves the correct path, which SAE latents pushed it off,
and whether ablating them (against a matched random control) changes the outcome.

Steps (see DESIGN.md): generate and judge; teacher-force the expected path and find the
divergence token; attribute logit(expected) - logit(model's token) there to every latent at
every position (+ the SAE error term); flag latents that push toward the wrong token (screened by
attribution and activation, confirmed by ablating each alone) and are off the correct path;
zero-ablate them together and k matched random latents; classify the failure.
"""

from __future__ import annotations

import math
import re
import time
from typing import Protocol

import numpy as np
import torch
from pydantic import BaseModel, Field

from diagnostics.answers import AnswerMode, Judgment, judge
from diagnostics.attribution import attribute, logit_difference
from diagnostics.failure_classes import classify_failure
from diagnostics.language_model import LanguageModel
from diagnostics.report import (
    Attribution,
    ControlResult,
    Divergence,
    DriftReport,
    FeatureActivation,
    FlaggedFeature,
    Identity,
    Judgement,
    PathToken,
    Timings,
    TokenPath,
)
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.splice import splice_sae
from diagnostics.verification import (
    continue_with_edit,
    matched_random_features,
    run_ablation,
    single_ablation_effects,
)

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_DIGIT = re.compile(r"\d")


class DiagnosisOptions(BaseModel):
    """Knobs of one diagnosis (shared by the library, CLI and API)."""

    mode: AnswerMode = Field("gsm8k", description="How the answer is judged.")
    pattern: str | None = Field(None, max_length=500, description="Regex for mode 'regex'.")
    tolerance: float = Field(1e-6, ge=0, le=1, description="Relative tolerance for numbers.")
    chat: bool = Field(True, description="Wrap the prompt in the chat template.")
    max_new_tokens: int = Field(256, ge=1, le=1024, description="Generation budget.")
    top_k: int = Field(5, ge=1, le=50, description="Latents to flag and ablate together.")
    control_draws: int = Field(3, ge=0, le=20, description="Random matched control sets.")
    top_features_per_token: int = Field(3, ge=0, le=20, description="Features kept per token.")
    verify: bool = Field(True, description="Run the ablation checks (slower).")
    seed: int = Field(0, description="Seed of the random control.")


class Atlas(Protocol):
    """What the diagnosis needs from a feature atlas (diagnostics.atlas.FeatureAtlas)."""

    version: str
    density: np.ndarray  # [d_sae] fraction of tokens each latent fires on
    mean_activation: np.ndarray  # [d_sae] mean activation where it fires
    detection_auroc: np.ndarray  # [d_sae] label score, NaN where unscored

    def label(self, i: int) -> str: ...


def diagnose(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    prompt: str,
    expected: str,
    *,
    reference: str | None = None,
    atlas: Atlas | None = None,
    options: DiagnosisOptions | None = None,
    sae_id: str = "",
) -> DriftReport:
    """Diagnose `prompt` against `expected` (and an optional worked `reference` solution)."""
    opts = options or DiagnosisOptions()
    t0 = time.perf_counter()
    timings = Timings()
    warnings: list[str] = []
    tok = lm.tokenizer

    prompt_ids = lm.prompt_ids(prompt, chat=opts.chat)  # [P]
    gen_ids = lm.generate_ids(prompt_ids, max_new_tokens=opts.max_new_tokens)  # [G]
    output = tok.decode(gen_ids, skip_special_tokens=True)
    judgment = judge(output, expected, opts.mode, tolerance=opts.tolerance, pattern=opts.pattern)
    classified = classify_failure(prompt, output, judgment, reference)
    timings.generate_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    model_seq = torch.cat([prompt_ids, gen_ids])
    model_feats = _features(lm, sae, model_seq)  # [P+G, d_sae]
    cont_ids, cont_source = _expected_continuation(
        lm, gen_ids, output, judgment, expected, reference
    )
    exp_seq = torch.cat([prompt_ids, cont_ids])
    exp_feats, exp_logits = _features(lm, sae, exp_seq, with_logits=True)
    divergence = (
        None if judgment.correct else _divergence(tok, exp_seq, exp_logits, len(prompt_ids))
    )
    timings.paths_s = time.perf_counter() - t1

    identity = Identity(
        model_id=lm.model_id,
        hook_name=sae.cfg.metadata.hook_name,
        sae_id=sae_id or sae.cfg.metadata.extra.get("sae_id", ""),
        sae_d_sae=sae.cfg.d_sae,
        atlas_version=atlas.version if atlas is not None else None,
    )
    report = DriftReport(
        identity=identity,
        prompt=prompt,
        expected=expected,
        reference=reference,
        chat=opts.chat,
        judgement=Judgement(
            correct=judgment.correct,
            mode=judgment.mode,
            extracted=judgment.extracted,
            expected=judgment.expected,
            format_ok=judgment.format_ok,
        ),
        failure_class=classified.failure_class,
        failure_evidence=classified.evidence,
        model_path=_token_path(tok, model_seq, model_feats, len(prompt_ids), opts, start=0),
        expected_path=None
        if judgment.correct
        else _token_path(tok, exp_seq, exp_feats, len(prompt_ids), opts, start=len(prompt_ids)),
        divergence=divergence,
        verdict="",
        warnings=warnings,
    )
    if judgment.correct:
        report.verdict = f"Correct: the model answered {judgment.extracted}."
        return _finish(report, timings, t0)
    if divergence is None:
        warnings.append(
            f"the model's greedy predictions follow the expected path ({cont_source}) everywhere; "
            "no divergence token to attribute"
        )
        report.verdict = _verdict(report)
        return _finish(report, timings, t0)

    t2 = time.perf_counter()
    pos, target, other = (
        divergence.position - 1,
        divergence.expected_token_id,
        divergence.model_token_id,
    )
    attr = attribute(lm, sae, exp_seq, pos, target, other)
    per_feature = attr.per_feature  # [d_sae]
    report.attribution = Attribution(
        metric=attr.metric,
        total_feature_attribution=float(per_feature.sum()),
        error_attribution=float(attr.error_attribution.sum()),
        error_share=attr.error_share,
        top_positive=_top(per_feature, 10, largest=True),
        top_negative=_top(per_feature, 10, largest=False),
    )
    before = logit_difference(lm, sae, exp_seq, pos, target, other)  # the gap, no edit
    flagged = _flag(
        lm, sae, exp_seq, pos, target, other, before, attr, model_feats, exp_feats,
        len(prompt_ids), opts.top_k, atlas,
    )  # fmt: skip
    report.flagged = flagged
    _mark_flagged(report, model_feats, exp_feats, [f.feature for f in flagged])
    timings.attribution_s = time.perf_counter() - t2

    if opts.verify and flagged:
        t3 = time.perf_counter()
        _verify(lm, sae, report, exp_seq, pos, target, other, before, attr, expected, opts)
        timings.verification_s = time.perf_counter() - t3
    report.verdict = _verdict(report)
    return _finish(report, timings, t0)


def _finish(report: DriftReport, timings: Timings, t0: float) -> DriftReport:
    timings.total_s = time.perf_counter() - t0
    report.timings = timings
    return report


@torch.no_grad()
def _features(lm, sae, seq: torch.Tensor, with_logits: bool = False):
    """SAE features [seq, d_sae] along seq [seq] (and the logits [seq, vocab] if asked)."""
    with splice_sae(lm, sae) as rec:
        logits = lm.model(seq[None].to(lm.device)).logits[0]
    feats = rec.features[0].float()
    return (feats, logits) if with_logits else feats


def _expected_continuation(lm, gen_ids, output: str, judgment: Judgment, expected: str, reference):
    """Token ids of the expected continuation, and where it came from.

    With a reference solution: the reference (GSM8K calculator annotations removed). Otherwise the
    model's own output up to where its answer was taken from, with the expected answer in its
    place; with no answer to replace: the expected answer alone.
    """
    tok = lm.tokenizer
    if reference:
        text = _ANNOTATION.sub("", reference)
        return torch.tensor(tok(text, add_special_tokens=False)["input_ids"]), "reference"
    if judgment.span is None:
        return torch.tensor(tok(expected.strip(), add_special_tokens=False)["input_ids"]), "answer"
    start = judgment.span[0]
    # keep the model's own tokens that end before the answer, re-tokenise only the tail
    kept, text_so_far = 0, ""
    for i in range(len(gen_ids)):
        piece = tok.decode(gen_ids[: i + 1], skip_special_tokens=True)
        if len(piece) > start:
            break
        kept, text_so_far = i + 1, piece
    tail = output[len(text_so_far) : start] + expected.strip()
    tail_ids = tok(tail, add_special_tokens=False)["input_ids"]
    return torch.cat([gen_ids[:kept], torch.tensor(tail_ids, dtype=torch.long)]), "model_format"


def _divergence(tok, seq: torch.Tensor, logits: torch.Tensor, prompt_len: int) -> Divergence | None:
    """First numeric token of the continuation the model does not predict (else the first any)."""
    first_any = first_numeric = None
    for pos in range(prompt_len, len(seq)):
        predicted = int(logits[pos - 1].argmax())
        if predicted == int(seq[pos]):
            continue
        if first_any is None:
            first_any = pos
        if _DIGIT.search(tok.decode([int(seq[pos])])):
            first_numeric = pos
            break
    chosen = first_numeric if first_numeric is not None else first_any
    if chosen is None:
        return None
    row = logits[chosen - 1].float()
    probs = row.softmax(-1)
    exp_id, model_id = int(seq[chosen]), int(row.argmax())
    return Divergence(
        position=chosen,
        path_index=chosen - prompt_len,
        expected_token=tok.decode([exp_id]),
        expected_token_id=exp_id,
        model_token=tok.decode([model_id]),
        model_token_id=model_id,
        logit_expected=float(row[exp_id]),
        logit_model=float(row[model_id]),
        metric=float(row[exp_id] - row[model_id]),
        prob_expected=float(probs[exp_id]),
        prob_model=float(probs[model_id]),
        numeric=first_numeric is not None,
        first_any_position=first_any if first_any != chosen else None,
        context=tok.decode(seq[max(prompt_len, chosen - 12) : chosen]),
    )


def _top(values: torch.Tensor, n: int, *, largest: bool) -> list[FeatureActivation]:
    top = values.topk(min(n, len(values)), largest=largest)
    return [
        FeatureActivation(feature=int(i), activation=float(v))
        for v, i in zip(top.values, top.indices, strict=True)
        if (v > 0 if largest else v < 0)
    ]


SCREEN = 16
"""Candidates per screen: the most negative attributions, and the largest excess activations."""


def _flag(
    lm, sae, seq, pos, target, other, before, attr, model_feats, exp_feats, prompt_len, top_k, atlas
):
    """Latents that push the logit gap toward the wrong token and fire off the correct path,
    most spurious first.

    Candidates are screened (`screen_candidates`), each is zero-ablated alone (batched), and
    those whose ablation helps are ranked by `spuriousness_order`.

    A latent is on the correct path, and never flagged, when it is more active on the expected
    path than on the model's own. Otherwise it is off the path when it is more active on the
    model's path, or (with an atlas) fires here above its usual activation or is rare (density
    < 1%); without an atlas there is no baseline, and every latent not on the correct path counts.
    """
    per_feature = attr.per_feature  # [d_sae]
    usual_all = _usual_activation(atlas, per_feature)  # [d_sae]
    screen = screen_candidates(per_feature, attr.features, usual_all)
    effects = single_ablation_effects(
        lm, sae, seq, pos, target, other, screen, before=before
    )  # [m]
    excess = attr.features[:, screen].max(0).values - usual_all[screen]  # [m]
    flagged: list[FlaggedFeature] = []
    for r in spuriousness_order(effects, excess):
        j, effect = screen[r], float(effects[r])
        if len(flagged) >= top_k:
            break
        act_fail, act_exp = float(model_feats[:, j].max()), float(exp_feats[:, j].max())
        here = attr.features[:, j]  # [seq] activation at the attributed positions
        usual = float(atlas.mean_activation[j]) if atlas is not None else None
        density = float(atlas.density[j]) if atlas is not None else None
        if act_exp > act_fail * 1.05:
            continue
        if act_fail > act_exp * 1.05:
            reason = "more active on the model's path than on the expected one"
        elif atlas is None:
            reason = "not more active on the expected path (no atlas baseline)"
        elif float(here.max()) > usual:
            reason = f"fires at {float(here.max()):.2f}, above its usual {usual:.2f}"
        elif density < 0.01:
            reason = f"rare latent (fires on {density:.2%} of tokens)"
        else:
            continue
        fires = torch.nonzero(here > 0).squeeze(1)
        strongest = fires[torch.argsort(here[fires], descending=True)][:8]
        flagged.append(
            FlaggedFeature(
                feature=j,
                label=atlas.label(j) if atlas is not None else "",
                label_score=_label_score(atlas, j),
                attribution=float(per_feature[j]),
                ablation_effect=effect,
                activation_failing=act_fail,
                activation_expected=act_exp,
                atlas_mean_activation=usual,
                atlas_density=density,
                off_path_reason=reason,
                fires_at=[
                    FeatureActivation(feature=int(p), activation=float(here[p])) for p in strongest
                ],
                fires_at_tokens=[lm.tokenizer.decode([int(seq[p])]) for p in strongest],
                in_prompt=bool((fires < prompt_len).any()),
            )
        )
    return flagged


def screen_candidates(
    attribution: torch.Tensor, features: torch.Tensor, usual: torch.Tensor, n: int = SCREEN
) -> list[int]:
    """Latents worth ablating: the n most negative attributions [d_sae], then the n with the
    largest excess activation, peak over positions (features [seq, d_sae]) minus their usual
    activation [d_sae]; without duplicates, and only latents that push the wrong way or fire.

    The excess half catches what attribution misses: a latent firing far above its usual level
    can saturate its own gradient, so its attribution understates it."""
    peak = features.max(0).values  # [d_sae]
    negative = torch.argsort(attribution)[:n]
    unusual = torch.argsort(peak - usual, descending=True)[:n]
    return [
        j
        for j in dict.fromkeys([*negative.tolist(), *unusual.tolist()])
        if attribution[j] < 0 or peak[j] > 0
    ]


def spuriousness_order(effects: torch.Tensor, excess: torch.Tensor) -> list[int]:
    """Indices of the confirmed candidates, most spurious first.

    effects [m]: the logit-gap change when each candidate alone is zero-ablated (> 0: toward the
    expected token; only those are confirmed). excess [m]: its peak activation minus its usual
    activation (decoder rows have unit norm, so how far its write into the residual exceeds the
    usual). Ranked by effect x excess (excess floored at 0), ties by effect: a spurious latent
    must score on both; a big effect from an ordinary latent doing its usual job, or an anomaly
    that does not move the answer, is not the explanation sought.
    """
    score = effects * excess.clamp_min(0)  # [m]
    confirmed = torch.nonzero(effects > 0).squeeze(1).tolist()
    return sorted(confirmed, key=lambda r: (float(score[r]), float(effects[r])), reverse=True)


def _usual_activation(atlas: Atlas | None, like: torch.Tensor) -> torch.Tensor:
    """Each latent's mean activation where it fires [d_sae], from the atlas; without one there
    is no baseline, and it is 0 for all (the excess is then the activation itself)."""
    if atlas is None:
        return torch.zeros_like(like)
    return torch.as_tensor(atlas.mean_activation, dtype=like.dtype)


def _label_score(atlas: Atlas | None, j: int) -> float | None:
    if atlas is None:
        return None
    score = float(atlas.detection_auroc[j])
    return None if math.isnan(score) else score


def _token_path(
    tok, seq, feats, prompt_len: int, opts: DiagnosisOptions, *, start: int
) -> TokenPath:
    n = opts.top_features_per_token
    tokens = []
    for pos in range(start, len(seq)):
        row = feats[pos]
        top = row.topk(min(n, len(row))) if n else None
        tokens.append(
            PathToken(
                index=pos,
                token=tok.decode([int(seq[pos])]),
                token_id=int(seq[pos]),
                top_features=[
                    FeatureActivation(feature=int(i), activation=float(v))
                    for v, i in zip(top.values, top.indices, strict=True)
                    if v > 0
                ]
                if top is not None
                else [],
            )
        )
    return TokenPath(text=tok.decode(seq[prompt_len:], skip_special_tokens=True), tokens=tokens)


def _mark_flagged(report: DriftReport, model_feats, exp_feats, flagged: list[int]) -> None:
    """Record the flagged latents' activations on every token of both paths (for the heatmap)."""
    for path, feats in ((report.model_path, model_feats), (report.expected_path, exp_feats)):
        if path is None:
            continue
        for token in path.tokens:
            token.flagged = [
                FeatureActivation(feature=j, activation=float(feats[token.index, j]))
                for j in flagged
                if feats[token.index, j] > 0
            ]


def _verify(lm, sae, report, exp_seq, pos, target, other, before, attr, expected, opts) -> None:
    """Ablate the flagged latents together, and matched random sets of latents (the control)."""
    flagged = [f.feature for f in report.flagged]
    prefix = exp_seq[: pos + 1]  # everything before the divergence token
    prompt_len = report.divergence.position - report.divergence.path_index
    prefix_text = lm.tokenizer.decode(exp_seq[prompt_len : pos + 1], skip_special_tokens=True)

    def metric_fn(edit) -> float:
        return logit_difference(lm, sae, exp_seq, pos, target, other, edit=edit)

    def continuation_fn(edit) -> tuple[str, bool]:
        new = continue_with_edit(lm, sae, prefix, edit, opts.max_new_tokens)
        text = lm.tokenizer.decode(new, skip_special_tokens=True)
        verdict = judge(
            prefix_text + text, expected, opts.mode, tolerance=opts.tolerance, pattern=opts.pattern
        )
        return text, verdict.correct

    report.verification = run_ablation(flagged, before, metric_fn, continuation_fn)
    activation = attr.features.sum(0)  # [d_sae]
    gen = torch.Generator().manual_seed(opts.seed)
    draws = matched_random_features(activation, flagged, opts.control_draws, generator=gen)
    results = [run_ablation(d, before, metric_fn, continuation_fn) for d in draws]
    if results:
        changes = torch.tensor([r.metric_change for r in results])
        report.control = ControlResult(
            draws=results,
            median_metric_change=float(changes.median()),
            fix_rate=sum(r.fixed for r in results) / len(results),
        )


def _verdict(report: DriftReport) -> str:
    j, d = report.judgement, report.divergence
    head = f"Wrong ({report.failure_class.value.replace('_', ' ')}): answered {j.extracted}, expected {j.expected}."
    if d is None:
        return head + " No divergence token was found on the expected path."
    parts = [
        head,
        f"At token {d.path_index} of the expected path the model preferred {d.model_token!r} "
        f"(p={d.prob_model:.2f}) over {d.expected_token!r} (p={d.prob_expected:.2f}).",
    ]
    if report.flagged:
        names = ", ".join(
            f"#{f.feature}" + (f" '{f.label}'" if f.label else "") for f in report.flagged[:3]
        )
        parts.append(f"Strongest latents pushing toward the wrong token: {names}.")
    v, c = report.verification, report.control
    if v is not None:
        ctrl = f" vs {c.median_metric_change:+.2f} for matched random latents" if c else ""
        fixed = "fixed the answer" if v.fixed else "did not fix the answer"
        parts.append(
            f"Ablating the {len(v.features)} flagged latents changed the logit gap by "
            f"{v.metric_change:+.2f}{ctrl}, and {fixed}."
        )
    return " ".join(parts)
