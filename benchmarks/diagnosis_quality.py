"""Does the diagnosis find the right latents? Three checks on the bundled model and shipped SAE.

a. Arithmetic probes: two-digit additions in a Q/A format calibrated so the model is right about a
   third of the time; the failures are diagnosed.
b. Planted failures: on probes the model gets right, a random live latent's decoder direction is
   added to the residual stream on the last prompt token, growing until the answer flips; the
   diagnosis should rank the planted latent first. Recall@1/@5 and MRR against ranking by
   attribution, by raw activation, and chance. Planted at the SAE's own layer (15: the ground
   truth holds by construction) and one block upstream (14: block 15 processes the plant before
   the SAE reads it, so part of its effect can bypass the latent; `carried` says whether
   subtracting the plant again at the SAE's layer restores the answer, and recall is also given
   over the carried plants). Recall is also given over the `confident` probes, those the model
   answers with a logit margin of at least 1 on every answer token: on a near-tie a tenth of the
   residual norm in any direction flips the answer, and the plant is not its only cause.
c. Natural failures: the fix rate and logit-gap gain from zero-ablating the top-k flagged latents
   vs k matched random latents, and the Spearman correlation between attribution and the measured
   single-latent ablation effect.
d. Latency of full GSM8K diagnoses (chat, reference solution), split by stage.

    .venv/bin/python benchmarks/diagnosis_quality.py --failures 100 --planted 40 --gsm8k 3

Writes benchmarks/results/diagnosis_quality.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diagnostics.answers import judge
from diagnostics.atlas import FeatureAtlas
from diagnostics.attribution import LogitGap, attribute
from diagnostics.diagnose import diagnose
from diagnostics.hooks import hook_resid_post, residuals_at
from diagnostics.language_model import Generation, special_token_ids
from diagnostics.model_loading import load_model
from diagnostics.options import DiagnosisOptions
from diagnostics.report import DriftReport
from diagnostics.sae import load_sae
from diagnostics.verification import AblationScreen

RESULTS = Path(__file__).parent / "results" / "diagnosis_quality.json"
GSM8K_TEST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gsm8k" / "test.jsonl"
FIRST_NUMBER = r"^\s*(-?\d+)"


@dataclass(frozen=True)
class ProbeFormat:
    name: str
    template: str  # with {a} and {b}
    chat: bool


FORMATS = [
    ProbeFormat("qa-0shot", "Q: What is {a} + {b}?\nA:", chat=False),
    ProbeFormat(
        "qa-2shot",
        "Q: What is 12 + 35?\nA: 47\nQ: What is 26 + 51?\nA: 77\nQ: What is {a} + {b}?\nA:",
        False,
    ),
    ProbeFormat("eq-2shot", "12 + 35 = 47\n26 + 51 = 77\n{a} + {b} =", chat=False),
    ProbeFormat("chat", "What is {a} + {b}? Reply with the number only.", chat=True),
]


def problems(n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(n)]


def probe_options(fmt: ProbeFormat, verify: bool = True) -> DiagnosisOptions:
    return DiagnosisOptions(
        mode="regex",
        pattern=FIRST_NUMBER,
        chat=fmt.chat,
        max_new_tokens=6,
        verify=verify,
        context=False,  # which prompt sentence carries it is measured on the distraction set
    )


def probe_answer(lm, fmt: ProbeFormat, a: int, b: int) -> tuple[Generation, bool]:
    """The model's greedy answer to a + b, and whether its first number is right."""
    gen = lm.generate(fmt.template.format(a=a, b=b), chat=fmt.chat, max_new_tokens=6)
    return gen, judge(gen.text, str(a + b), "regex", pattern=FIRST_NUMBER).correct


def answer_of(lm, fmt: ProbeFormat, a: int, b: int) -> bool:
    """Does the model answer a + b correctly (greedy, first number of the output)?"""
    return probe_answer(lm, fmt, a, b)[1]


@torch.no_grad()
def answer_margin(lm, fmt: ProbeFormat, a: int, b: int) -> float | None:
    """How surely the model answers a + b: None when it is wrong, else the smallest logit margin
    of the answer's tokens over their runners-up.

    The answer's tokens spell its first number, plus the token that ends it (a near-tie there
    would have gone on to a longer, wrong number).
    """
    gen, correct = probe_answer(lm, fmt, a, b)
    if not correct:
        return None
    out = gen.output_ids  # [n_new]
    n = next(
        n
        for n in range(1, len(out) + 1)
        if (m := re.match(FIRST_NUMBER, lm.tokenizer.decode(out[:n], skip_special_tokens=True)))
        and m.group(1) == str(a + b)
    )
    n = min(n + 1, len(out))
    ids = torch.cat([gen.prompt_ids, out]).to(lm.device)  # [P + n_new]
    p = len(gen.prompt_ids)
    logits = lm.model(ids[None]).logits[0, p - 1 : p - 1 + n].float()  # [n, vocab]
    chosen = out[:n, None].to(lm.device)  # [n, 1]
    rival = logits.scatter(1, chosen, float("-inf")).max(1).values  # [n]
    return float((logits.gather(1, chosen)[:, 0] - rival).min())


