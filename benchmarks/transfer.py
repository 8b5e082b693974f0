"""Do the concepts an audit flags transfer? Suppress them on held-out problems of the same kind.

The concepts (diagnostics.concepts: flagged latents grouped by decoder cosine and description)
that recur in at least --min-failures failures of a flag split are zero-ablated through the SAE
at its layer, error term kept, at every position of the prompt and of the generation (as
diagnostics/verification.py ablates), on a held-out split; greedy answers are judged as the
diagnosis judges them. The control suppresses as many random latents, matched to the suppressed
ones by activation level as diagnostics/null.py matches (for each, one of the NEAREST unflagged
latents closest in log peak activation), the peak read from the atlas (max activation over its
1.2M tokens), so that the draws need no baseline run first and run in parallel; how many of the
drawn latents fire on the held-out split's unedited runs is recorded next to how many of the
suppressed ones do. --random-subset runs the draws on the first N held-out items (CPU budget);
the flagged condition is then also compared on those N.

a. Arithmetic probes: the eq-2shot format of benchmarks/diagnosis_quality.py (the format its
   calibration picked, accuracy about a third). Flag split: failing probes of seed 1000,
   diagnosed now with the selection-matched null; held-out: the probes of seed 2000 not in it.
b. GSM8K test: flagged latents read from benchmarks/results/gsm8k_audit.csv (the audit of test
   problems 0-49 through the service); held-out: test problems from --gsm8k-start on (no other
   benchmark reads them), chat prompt, gsm8k judge, 256 new tokens at most.

Per condition: accuracy, fixed (wrong -> right) and broken (right -> wrong) items, the change
against the unedited baseline with a paired bootstrap 95% interval, and an exact two-sided
binomial (McNemar) p over fixed vs broken.

    nice -n 10 .venv/bin/python benchmarks/transfer.py

Writes benchmarks/results/transfer.json and prints a summary.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).parent))

from diagnosis_quality import FIRST_NUMBER, FORMATS, probe_options, problems  # noqa: E402

from diagnostics.answers import judge  # noqa: E402
from diagnostics.atlas import FeatureAtlas  # noqa: E402
from diagnostics.concepts import ConceptBasis, FlaggedFailure, audit_concepts  # noqa: E402
from diagnostics.diagnose import Problem, diagnose_batch, stop_rule  # noqa: E402
from diagnostics.model_loading import load_model  # noqa: E402
from diagnostics.null import NEAREST  # noqa: E402
from diagnostics.options import DiagnosisOptions  # noqa: E402
from diagnostics.report import DriftReport  # noqa: E402
from diagnostics.sae import load_sae  # noqa: E402
from diagnostics.splice import splice_sae  # noqa: E402
from diagnostics.verification import zero_ablation  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "transfer.json"
AUDIT_CSV = Path(__file__).parent / "results" / "gsm8k_audit.csv"
GSM8K_TEST = next(
    (
        p / "shared" / "datasets" / "gsm8k" / "test.jsonl"
        for p in Path(__file__).resolve().parents[1:4]
        if (p / "shared" / "datasets" / "gsm8k" / "test.jsonl").exists()
    ),
    Path("/work/shared/datasets/gsm8k/test.jsonl"),
)  # beside the checkout (or a worktree's parent)
PROBE_FORMAT = next(f for f in FORMATS if f.name == "eq-2shot")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class HeldOut:
    """A held-out split: prompt ids, how to judge an answer, when to stop generating."""

    prompts: list[torch.Tensor]  # [seq_i] each
    judges: list[Callable[[str], bool]]
    stop: Callable[[str], bool]
    max_new_tokens: int


def judge_of(expected: str, mode: str, pattern: str | None = None) -> Callable[[str], bool]:
    return lambda text: judge(text, expected, mode, pattern=pattern).correct


def run_split(lm, sae, split: HeldOut, latents: list[int] | None, batch: int, desc: str):
    """Greedy answers of the split with `latents` zero-ablated (None: none): correct per item,
    and each latent's peak activation [d_sae] over the unedited features of the prompts and
    answers (pads and special tokens read 0)."""
    ablate = zero_ablation(latents) if latents else None
    peak = torch.zeros(sae.cfg.d_sae)

    def edit(f: torch.Tensor) -> torch.Tensor:  # [rows, seq, d_sae]
        peak.copy_(torch.maximum(peak, f.detach().float().amax((0, 1)).cpu()))
        return ablate(f) if ablate is not None else f

    correct = []
    with splice_sae(lm, sae, edit=edit):
        for b in tqdm(range(0, len(split.prompts), batch), desc=desc, leave=False):
            rows = lm.generate_rows(
                split.prompts[b : b + batch], max_new_tokens=split.max_new_tokens, stop=split.stop
            ).ids
            for r, ids in enumerate(rows):
                text = lm.tokenizer.decode(ids, skip_special_tokens=True)
                correct.append(split.judges[b + r](text))
    return correct, peak


def matched_random(
    peak: torch.Tensor, suppressed: list[int], exclude: set[int], *, generator: torch.Generator
) -> list[int]:
    """One random latent per suppressed latent, matched by log peak activation `peak` [d_sae]
    (null.py); a suppressed latent with no activation is matched by one with none."""
    pool = torch.tensor([j for j in range(len(peak)) if j not in exclude], dtype=torch.long)
    active, silent = pool[peak[pool] > 0], pool[peak[pool] <= 0]
    chosen: list[int] = []
    for j in suppressed:
        if peak[j] > 0:
            free = active[~torch.isin(active, torch.tensor(chosen, dtype=torch.long))]
            order = torch.argsort((peak[free].log() - peak[j].log()).abs())[:NEAREST]
            nearest = free[order]
        else:
            nearest = silent[~torch.isin(silent, torch.tensor(chosen, dtype=torch.long))]
        chosen.append(int(nearest[int(torch.randint(len(nearest), (1,), generator=generator))]))
    return chosen


def compare(base: list[bool], cond: list[bool], seed: int) -> dict:
    """Accuracy of `cond`, fixed / broken against `base`, bootstrap CI and McNemar p."""
    n = len(base)
    fixed = sum(1 for a, b in zip(base, cond, strict=True) if not a and b)
    broken = sum(1 for a, b in zip(base, cond, strict=True) if a and not b)
    diffs = [int(b) - int(a) for a, b in zip(base, cond, strict=True)]
    rng = random.Random(seed)
    boots = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(BOOTSTRAP))
    return {
        "accuracy": sum(cond) / n,
        "correct": sum(cond),
        "change": sum(diffs) / n,
        "change_ci95": [boots[int(0.025 * BOOTSTRAP)], boots[int(0.975 * BOOTSTRAP) - 1]],
        "fixed": fixed,
        "broken": broken,
        "mcnemar_p": binomial_two_sided(fixed, fixed + broken),
    }


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair trials."""
    if n == 0:
        return 1.0
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[k] * (1 + 1e-9)))


