"""What a diagnosis costs: the old pipeline against the new one, and against plain generation.

    .venv/bin/python benchmarks/throughput.py [--n 20] [--start 900] [--old-ref 826d81a]

One run, the same GSM8K test problems for every stage, one torch thread per stage, each stage in
its own process (so its CPU-seconds and peak RSS are its own; the model loads before the clock
starts):
- `plain`:  greedy generation of each answer, batch 1, with the stopping rule the diagnosis uses;
- `old`:    `diagnose` of the recorded git ref (the pipeline when the throughput issue was filed),
            run from a git worktree of that ref with its own shipped SAE and atlas;
- `single`: `diagnose` now, one problem at a time (default options: selection-matched null,
            context attribution);
- `batch`:  `diagnose_batch` now (answers generated 8 at a time, left-padded), as audits run.
Per problem: CPU-seconds (time.process_time) and wall; per stage: the report's stage timings and
the process's peak RSS. Verdict agreement: `single` vs `batch` on every field a user reads (answer,
first error, divergence, top flagged latent, fixed or not, evidence); `old` vs `single` on the
answer only, since the divergence moved on purpose (first wrong step, not the final token), with
the old and new top flagged latents listed. Results: benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "throughput.json"
GSM8K_TEST = ROOT.parent / "shared" / "datasets" / "gsm8k" / "test.jsonl"
STAGES = ("plain", "old", "single", "batch")


def problems(path: Path, start: int, n: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for i, row in enumerate(rows[start : start + n], start=start):
        out.append(
            {"id": f"gsm8k-test-{i}", "question": row["question"],
             "expected": row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")}
        )  # fmt: skip
    return out


def _summary(report) -> dict:
    """The fields a user reads, for agreement checks."""
    top = report.flagged[0].feature if report.flagged else None
    fe = getattr(report, "first_error", None)
    verification = report.verification
    return {
        "correct": report.judgement.correct,
        "extracted": report.judgement.extracted,
        "output": report.model_path.text,
        "first_error": (fe.kind, fe.step_text) if fe else None,
        "divergence": report.divergence.position if report.divergence else None,
        "top_flagged": top,
        "flagged": [f.feature for f in report.flagged],
        "fixed": verification.fixed if verification else None,
        "evidence": getattr(report, "evidence", None),
        "timings": report.timings.model_dump(),
    }


def run_stage(stage: str, items: list[dict]) -> dict:
    """Run one stage in this process (the worker side of main)."""
    import torch

    torch.set_num_threads(1)
    from diagnostics.model_loading import load_model
    from diagnostics.sae import load_sae

    lm = load_model()
    sae = load_sae("default")
    lm.generate("Warm up.", max_new_tokens=4)
    rows: list[dict] = []
    if stage == "plain":
        from diagnostics.diagnose import stop_rule
        from diagnostics.options import DiagnosisOptions

        opts = DiagnosisOptions()
        for item in items:
            c0, w0 = time.process_time(), time.perf_counter()
            ids = lm.generate_ids(
                lm.prompt_ids(item["question"], chat=True),
                max_new_tokens=opts.max_new_tokens,
                stop=stop_rule(opts),
            )
            rows.append({"id": item["id"], "cpu_s": time.process_time() - c0,
                         "wall_s": time.perf_counter() - w0, "tokens": len(ids)})  # fmt: skip
    elif stage in ("old", "single"):
        from diagnostics.atlas import FeatureAtlas
        from diagnostics.diagnose import diagnose

        if stage == "old":  # that revision's atlas loader (for_sae came later)
            from diagnostics.sae.io import resolve_sae_dir

            atlas = FeatureAtlas.load(resolve_sae_dir("default"))
        else:
            atlas = FeatureAtlas.for_sae(sae, "default")
        for item in items:
            c0, w0 = time.process_time(), time.perf_counter()
            report = diagnose(lm, sae, item["question"], item["expected"], atlas=atlas)
            rows.append({"id": item["id"], "cpu_s": time.process_time() - c0,
                         "wall_s": time.perf_counter() - w0} | _summary(report))  # fmt: skip
    else:
        from diagnostics.atlas import FeatureAtlas
        from diagnostics.diagnose import Problem, diagnose_batch

        atlas = FeatureAtlas.for_sae(sae, "default")
        c0, w0 = time.process_time(), time.perf_counter()
        reports = diagnose_batch(
            lm, sae, [Problem(it["question"], it["expected"]) for it in items], atlas=atlas
        )
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        for item, report in zip(items, reports, strict=True):
            if isinstance(report, Exception):
                rows.append({"id": item["id"], "error": repr(report)})
            else:
                rows.append({"id": item["id"]} | _summary(report))
        return {"stage": stage, "rows": rows, "cpu_s": cpu, "wall_s": wall,
                "peak_rss_mb": _peak_rss_mb()}  # fmt: skip
    return {
        "stage": stage,
        "rows": rows,
        "cpu_s": sum(r["cpu_s"] for r in rows),
        "wall_s": sum(r["wall_s"] for r in rows),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _old_tree(ref: str) -> Path:
    """A git worktree of `ref` (created once) to import the old pipeline from."""
    tree = ROOT / "benchmarks" / ".old" / ref
    if not tree.is_dir():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                       check=True)  # fmt: skip
    return tree


def _spawn(stage: str, items_path: Path, out: Path, old_ref: str) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    if stage == "old":
        env["PYTHONPATH"] = str(_old_tree(old_ref))
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        stage,
        "--items",
        str(items_path),
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT if stage != "old" else _old_tree(old_ref))
    return json.loads(out.read_text())


def agreement(a: list[dict], b: list[dict], fields: tuple[str, ...]) -> dict:
    """Per field: how many comparable items agree; every disagreement listed."""
    out: dict = {}
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if "error" not in x and "error" not in y]
    for field in fields:
        differ = [
            {"id": x["id"], "a": x[field], "b": y[field]} for x, y in pairs if x[field] != y[field]
        ]
        out[field] = {"agree": len(pairs) - len(differ), "n": len(pairs), "disagreements": differ}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--start", type=int, default=900, help="first GSM8K test index")
    parser.add_argument("--old-ref", default="826d81a")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--parallel", action="store_true", help="run the stages side by side")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.worker:
        items = json.loads(args.items.read_text())
        args.out.write_text(json.dumps(run_stage(args.worker, items)))
        return

    items = problems(GSM8K_TEST, args.start, args.n)
    work = ROOT / "benchmarks" / ".old" / "runs"
    work.mkdir(parents=True, exist_ok=True)
    items_path = work / "items.json"
    items_path.write_text(json.dumps(items))
    names = args.stages.split(",")
    if "old" in names:
        _old_tree(args.old_ref)
    # Each stage is its own one-thread process; --parallel runs them side by side (CPU-seconds
    # stay each process's own; wall-seconds then include the others' contention).
    with ThreadPoolExecutor(max_workers=len(names) if args.parallel else 1) as pool:
        futures = {n: pool.submit(_spawn, n, items_path, work / f"{n}.json", args.old_ref)
                   for n in names}  # fmt: skip
        stages = {n: f.result() for n, f in futures.items()}
    for stage, s in stages.items():
        print(f"{stage:7s} {s['cpu_s'] / len(items):7.1f} CPU-s/problem  "
              f"{s['wall_s'] / len(items):7.1f} wall-s/problem  peak RSS {s['peak_rss_mb']:.0f} MB",
              flush=True)  # fmt: skip
    result = {"problems": [it["id"] for it in items], "old_ref": args.old_ref,
              "parallel": args.parallel, "stages": {}}  # fmt: skip
    for name, s in stages.items():
        result["stages"][name] = {
            "cpu_s_per_problem": s["cpu_s"] / len(items),
            "wall_s_per_problem": s["wall_s"] / len(items),
            "peak_rss_mb": s["peak_rss_mb"],
            "rows": s["rows"],
        }
    if "plain" in stages and "single" in stages:
        plain = {r["id"]: r["cpu_s"] for r in stages["plain"]["rows"]}
        ratios = [r["cpu_s"] / plain[r["id"]] for r in stages["single"]["rows"]]
        result["single_over_plain"] = {
            "median": statistics.median(ratios), "max": max(ratios), "min": min(ratios),
            "total": stages["single"]["cpu_s"] / stages["plain"]["cpu_s"],
        }  # fmt: skip
    if "old" in stages:
        for new in ("single", "batch"):
            if new in stages:
                result[f"old_over_{new}_cpu"] = stages["old"]["cpu_s"] / stages[new]["cpu_s"]
        if "single" in stages:
            result["old_vs_single"] = agreement(
                stages["old"]["rows"], stages["single"]["rows"], ("correct", "extracted")
            )
            result["old_vs_single"]["top_flagged_listed"] = [
                {"id": x["id"], "old": x["top_flagged"], "new": y["top_flagged"]}
                for x, y in zip(stages["old"]["rows"], stages["single"]["rows"], strict=True)
            ]
    if "single" in stages and "batch" in stages:
        result["single_vs_batch"] = agreement(
            stages["single"]["rows"], stages["batch"]["rows"],
            ("correct", "extracted", "first_error", "divergence", "top_flagged", "fixed",
             "evidence"),
        )  # fmt: skip
    for name in ("single", "batch"):
        if name in stages:
            rows = [r["timings"]["cpu_s"] for r in stages[name]["rows"] if "timings" in r]
            keys = sorted({k for r in rows for k in r})
            result[f"{name}_mean_stage_cpu_s"] = {
                k: statistics.mean(r.get(k, 0.0) for r in rows) for k in keys
            }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("stages", "problems")},
                     indent=1)[:4000])  # fmt: skip


if __name__ == "__main__":
    main()
