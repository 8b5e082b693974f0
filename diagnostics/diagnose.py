"""Diagnose one prompt: where the model's reasoning first goes wrong, which SAE latents pushed it
there, and whether ablating them (against a matched random control) changes the outcome.

Steps (see docs/diagnosis.md): generate (or take the given output) and judge it;
find the first wrong step (`first_error`) and correct it; the corrected path shares the model's
tokens up to the divergence (`paths`); attribute logit(corrected token) - logit(model's token)
there to every latent at every position (+ the SAE error term, `attribution`); flag the latents
that push toward the wrong token and are off the correct path (`flagging`); ablate them together
and matched random latents (`verification`); classify the failure and write the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from diagnostics.answers import Judgment, answer_is_final, judge, to_float
from diagnostics.attribution import LogitGap, attribute
from diagnostics.context import context_attribution
from diagnostics.failure_classes import FailureClass, classify_failure
from diagnostics.first_error import correction_for, locate_first_error
from diagnostics.flagging import Atlas, PathFeatures, flag_latents
from diagnostics.gold_solution import gold_for
from diagnostics.language_model import LanguageModel
from diagnostics.null import EVIDENCE_PERCENTILE, draw_null, null_record
from diagnostics.options import DiagnosisOptions
from diagnostics.paths import corrected_path, divergence_at, token_char_spans
from diagnostics.prompts import last_question
from diagnostics.report import DriftReport, Identity, JudgedAnswer
from diagnostics.report_records import (
    attribution_record,
    first_error_record,
    mark_flagged,
    token_path,
)
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.splice import splice_sae
from diagnostics.stage_clock import STOP_CHECK, Cancelled, StageClock, now
from diagnostics.trace.tracer import Tracer
from diagnostics.verdict import caveats, location_uncertain, write_verdict
from diagnostics.verification import Verifier, control_summary, matched_random_features


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
    output: str | None = None,
    tracer: Tracer | None = None,
) -> DriftReport:
    """Diagnose `prompt` against `expected` (and an optional worked `reference` solution).

    `output`: diagnose this response (from an eval run, a sampled run, another server) as the
    model's path instead of generating one; the report says whether greedy decoding gives it.
    `tracer`: the transcoder set that traces the failure's attribution graph (options.trace)."""
    opts = options or DiagnosisOptions()
    started = now()
    prompt_ids = lm.prompt_ids(prompt, chat=opts.chat)  # [P]
    if output is None:
        out_ids = lm.generate_ids(
            prompt_ids, max_new_tokens=opts.max_new_tokens, stop=stop_rule(opts)
        )  # [G]
    else:
        out_ids = _tokens_of(lm, output)
    case = Problem(prompt, expected, reference, output)
    source = "greedy" if output is None else "given"
    return _diagnose_path(
        lm, sae, case, prompt_ids, out_ids, source, atlas, opts, sae_id, started, tracer
    )


@dataclass(frozen=True)
class Problem:
    """One problem to diagnose: the prompt, its expected answer, optionally a worked reference
    solution and a response to diagnose instead of generating one."""

    prompt: str
    expected: str
    reference: str | None = None
    output: str | None = None