def transfer(lm, sae, atlas, failures, split, args, name: str) -> dict | None:
    """Concepts of `failures`, suppressed on `split` vs matched random latents.

    Each condition's answers are kept in --stage-dir and read back from there, so conditions
    can run in separate processes (--conditions); None when this process ran only some."""
    concepts, _ = audit_concepts(  # specific concepts only: generic ones are left out
        failures, ConceptBasis.of(sae, atlas), min_failures=args.min_failures, top=10_000
    )
    suppressed = [j for c in concepts for j in c.latents]
    flagged_all = {j for f in failures for j in f.latents}
    key = hashlib.sha1(json.dumps([len(split.prompts), suppressed]).encode()).hexdigest()[:8]
    store = args.stage_dir / f"{name}-{key}"
    store.mkdir(parents=True, exist_ok=True)
    every = ["baseline", "flagged"] + [f"random{d}" for d in range(args.draws)]
    wanted = every if args.conditions is None else args.conditions  # `--conditions`: none

    n_random = min(args.random_subset or len(split.prompts), len(split.prompts))
    subset = HeldOut(split.prompts[:n_random], split.judges[:n_random], split.stop,
                     split.max_new_tokens)  # fmt: skip

    def condition(key: str, latents: list[int] | None, on: HeldOut = split) -> dict | None:
        path = store / f"{key}-{len(on.prompts)}.json"
        if path.exists():
            return json.loads(path.read_text())
        if key not in wanted:
            return None
        t0 = time.process_time()
        correct, peak = run_split(lm, sae, on, latents, args.batch, f"{name} {key}")
        done = {"correct": correct, "latents": latents, "cpu_s": time.process_time() - t0}
        if latents is None:
            done["peak"] = peak.tolist()
        path.write_text(json.dumps(done))
        return done

    level = torch.from_numpy(atlas.max_activation).float()  # [d_sae], 0 for dead latents
    draws = [
        condition(
            f"random{d}",
            matched_random(
                level, suppressed, flagged_all, generator=torch.Generator().manual_seed(d)
            ),
            subset,
        )
        for d in range(args.draws)
    ]
    base = condition("baseline", None)
    flagged = condition("flagged", suppressed) if suppressed else None
    missing = [k for k, v in [("baseline", base), ("flagged", flagged)] if v is None]
    missing += [f"random{d}" for d, r in enumerate(draws) if r is None]
    if not suppressed:
        missing.remove("flagged")
    if missing and not args.partial:
        return None  # the other conditions run elsewhere; merge with a run of all
    out = {
        "flag_failures": len(failures),
        "flagged_latents": len(flagged_all),
        "concepts": [
            {k: c.as_json()[k] for k in ("concept", "latents", "failures", "generic")}
            | {"flagged_fix_rate": c.flagged_fix_rate, "null_fix_rate": c.null_fix_rate}
            for c in concepts
        ],
        "suppressed_latents": suppressed,
        "held_out": len(split.prompts),
        "random_subset": n_random,
        "missing": missing,  # conditions that did not finish within the CPU budget
    }
    if not suppressed:
        out["note"] = "no concept recurs in the flag split: nothing to suppress"
    if base is None:
        return out
    out["baseline_accuracy"] = sum(base["correct"]) / len(base["correct"])
    out["baseline_correct"] = sum(base["correct"])
    peak = torch.tensor(base["peak"])  # [d_sae] over the unedited held-out runs
    sub_base = base["correct"][:n_random]
    if flagged is not None:
        out["flagged"] = compare(base["correct"], flagged["correct"], seed=0)
        out["suppressed_firing_on_held_out"] = int((peak[suppressed] > 0).sum())
        out["flagged_on_random_subset"] = compare(sub_base, flagged["correct"][:n_random], seed=0)
    done = [
        compare(sub_base, r["correct"], seed=d + 1)
        | {"latents": r["latents"], "firing_on_held_out": int((peak[r["latents"]] > 0).sum())}
        for d, r in enumerate(draws)
        if r is not None
    ]
    if done:
        acc = [d["accuracy"] for d in done]
        out["random"] = {
            "draws": done,
            "accuracy_mean": sum(acc) / len(acc),
            "accuracy_range": [min(acc), max(acc)],
            "fixed_mean": sum(d["fixed"] for d in done) / len(done),
            "broken_mean": sum(d["broken"] for d in done) / len(done),
        }
    out["conditions_cpu_s"] = sum(
        json.loads(path.read_text())["cpu_s"] for path in store.glob("*.json")
    )
    return out