def calibrate(lm, n: int, seed: int) -> tuple[ProbeFormat, dict[str, float]]:
    """The format whose accuracy is closest to 1/3."""
    accuracy = {}
    for fmt in FORMATS:
        accuracy[fmt.name] = statistics.mean(answer_of(lm, fmt, a, b) for a, b in problems(n, seed))
    best = min(FORMATS, key=lambda f: abs(accuracy[f.name] - 1 / 3))
    return best, accuracy


def divergence_gap(report: DriftReport) -> LogitGap:
    """The report's logit gap: read on the model's own path, up to the divergence."""
    d = report.divergence
    seq = torch.tensor([t.token_id for t in report.model_path.tokens])
    return LogitGap(seq, d.position - 1, d.expected_token_id, d.model_token_id)


def spearman(a: list[float], b: list[float]) -> float:
    ta, tb = torch.tensor(a), torch.tensor(b)
    ra, rb = ta.argsort().argsort().float(), tb.argsort().argsort().float()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def natural_failures(lm, sae, atlas, fmt, n_failures, seed, top_attr):
    """Diagnose failing probes until n_failures; ablation evidence and attribution-vs-ablation."""
    gains, control_gains, fixed, rhos = [], [], [], []
    null_medians, null_p90s, percentiles, null_fixed, evidence = [], [], [], [], []
    pooled_attr, pooled_effect = [], []
    reports = []
    bar = tqdm(total=n_failures, desc="natural failures")
    for a, b in problems(50 * n_failures, seed + 1):
        if len(reports) >= n_failures:
            break
        prompt = fmt.template.format(a=a, b=b)
        report = diagnose(lm, sae, prompt, str(a + b), atlas=atlas, options=probe_options(fmt))
        if report.correct or report.divergence is None:
            continue
        reports.append(report)
        bar.update(1)
        if report.verification is not None and report.control is not None:
            gains.append(report.verification.metric_change)
            control_gains.append(report.control.median_metric_change)
            fixed.append(report.verification.fixed)
        if report.null is not None:
            null_medians.append(report.null.median_metric_change)
            null_p90s.append(report.null.p90_metric_change)
            percentiles.append(report.null.percentile)
            null_fixed += [d.fixed for d in report.null.draws if d.fixed is not None]
            evidence.append(report.evidence)
        # attribution vs the measured effect of ablating each of the top latents alone
        gap = divergence_gap(report)
        attr = attribute(lm, sae, gap)
        per = attr.per_feature
        top = per.abs().topk(top_attr).indices.tolist()
        screen = AblationScreen(lm, sae, gap, attr.residual, attr.features, before=attr.metric)
        effects = screen.effects(top).tolist()
        predicted = [-float(per[j]) for j in top]  # ablating removes the contribution
        rhos.append(spearman(predicted, effects))
        pooled_attr += predicted
        pooled_effect += effects
    bar.close()
    ratio = [g / max(abs(c), 1e-6) for g, c in zip(gains, control_gains, strict=True)]
    return {
        "failures": len(reports),
        "with_verification": len(gains),
        "flagged_median_gain": statistics.median(gains) if gains else None,
        "control_median_gain": statistics.median(control_gains) if control_gains else None,
        "gain_ratio_of_medians": (
            statistics.median(gains) / max(abs(statistics.median(control_gains)), 1e-6)
        )
        if gains
        else None,
        "median_per_failure_ratio": statistics.median(ratio) if ratio else None,
        "flagged_fix_rate": statistics.mean(fixed) if fixed else None,
        "null": {
            "median_of_medians": statistics.median(null_medians) if null_medians else None,
            "median_p90": statistics.median(null_p90s) if null_p90s else None,
            "gain_ratio_of_medians": (
                statistics.median(gains) / max(abs(statistics.median(null_medians)), 1e-6)
            )
            if null_medians
            else None,
            "flagged_percentile_median": statistics.median(percentiles) if percentiles else None,
            "flagged_percentile_quartiles": statistics.quantiles(percentiles, n=4)
            if len(percentiles) > 1
            else None,
            "share_above_90th": statistics.mean(p >= 90 for p in percentiles)
            if percentiles
            else None,
            "fix_rate": statistics.mean(null_fixed) if null_fixed else None,
            "continued_draws": len(null_fixed),
            "evidence": _counts(evidence),
        },
        "spearman_median_per_failure": statistics.median(rhos) if rhos else None,
        "spearman_pooled": spearman(pooled_attr, pooled_effect) if pooled_attr else None,
        "failure_classes": _counts([r.failure_class.value for r in reports]),
        "error_share_median": statistics.median(
            r.attribution.error_share for r in reports if r.attribution
        ),
    }