def diagnose_batch(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    problems: list[Problem],
    *,
    atlas: Atlas | None = None,
    options: DiagnosisOptions | None = None,
    sae_id: str = "",
    batch_size: int = 8,
    on_report: Callable[[int, DriftReport | Exception], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    tracer: Tracer | None = None,
) -> list[DriftReport | Exception]:
    """Diagnose many problems: the answers are generated in left-padded batches (greedy, each row
    stopping on its own), then each problem is diagnosed on its answer. A problem that fails
    gives its exception in its place and never fails the others; `on_report(i, result)` is
    called as each finishes (for progress). `should_stop(i)` is asked at each stage boundary of
    problem i: True ends it there with a Cancelled in its place."""
    opts = options or DiagnosisOptions()
    results: list[DriftReport | Exception | None] = [None] * len(problems)
    prompts: dict[int, torch.Tensor] = {}
    for i, p in enumerate(problems):
        try:
            prompts[i] = lm.prompt_ids(p.prompt, chat=opts.chat)
        except Exception as err:  # noqa: BLE001 - isolated per problem, reported in its place
            results[i] = err
    pending = [i for i in prompts if problems[i].output is None]
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        w0, c0 = now()
        rows = lm.generate_rows(
            [prompts[i] for i in chunk], max_new_tokens=opts.max_new_tokens, stop=stop_rule(opts)
        ).ids
        w1, c1 = now()
        share = ((w1 - w0) / len(chunk), (c1 - c0) / len(chunk))  # each row's part of the batch
        for i, ids in zip(chunk, rows, strict=True):
            _finish_one(i, lambda ids=ids, i=i, share=share: _diagnose_path(
                lm, sae, problems[i], prompts[i], ids, "greedy", atlas, opts, sae_id,
                tuple(t - s for t, s in zip(now(), share, strict=True)), tracer,
            ), results, on_report, should_stop)  # fmt: skip
    for i in prompts:
        if problems[i].output is not None:
            _finish_one(i, lambda i=i: _diagnose_path(
                lm, sae, problems[i], prompts[i], _tokens_of(lm, problems[i].output), "given",
                atlas, opts, sae_id, now(), tracer,
            ), results, on_report, should_stop)  # fmt: skip
    return results  # type: ignore[return-value]


def _finish_one(i, run, results, on_report, should_stop=None) -> None:
    token = STOP_CHECK.set(None if should_stop is None else lambda: should_stop(i))
    try:
        if should_stop is not None and should_stop(i):
            raise Cancelled("cancelled before its diagnosis started")
        results[i] = run()
    except Exception as err:  # noqa: BLE001 - isolated per problem, reported in its place
        results[i] = err
    finally:
        STOP_CHECK.reset(token)
    if on_report is not None:
        on_report(i, results[i])


def _tokens_of(lm: LanguageModel, output: str) -> torch.Tensor:
    return torch.tensor(
        lm.tokenizer(output, add_special_tokens=False)["input_ids"], dtype=torch.long
    )


def _diagnose_path(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    case: Problem,
    prompt_ids: torch.Tensor,
    out_ids: torch.Tensor,
    source: str,
    atlas: Atlas | None,
    opts: DiagnosisOptions,
    sae_id: str,
    started: tuple[float, float],
    tracer: Tracer | None = None,
) -> DriftReport:
    """The diagnosis of the model's path prompt_ids [P] + out_ids [G]."""
    prompt, expected, reference = case.prompt, case.expected, case.reference
    clock = StageClock(started)
    warnings: list[str] = []
    tok = lm.tokenizer
    output = tok.decode(out_ids, skip_special_tokens=True)
    judgment = _judge(output, expected, opts)
    step_error = None
    if not judgment.correct:
        gold = gold_for(prompt, expected, reference)
        step_error = locate_first_error(
            last_question(prompt), output, to_float(expected), gold, judgment.span
        )
    classified = classify_failure(output, judgment, step_error)
    clock.add_since("generate", started)

    t1 = now()
    P = len(prompt_ids)
    model_seq = torch.cat([prompt_ids, out_ids])  # [P + G]
    model_feats, model_logits = _features(lm, sae, model_seq)
    spans = token_char_spans(tok, out_ids)
    report = DriftReport(
        identity=Identity(
            model_id=lm.model_id,
            hook_name=sae.cfg.metadata.hook_name,
            sae_id=sae_id or sae.cfg.metadata.extra.get("sae_id", ""),
            sae_d_sae=sae.cfg.d_sae,
            atlas_version=atlas.version if atlas is not None else None,
        ),
        prompt=prompt,
        expected=expected,
        reference=reference,
        chat=opts.chat,
        output_source=source,
        greedy_reproduces=_is_greedy(model_logits, out_ids, P) if source == "given" else None,
        judgement=JudgedAnswer(
            correct=judgment.correct,
            mode=judgment.mode,
            extracted=judgment.extracted,
            expected=judgment.expected,
            format_ok=judgment.format_ok,
        ),
        failure_class=classified.failure_class,
        failure_evidence=classified.evidence,
        model_path=token_path(tok, model_seq, model_feats, P, opts, start=0),
        first_error=first_error_record(step_error),
        verdict="",
        warnings=warnings,
    )
    if judgment.correct:
        report.verdict = write_verdict(report)
        return _finish(report, clock)

    correction = correction_for(step_error, output, judgment.span, expected, warnings)
    corrected = corrected_path(tok, out_ids, output, correction) if correction else None
    if corrected is None:
        warnings.append(
            "the corrected path does not differ from the model's own; nothing to attribute"
        )
        report.verdict = write_verdict(report)
        return _finish(report, clock)
    exp_seq = torch.cat([prompt_ids, corrected.ids])
    exp_feats, _ = _features(lm, sae, exp_seq)
    divergence = divergence_at(tok, P, out_ids, corrected, model_logits, spans)
    report.divergence = divergence
    report.expected_path = token_path(tok, exp_seq, exp_feats, P, opts, start=P)
    clock.add_since("paths", t1)

    with clock.stage("attribution"):
        gap, attr, flagging = _attribute(lm, sae, report, model_seq, divergence, model_feats,
                                         exp_feats, P, atlas, opts)  # fmt: skip

    if opts.verify and report.flagged:
        _verify(lm, sae, report, clock, gap, attr, flagging, out_ids, expected, opts)
    if opts.context:
        with clock.stage("context"):
            report.context = context_attribution(
                lm, prompt, opts.chat, gap, out_ids[: divergence.path_index], attr,
                judge_fn=lambda text: _answer_of(_judge(text, expected, opts)),
                stop=stop_rule(opts), max_new_tokens=opts.max_new_tokens,
            )  # fmt: skip
        _classify_distraction(report)
    if opts.trace:
        _trace(lm, tracer, report, prompt_ids, out_ids, expected, opts)
    report.warnings.extend(caveats(report))
    report.verdict = write_verdict(report)
    return _finish(report, clock)


def _attribute(lm, sae, report, model_seq, divergence, model_feats, exp_feats, P, atlas, opts):
    """The logit gap at the divergence, its attribution to every latent, and the flagged set
    (recorded on the report)."""
    gap = LogitGap(
        model_seq, divergence.position - 1, divergence.expected_token_id, divergence.model_token_id
    )
    attr = attribute(lm, sae, gap)
    paths = PathFeatures(model=model_feats, corrected=exp_feats, prompt_len=P)
    flagging = flag_latents(lm, sae, gap, attr, paths, top_k=opts.top_k, atlas=atlas)
    report.flagged = flagging.flagged
    report.attribution = attribution_record(attr, flagging, atlas)
    mark_flagged(report, model_feats, exp_feats, report.flagged_ids)
    return gap, attr, flagging


def _verify(lm, sae, report, clock, gap, attr, flagging, out_ids, expected, opts) -> None:
    """The selection-matched null, the plain control, and the flagged set's and some null
    draws' ablated continuations (one batch); the evidence call."""
    divergence = report.divergence
    tok = lm.tokenizer
    with clock.stage("null"):
        gen = torch.Generator().manual_seed(opts.seed)
        null = draw_null(flagging, opts.null_draws, generator=gen)
        flagged_change = float(flagging.ablations.set_effects([report.flagged_ids])[0])
        plain = matched_random_features(
            attr.features.sum(0), report.flagged_ids, opts.control_draws, generator=gen
        )
        report.control = control_summary(plain, flagging.ablations.set_effects(plain))
    null_s = clock.timings.cpu_s["null"]
    continued = [d for d, s in enumerate(null.sets) if s][: opts.null_continuations]
    verifier = Verifier(
        lm=lm,
        sae=sae,
        gap=gap,
        before=attr.metric,
        prefix_text=tok.decode(out_ids[: divergence.path_index], skip_special_tokens=True),
        judge_fn=lambda text: _judge(text, expected, opts).correct,
        stop=stop_rule(opts),
        max_new_tokens=continuation_budget(len(out_ids) - divergence.path_index, opts),
    )
    with clock.stage("continuations"):
        runs = verifier.run([report.flagged_ids, *(null.sets[d] for d in continued)])
    report.verification = runs[0]
    if len(null.sets):
        share = clock.timings.cpu_s["continuations"] * len(continued) / len(runs)
        report.null = null_record(
            null, dict(zip(continued, runs[1:], strict=True)), flagged_change,
            seconds=null_s + share,
        )  # fmt: skip
        beats = flagged_change > 0 and report.null.percentile >= EVIDENCE_PERCENTILE
        # evidence is supported only at a location that is itself checked or derived
        report.evidence = "supported" if beats and not location_uncertain(report) else "weak"


def _trace(lm, tracer, report, prompt_ids, out_ids, expected, opts) -> None:
    """The attribution graph of the failure at the divergence (diagnostics.trace)."""
    if tracer is None:
        report.warnings.append("tracing was asked for, but no transcoder set was given")
        return
    from diagnostics.trace.run import FailureCase

    d = report.divergence
    if d.position > tracer.config.max_tokens:
        report.warnings.append(
            f"not traced: {d.position} tokens up to the divergence, more than the trace's "
            f"limit of {tracer.config.max_tokens}"
        )
        return
    case = FailureCase(
        prompt=report.prompt,
        prompt_ids=prompt_ids,
        out_ids=out_ids,
        output=report.model_path.text,
        divergence=d,
        judge_fn=lambda text: _judge(text, expected, opts).correct,
        stop=stop_rule(opts),
        max_new_tokens=continuation_budget(len(out_ids) - d.path_index, opts),
    )
    report.trace = tracer.trace(lm, case)


def continuation_budget(remaining: int, opts: DiagnosisOptions) -> int:
    """Tokens an ablated continuation may take: the model's own output after the divergence
    plus half as much again (at least 32), within the generation budget. A continuation whose
    answer is final stops earlier (stop_rule); one that runs on past this has not reached one
    where the model did, and is judged on what it wrote."""
    return max(1, min(opts.max_new_tokens, remaining + max(32, remaining // 2)))


def stop_rule(opts: DiagnosisOptions):
    """Generation stops once the answer its judge reads is final (answers.answer_is_final)."""
    mode = opts.answer_mode
    return lambda text: answer_is_final(text, mode)


def _answer_of(j: Judgment) -> tuple[bool, str | None]:
    return j.correct, j.extracted


def _classify_distraction(report: DriftReport) -> None:
    """A sentence whose deletion fixes the answer was not needed for it (the model solves the
    problem without it): the failure is a distraction."""
    ctx = report.context
    fixing = [e for e in ctx.effects if e.kind == "sentence" and e.fixed] if ctx else []
    if ctx is None or ctx.responsible_span is None or not fixing:
        return
    best = next(e for e in fixing if e.span == ctx.responsible_span)
    report.failure_class = FailureClass.distraction
    report.failure_evidence = (
        f"without the sentence '{best.text}' the model answers {best.answer} (right); "
        f"{report.failure_evidence}"
    )


def _judge(output: str, expected: str, opts: DiagnosisOptions) -> Judgment:
    return judge(output, expected, opts.answer_mode, tolerance=opts.tolerance, pattern=opts.pattern)


def _is_greedy(logits: torch.Tensor, out_ids: torch.Tensor, prompt_len: int) -> bool:
    """Is every output token the model's top prediction? (logits [P + G, vocab])"""
    if not len(out_ids):
        return True
    predicted = logits[prompt_len - 1 : prompt_len - 1 + len(out_ids)].argmax(-1).cpu()
    return bool((predicted == out_ids).all())


def _finish(report: DriftReport, clock: StageClock) -> DriftReport:
    report.timings = clock.finish()
    return report


@torch.no_grad()
def _features(lm: LanguageModel, sae: SparseAutoencoder, seq: torch.Tensor):
    """SAE features [seq, d_sae] and logits [seq, vocab] along seq [seq], SAE spliced."""
    with splice_sae(lm, sae) as rec:
        logits = lm.model(seq[None].to(lm.device)).logits[0]
    return rec.features[0].float(), logits
