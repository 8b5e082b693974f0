"""Does the attribution graph explain the wrong turn? Checks of `diagnose --trace` on the bundled
model with the shipped per-layer transcoders.

    .venv/bin/python benchmarks/trace.py --distraction 30 --arithmetic 30 --gsm8k 20 \
        --cost-lengths 50,100,200
    .venv/bin/python benchmarks/trace.py --smoke     # the tiny random Llama, code path only

a. Distraction set, untuned half (split "test" of benchmarks/data/distraction.jsonl, the items
   where the inserted sentence flipped a right answer): the share of the prompt's influence
   (embedding nodes of the pruned graph) inside the inserted sentence, against the sentence's
   share of the prompt's characters (chance: 1x). Floor: >= 2x in >= 60% of the flips.
b. Natural arithmetic failures (the eq-2shot probes of diagnosis_quality.py) and GSM8K test
   failures: how often zeroing or steering the top supernode flips the turn, and zeroing the top
   supernodes together, against the selection-matched null's flip rate; replacement and
   completeness scores. Floor: top-supernode interventions flip >= 40%, the null <= 10%.
c. Cost against prompt length: each length traced in a fresh process (so peak RSS is that
   trace's), CPU seconds of the graph and of the whole trace. Floor: a 200-token failure costs
   <= 300 CPU-s and <= 6 GB peak RSS.

Writes benchmarks/results/trace.json (or trace_smoke.json) and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diagnostics.diagnose import diagnose  # noqa: E402
from diagnostics.options import DiagnosisOptions  # noqa: E402
from diagnostics.trace.config import TraceConfig  # noqa: E402
from diagnostics.trace.token_influence import share_inside  # noqa: E402
from diagnostics.trace.tracer import Tracer
from diagnostics.transcoders.shipped import resolve_transcoders_dir  # noqa: E402

HERE = Path(__file__).parent
DISTRACTION = HERE / "data" / "distraction.jsonl"
GSM8K_TEST = HERE.resolve().parents[1] / "shared" / "datasets" / "gsm8k" / "test.jsonl"
RESULTS = HERE / "results" / "trace.json"
SMOKE_RESULTS = HERE / "results" / "trace_smoke.json"
EQ_2SHOT = "12 + 35 = 47\n26 + 51 = 77\n{a} + {b} ="
FIRST_NUMBER = r"^\s*(-?\d+)"


def trace_row(report) -> dict:
    """What one traced failure contributes (None fields: no trace or no intervention)."""
    t = report.trace
    row = {"correct": report.correct, "traced": t is not None}
    if t is None:
        return row
    first = {i.mode: i for i in t.interventions if i.supernodes == [0]}
    together = max((i for i in t.interventions if i.mode == "zero"),
                   key=lambda i: len(i.supernodes), default=None)  # fmt: skip
    row |= {
        "n_tokens": t.cost.n_tokens,
        "supernodes": len(t.supernodes),
        "top_zero_flipped": first["zero"].flipped if "zero" in first else None,
        "top_steer_flipped": first["steer"].flipped if "steer" in first else None,
        "top_zero_gap_change": first["zero"].gap_change if "zero" in first else None,
        "together_flipped": together.flipped if together else None,
        "together_fixed": together.fixed if together else None,
        "null_flip_rate": t.null.flip_rate if t.null else None,
        "evidence": t.evidence,
        "replacement_score": t.replacement_score,
        "completeness_score": t.completeness_score,
        "cpu_s": t.cost.cpu_s,
        "graph_cpu_s": t.cost.graph_cpu_s,
    }
    return row


def distraction(lm, sae, atlas, tracer, limit: int | None) -> list[dict]:
    items = [json.loads(x) for x in DISTRACTION.read_text().splitlines() if x.strip()]
    items = [i for i in items if i["flipped"] and i["split"] == "test"][:limit]
    rows = []
    for k, item in enumerate(items):
        report = diagnose(lm, sae, item["question"], item["expected"], atlas=atlas,
                          options=DiagnosisOptions(verify=False, context=False, trace=True),
                          output=item["output"], tracer=tracer)  # fmt: skip
        row = {"id": item["id"]} | trace_row(report)
        a, b = item["inserted_span"]
        if report.trace is not None:
            share = share_inside(report.trace.prompt_influence, a, b)
            row |= {"influence_share": share, "char_share": (b - a) / len(item["question"])}
            row["ratio"] = share / row["char_share"]
        rows.append(row)
        print(f"distraction {k + 1}/{len(items)} {item['id']}: {row.get('ratio')}", flush=True)
    return rows


def arithmetic(lm, sae, atlas, tracer, n: int, seed: int = 0) -> list[dict]:
    rng, rows, tried = random.Random(seed), [], 0
    opts = DiagnosisOptions(mode="regex", pattern=FIRST_NUMBER, chat=False, max_new_tokens=6,
                            verify=False, context=False, trace=True)  # fmt: skip
    while len(rows) < n and tried < 40 * n:
        tried += 1
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        report = diagnose(lm, sae, EQ_2SHOT.format(a=a, b=b), str(a + b), atlas=atlas,
                          options=opts, tracer=tracer)  # fmt: skip
        if report.correct or report.divergence is None:
            continue
        rows.append({"problem": f"{a}+{b}"} | trace_row(report))
        print(f"arithmetic {len(rows)}/{n}: {rows[-1].get('top_zero_flipped')}", flush=True)
    return rows


def gsm8k(lm, sae, atlas, tracer, n: int) -> list[dict]:
    rows = []
    opts = DiagnosisOptions(verify=False, context=False, trace=True)
    for line in GSM8K_TEST.read_text().splitlines():
        if len(rows) >= n:
            break
        item = json.loads(line)
        expected = item["answer"].split("####")[-1].strip()
        report = diagnose(lm, sae, item["question"], expected, reference=item["answer"],
                          atlas=atlas, options=opts, tracer=tracer)  # fmt: skip
        if report.correct or report.divergence is None:
            continue
        rows.append({"question": item["question"][:80]} | trace_row(report))
        print(f"gsm8k {len(rows)}/{n}: {rows[-1].get('top_zero_flipped')}", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    traced = [r for r in rows if r.get("traced")]

    def rate(key: str) -> float | None:
        values = [r[key] for r in traced if r.get(key) is not None]
        return statistics.mean(values) if values else None

    out = {
        "failures": len(rows),
        "traced": len(traced),
        "top_zero_flip_rate": rate("top_zero_flipped"),
        "top_steer_flip_rate": rate("top_steer_flipped"),
        "together_flip_rate": rate("together_flipped"),
        "together_fix_rate": rate("together_fixed"),
        "null_flip_rate": rate("null_flip_rate"),
        "supported": sum(r["evidence"] == "supported" for r in traced),
        "replacement_score_median": _median(traced, "replacement_score"),
        "completeness_score_median": _median(traced, "completeness_score"),
        "cpu_s_median": _median(traced, "cpu_s"),
    }
    ratios = [r["ratio"] for r in traced if r.get("ratio") is not None]
    if ratios:
        out |= {
            "ratio_median": statistics.median(ratios),
            "share_at_least_2x": sum(x >= 2 for x in ratios) / len(ratios),
        }
    return out


def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def one_cost(lm, tracer, n_tokens: int) -> dict:
    """Trace one synthetic failure of about n_tokens (GSM8K questions run together, the model's
    greedy next token against the runner-up) in this process."""
    from diagnostics.report import Divergence
    from diagnostics.trace.run import FailureCase

    text = " ".join(json.loads(x)["question"] for x in GSM8K_TEST.read_text().splitlines()[:40])
    ids = lm.prompt_ids(text)
    while len(ids) > n_tokens:
        text = text[: int(len(text) * n_tokens / len(ids)) - 1]
        ids = lm.prompt_ids(text)
    with torch.no_grad():
        logits = lm.model(ids[None]).logits[0, -1]
    top2 = logits.topk(2).indices.tolist()
    tok = lm.tokenizer
    d = Divergence(position=len(ids), path_index=0, expected_token=tok.decode([top2[1]]),
                   expected_token_id=top2[1], model_token=tok.decode([top2[0]]),
                   model_token_id=top2[0], logit_expected=float(logits[top2[1]]),
                   logit_model=float(logits[top2[0]]),
                   metric=float(logits[top2[1]] - logits[top2[0]]), prob_expected=0.0,
                   prob_model=1.0)  # fmt: skip
    case = FailureCase(prompt=text, prompt_ids=ids, out_ids=torch.tensor([], dtype=torch.long),
                       output="", divergence=d, judge_fn=lambda s: False, stop=None,
                       max_new_tokens=8)  # fmt: skip
    t = tracer.trace(lm, case)
    return {"n_tokens": t.cost.n_tokens, "graph_cpu_s": t.cost.graph_cpu_s, "cpu_s": t.cost.cpu_s,
            "wall_s": t.cost.wall_s, "peak_rss_mb": t.cost.peak_rss_mb,
            "active_features": t.cost.active_features, "feature_nodes": t.cost.feature_nodes,
            "batch_size": t.cost.batch_size}  # fmt: skip


def load(args):
    if args.smoke:
        import tempfile

        from tests.unit.test_trace import tiny_lm_with_mlps, train_tiny_set

        lm = tiny_lm_with_mlps()
        set_dir = train_tiny_set(lm, Path(tempfile.mkdtemp(prefix="trace-smoke-")))
        from tests.conftest import make_firing_sae

        return lm, make_firing_sae(lm, 64), None, set_dir
    from diagnostics.atlas import FeatureAtlas
    from diagnostics.model_loading import load_model
    from diagnostics.sae import load_sae

    lm, sae = load_model("bundled"), load_sae("default")
    return lm, sae, FeatureAtlas.for_sae(sae, "default", missing_ok=True), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transcoders", default="default")
    parser.add_argument("--distraction", type=int, default=30, help="flipped test items at most")
    parser.add_argument("--arithmetic", type=int, default=30)
    parser.add_argument("--gsm8k", type=int, default=20)
    parser.add_argument("--cost-lengths", default="50,100,200")
    parser.add_argument("--nodes", type=int, default=TraceConfig.max_feature_nodes)
    parser.add_argument("--batch", type=int, default=TraceConfig.batch_size)
    parser.add_argument("--null-draws", type=int, default=TraceConfig.null_draws)
    parser.add_argument("--smoke", action="store_true", help="tiny model and set, 2 items each")
    parser.add_argument("--one-cost", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm, sae, atlas, set_dir = load(args)
    config = TraceConfig(max_feature_nodes=args.nodes, batch_size=args.batch,
                         null_draws=args.null_draws, device=str(lm.device))  # fmt: skip
    tracer = Tracer(set_dir or resolve_transcoders_dir(args.transcoders), config)
    if args.one_cost is not None:
        print(json.dumps(one_cost(lm, tracer, args.one_cost)))
        return
    if args.smoke:
        args.distraction = args.arithmetic = args.gsm8k = 2
    t0 = time.process_time()
    sections = {
        "distraction_test": distraction(lm, sae, atlas, tracer, args.distraction),
        "arithmetic": arithmetic(lm, sae, atlas, tracer, args.arithmetic),
        "gsm8k": gsm8k(lm, sae, atlas, tracer, args.gsm8k),
    }
    cost = []
    for n in [int(x) for x in args.cost_lengths.split(",") if x]:
        cmd = [sys.executable, __file__, "--one-cost", str(n), "--transcoders", args.transcoders,
               "--nodes", str(args.nodes), "--batch", str(args.batch),
               "--null-draws", str(args.null_draws)] + (["--smoke"] if args.smoke else [])  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        cost.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"cost {cost[-1]}", flush=True)
    result = {
        "transcoders": args.transcoders if not args.smoke else "tiny (smoke)",
        "config": {
            "max_feature_nodes": args.nodes,
            "batch_size": args.batch,
            "null_draws": args.null_draws,
        },  # fmt: skip
        "summary": {k: summarise(v) for k, v in sections.items()},
        "cost": cost,
        "cpu_seconds": time.process_time() - t0,
        "rows": sections,
    }
    out = args.out or (SMOKE_RESULTS if args.smoke else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": result["summary"], "cost": cost}, indent=2))


if __name__ == "__main__":
    main()