def planted_failures(lm, sae, atlas, fmt, n_planted, seed, inject_layer, live, plant_at):
    """Plant a latent's decoder direction at `inject_layer` until the answer flips; rank it."""
    rng = random.Random(seed + 2)
    ranks = {"flagged": [], "attribution": [], "activation": [], "peak_activation": []}
    alphas: list[float] = []  # the flip strength of each ranked plant
    margins: list[float] = []  # how surely the model answered each ranked plant's probe unplanted
    chance_r5, carried, attempts, no_flip = [], [], 0, 0
    bar = tqdm(total=n_planted, desc=f"planted failures, layer {inject_layer}")
    for a, b in problems(100 * n_planted, seed + 3):
        if len(ranks["flagged"]) >= n_planted:
            break
        prompt = fmt.template.format(a=a, b=b)
        margin = answer_margin(lm, fmt, a, b)
        if margin is None:
            continue
        attempts += 1
        j = rng.choice(live)
        ids = lm.prompt_ids(prompt, chat=fmt.chat)
        # the typical text-token norm (median: one attention-sink-like token can be ~50x larger)
        scale = float(residuals_at(lm, ids[None], inject_layer)[0, 1:].norm(dim=-1).median())
        direction = sae.W_dec[j] / sae.W_dec[j].norm() * scale
        flipped_at = None
        for alpha in ALPHAS:
            with plant(lm, inject_layer, alpha * direction, ids, plant_at):
                if not answer_of(lm, fmt, a, b):
                    flipped_at = alpha
                    break
        if flipped_at is None:
            no_flip += 1
            continue
        if inject_layer < sae.cfg.hook_layer:  # does the plant reach the answer through the SAE?
            with (
                plant(lm, inject_layer, flipped_at * direction, ids, plant_at),
                plant(lm, sae.cfg.hook_layer, -flipped_at * direction, ids, plant_at),
            ):
                carried.append(answer_of(lm, fmt, a, b))
        else:
            carried.append(True)
        with plant(lm, inject_layer, flipped_at * direction, ids, plant_at):
            report = diagnose(
                lm, sae, prompt, str(a + b), atlas=atlas, options=probe_options(fmt, verify=False)
            )
            if report.divergence is None:
                no_flip += 1
                carried.pop()
                continue
            attr = attribute(lm, sae, divergence_gap(report))
        per, act = attr.per_feature, attr.features.sum(0)
        n_active = int((act > 0).sum())
        flagged = report.flagged_ids
        by_attr = torch.argsort(per).tolist()  # most negative first
        ordering = flagged + [f for f in by_attr if f not in flagged]
        ranks["flagged"].append(_rank(ordering, j))
        alphas.append(flipped_at)
        margins.append(margin)
        ranks["attribution"].append(_rank(by_attr, j))
        ranks["activation"].append(_rank(torch.argsort(act, descending=True).tolist(), j))
        peak = attr.features.max(0).values  # [d_sae]
        ranks["peak_activation"].append(_rank(torch.argsort(peak, descending=True).tolist(), j))
        chance_r5.append(min(5 / max(n_active, 1), 1.0))
        bar.update(1)
    bar.close()
    out = {
        "planted": len(ranks["flagged"]),
        "attempts": attempts,
        "no_flip": no_flip,
        "inject_layer": inject_layer,
        "plant_at": plant_at,
        "flip_alpha_median": statistics.median(alphas) if alphas else None,
    }
    out["carried"] = sum(carried)
    confident = [m >= CONFIDENT for m in margins]
    out["confident"] = sum(confident)
    for name, rs in ranks.items():
        out[name] = _recall(rs)
        out[name]["carried"] = _recall([r for r, c in zip(rs, carried, strict=True) if c])
        out[name]["confident"] = _recall([r for r, c in zip(rs, confident, strict=True) if c])
    out["chance"] = {"recall@5": statistics.mean(chance_r5) if chance_r5 else None}
    # a plant that flips the answer at a small fraction of the residual norm found the model on a
    # knife edge: recall of the flagged ranking split by flip strength
    pairs = list(zip(ranks["flagged"], alphas, strict=True))
    out["flagged_by_strength"] = {
        f"alpha<{STRONG}": _recall([r for r, a in pairs if a < STRONG]),
        f"alpha>={STRONG}": _recall([r for r, a in pairs if a >= STRONG]),
    }
    out["ranks"] = ranks["flagged"]
    out["flip_alphas"] = alphas
    out["clean_margins"] = margins
    return out