def failure_of(report: DriftReport, i: int) -> FlaggedFailure:
    return FlaggedFailure(
        report_id=str(i),
        kind=report.failure_class.value,
        latents=report.flagged_ids,
        fixed=report.verification.fixed if report.verification else None,
        null_fix_rate=report.null.fix_rate if report.null else None,
    )


def arithmetic(lm, sae, atlas, args) -> dict | None:
    fmt = PROBE_FORMAT
    t0 = time.process_time()
    opts = probe_options(fmt)
    candidates = problems(args.flag_probes, 1000)
    probe = HeldOut(
        prompts=[
            lm.prompt_ids(fmt.template.format(a=a, b=b), chat=fmt.chat) for a, b in candidates
        ],
        judges=[judge_of(str(a + b), "regex", FIRST_NUMBER) for a, b in candidates],
        stop=stop_rule(opts),
        max_new_tokens=opts.max_new_tokens,
    )
    cache = args.stage_dir / f"arithmetic-flags-{args.flag_probes}-{args.flag_failures}.json"
    if cache.exists():  # diagnosed by an earlier process of this run
        kept = json.loads(cache.read_text())
        wrong, failures = kept["wrong"], [FlaggedFailure(**f) for f in kept["failures"]]
    else:
        right, _ = run_split(lm, sae, probe, None, args.batch, "arithmetic flag split")
        wrong = [i for i, ok in enumerate(right) if not ok][: args.flag_failures]
        reports = diagnose_batch(
            lm,
            sae,
            [
                Problem(fmt.template.format(a=a, b=b), str(a + b))
                for a, b in (candidates[i] for i in wrong)
            ],
            atlas=atlas,
            options=opts,
            batch_size=args.batch,
        )
        failures = [
            failure_of(r, i)
            for i, r in zip(wrong, reports, strict=True)
            if isinstance(r, DriftReport) and r.divergence is not None
        ]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"wrong": wrong, "failures": [asdict(f) for f in failures]}))
    diagnose_cpu = time.process_time() - t0
    seen = set(candidates)
    held = [p for p in problems(args.probes + len(seen), 2000) if p not in seen][: args.probes]
    split = HeldOut(
        prompts=[lm.prompt_ids(fmt.template.format(a=a, b=b), chat=fmt.chat) for a, b in held],
        judges=[judge_of(str(a + b), "regex", FIRST_NUMBER) for a, b in held],
        stop=stop_rule(opts),
        max_new_tokens=opts.max_new_tokens,
    )
    out = transfer(lm, sae, atlas, failures, split, args, "arithmetic")
    if out is None:
        return None
    return {
        "format": fmt.name,
        "flag_probes": len(candidates),
        "flag_wrong": len(wrong),
        "flag_null_fix_rate": _mean([f.null_fix_rate for f in failures]),
        "flag_flagged_fix_rate": _mean([f.fixed for f in failures]),
        "diagnose_cpu_s": diagnose_cpu,
    } | out