def _recall(ranks: list[int]) -> dict[str, float | None]:
    return {
        "recall@1": statistics.mean(r == 1 for r in ranks) if ranks else None,
        "recall@5": statistics.mean(r <= 5 for r in ranks) if ranks else None,
        "mrr": statistics.mean(1 / r for r in ranks) if ranks else None,
    }


ALPHAS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Planting strengths, in units of the median text-token residual norm at the injection layer."""
STRONG = 0.5
"""Flip strength from which a plant counts as strong in the split of recall by strength."""
CONFIDENT = 1.0
"""Logit margin from which the model gets a probe right with confidence (each answer token at
least e times as likely as its runner-up); recall is also given over such probes, since on a
near-tie the plant is only the last straw and the model's own rivals are as much the cause."""


def plant(lm, layer: int, vector: torch.Tensor, prompt_ids: torch.Tensor, at: str):
    """Add `vector` [d_model] to the residual after `layer` on the prompt.

    at="last": only at the last prompt token (where the answer is read out: a spurious feature
    firing there); at="text": at every text token of the prompt. Special tokens (BOS, chat
    markers: attention sinks the SAE never sees) are never touched, nor are generated tokens.
    """
    special = special_token_ids(lm.tokenizer)
    where = (~torch.isin(prompt_ids, special)).float()  # [P]
    if at == "last":
        where = torch.zeros(len(prompt_ids))
        where[-1] = 1.0

    def add(x: torch.Tensor) -> torch.Tensor:  # [batch, seq, d_model]
        if x.shape[1] < len(prompt_ids):  # a generated token (KV cache): untouched
            return x
        mask = torch.zeros(x.shape[1], 1)
        mask[: len(prompt_ids), 0] = where
        return x + mask.to(x.dtype) * vector.to(x.dtype)

    return hook_resid_post(lm, layer, add)


def _rank(ordering: list[int], j: int) -> int:
    return ordering.index(j) + 1 if j in ordering else len(ordering) + 1


def _counts(values: list[str]) -> dict[str, int]:
    return {v: values.count(v) for v in sorted(set(values))}


def gsm8k_latency(lm, sae, atlas, n: int) -> dict:
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[:n]]
    stages = {
        "generate_s": [],
        "paths_s": [],
        "attribution_s": [],
        "verification_s": [],
        "total_s": [],
    }
    for row in rows:
        expected = row["answer"].split("####")[-1].strip()
        report = diagnose(lm, sae, row["question"], expected, reference=row["answer"], atlas=atlas)
        for k in stages:
            stages[k].append(getattr(report.timings, k))
    return {k: statistics.median(v) for k, v in stages.items()} | {"problems": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sae", default="default")
    parser.add_argument("--failures", type=int, default=100, help="natural failures (0: skip)")
    parser.add_argument("--planted", type=int, default=40)
    parser.add_argument("--calibration", type=int, default=60)
    parser.add_argument("--top-attr", type=int, default=10, help="latents per failure for Spearman")
    parser.add_argument(
        "--inject-layers",
        default="15,14",
        help="comma-separated layers to plant at (the SAE reads 15; 14 is one block upstream)",
    )
    parser.add_argument("--plant-at", choices=["last", "text"], default="last")
    parser.add_argument("--gsm8k", type=int, default=3, help="GSM8K problems timed end to end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    lm = load_model()
    sae = load_sae(args.sae)
    atlas = FeatureAtlas.for_sae(sae, args.sae, missing_ok=True)
    start = time.perf_counter()
    fmt, accuracy = calibrate(lm, args.calibration, args.seed)
    print(f"calibration: {accuracy} -> {fmt.name}")
    natural = (
        natural_failures(lm, sae, atlas, fmt, args.failures, args.seed, args.top_attr)
        if args.failures
        else {}
    )
    density = atlas.density if atlas is not None else None
    live = (
        torch.nonzero(torch.as_tensor(density) > 1e-4).squeeze(1).tolist()
        if density is not None
        else list(range(sae.cfg.d_sae))
    )
    planted = (
        {
            f"layer_{layer}": planted_failures(
                lm, sae, atlas, fmt, args.planted, args.seed, layer, live, args.plant_at
            )
            for layer in (int(x) for x in args.inject_layers.split(","))
        }
        if args.planted
        else {}
    )
    latency = gsm8k_latency(lm, sae, atlas, args.gsm8k) if args.gsm8k else {}
    result = {
        "model": lm.model_id,
        "sae": args.sae,
        "atlas": atlas is not None,
        "format": fmt.name,
        "calibration_accuracy": accuracy,
        "natural": natural,
        "planted": planted,
        "gsm8k_latency_s": latency,
        "torch_threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