def gsm8k(lm, sae, atlas, args) -> dict | None:
    rows = list(csv.DictReader(AUDIT_CSV.open()))
    failures = [
        FlaggedFailure(
            report_id=r["report_id"],
            kind=r["failure_class"],
            latents=[int(x) for x in r["flagged_features"].split(";") if x],
            fixed={"True": True, "False": False}.get(r["ablation_fixed"]),
            null_fix_rate=None,  # the audit predates the selection-matched null
        )
        for r in rows
        if r["status"] == "done" and r["correct"] == "False"
    ]
    lines = GSM8K_TEST.read_text().splitlines()
    held = [json.loads(x) for x in lines[args.gsm8k_start : args.gsm8k_start + args.gsm8k]]
    opts = DiagnosisOptions()  # chat, gsm8k judge, as the audit ran
    split = HeldOut(
        prompts=[lm.prompt_ids(r["question"], chat=True) for r in held],
        judges=[judge_of(r["answer"].split("####")[-1].strip(), "gsm8k") for r in held],
        stop=stop_rule(opts),
        max_new_tokens=opts.max_new_tokens,
    )
    out = transfer(lm, sae, atlas, failures, split, args, "gsm8k")
    if out is None:
        return None
    return {
        "flag_source": f"{AUDIT_CSV.name}: GSM8K test 0-{len(rows) - 1}",
        "held_out_indices": [args.gsm8k_start, args.gsm8k_start + len(held)],
    } | out


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flag-probes", type=int, default=60)
    ap.add_argument("--flag-failures", type=int, default=24)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--gsm8k", type=int, default=80)
    ap.add_argument("--gsm8k-start", type=int, default=1200)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--min-failures", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--only", choices=["arithmetic", "gsm8k"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--conditions",
        nargs="*",
        help="run only these (baseline, flagged, random0, ...); the others are read from "
        "--stage-dir, and the results are written once all are there",
    )
    ap.add_argument(
        "--random-subset",
        type=int,
        help="run the random draws on the first N held-out items only (CPU budget)",
    )
    ap.add_argument(
        "--partial",
        action="store_true",
        help="write what the finished conditions show, listing the missing ones",
    )
    ap.add_argument("--stage-dir", type=Path, default=Path("/tmp/driftscope-transfer"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0, c0 = time.perf_counter(), time.process_time()
    lm = load_model()
    sae = load_sae("default")
    atlas = FeatureAtlas.for_sae(sae, "default")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    result = {"model": lm.model_id, "sae": "default", "args": vars(args) | {"out": str(args.out)}}
    for name, run in (("arithmetic", arithmetic), ("gsm8k", gsm8k)):
        if args.only in (None, name):
            result[name] = run(lm, sae, atlas, args)
            if result[name] is None:
                return  # some conditions run in other processes
        elif name in previous:
            result[name] = previous[name]
    result["torch_threads"] = torch.get_num_threads()
    result["wall_s"] = time.perf_counter() - t0
    result["cpu_s"] = time.process_time() - c0
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(markdown_table(result))


def markdown_table(result: dict) -> str:
    """The results as a markdown table (one row per setting and condition)."""
    lines = [
        "| setting | held-out | suppressed | accuracy | change (95% CI) | fixed | broken | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("arithmetic", "gsm8k"):
        r = result.get(name)
        if not r:
            continue
        n, k = r["held_out"], len(r.get("suppressed_latents", []))
        if "baseline_accuracy" not in r:
            continue
        lines.append(f"| {name} | {n} | none (baseline) | {r['baseline_accuracy']:.3f} | | | | |")
        if "flagged" not in r:
            continue
        f = r["flagged"]
        lo, hi = f["change_ci95"]
        lines.append(
            f"| {name} | {n} | {k} flagged latents ({len(r['concepts'])} concepts) | "
            f"{f['accuracy']:.3f} | {f['change']:+.3f} ({lo:+.3f}, {hi:+.3f}) | {f['fixed']} | "
            f"{f['broken']} | {f['mcnemar_p']:.2g} |"
        )
        m = r.get("random_subset", n)
        if m != n:
            f = r["flagged_on_random_subset"]
            lo, hi = f["change_ci95"]
            lines.append(
                f"| {name} | first {m} | {k} flagged latents | {f['accuracy']:.3f} | "
                f"{f['change']:+.3f} ({lo:+.3f}, {hi:+.3f}) | {f['fixed']} | {f['broken']} | "
                f"{f['mcnemar_p']:.2g} |"
            )
        if "random" not in r:
            continue
        rnd = r["random"]
        a, b = rnd["accuracy_range"]
        changes = [d["change"] for d in rnd["draws"]]
        lines.append(
            f"| {name} | {'first ' if m != n else ''}{m} | {k} matched random "
            f"x{len(rnd['draws'])} | {rnd['accuracy_mean']:.3f} ({a:.3f}-{b:.3f}) | "
            f"{sum(changes) / len(changes):+.3f} ({min(changes):+.3f}, {max(changes):+.3f}) | "
            f"{rnd['fixed_mean']:.1f} | {rnd['broken_mean']:.1f} | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
