"""Does the diagnosis find the irrelevant sentence that broke a right answer?

    .venv/bin/python benchmarks/context.py [--split tune|test|both] [--limit N]

The set (benchmarks/data/distraction.jsonl, benchmarks/data/README_distraction.md): word
problems the bundled model answers right, each with one inserted irrelevant sentence (a GSM-IC
style distractor with a number), its character span recorded, and the model's output on the
edited problem. On the items where the insertion flipped the answer from right to wrong, the
model's (given) output is diagnosed with context attribution (`diagnostics.context`; the
ablation verification is off, it does not bear on the span) and we count:
- how often the responsible span found is the inserted sentence, against chance (one of the
  question's candidate sentences picked at random), and how often the failure is classed
  `distraction`;
- where the flagged latents fire: the share of their firing positions on prompt tokens that fall
  inside the inserted sentence, against the share of prompt tokens it holds;
- the share of the negative attribution mass on prompt tokens that sits inside it, against the
  same chance.
Results: benchmarks/results/context.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from diagnostics.atlas import FeatureAtlas
from diagnostics.attribution import LogitGap, attribute
from diagnostics.context import prompt_edits, prompt_token_positions
from diagnostics.diagnose import diagnose
from diagnostics.model_loading import load_model
from diagnostics.options import DiagnosisOptions
from diagnostics.sae import load_sae

DATA = Path(__file__).parent / "data" / "distraction.jsonl"
RESULTS = Path(__file__).parent / "results" / "context.json"
OPTIONS = DiagnosisOptions(verify=False, context=True)


def measure(lm, sae, atlas, item: dict) -> dict:
    report = diagnose(lm, sae, item["question"], item["expected"], atlas=atlas, options=OPTIONS,
                      output=item["output"])  # fmt: skip
    span = tuple(item["inserted_span"])
    prompt_positions = prompt_token_positions(
        lm, item["question"], True, (0, len(item["question"]))
    )
    inserted = set(prompt_token_positions(lm, item["question"], True, span))
    row: dict = {
        "id": item["id"],
        "split": item["split"],
        "insertion_kind": item.get("insertion_kind"),
        "position": item.get("position"),
        "correct": report.correct,
        "failure_class": report.failure_class.value,
        "has_divergence": report.divergence is not None,
        "inserted_token_share": len(inserted) / max(len(prompt_positions), 1),
        "candidates": sum(e.kind == "sentence" for e in prompt_edits(item["question"])),
    }
    ctx = report.context
    row["responsible_span"] = list(ctx.responsible_span) if ctx and ctx.responsible_span else None
    row["responsible_is_inserted"] = bool(
        ctx and ctx.responsible_span and _overlaps(ctx.responsible_span, span)
    )
    row["responsible_reason"] = ctx.responsible_reason if ctx else None
    if ctx:
        sentences = [e for e in ctx.effects if e.kind == "sentence"]
        row["inserted_deletion_fixes"] = next(
            (e.fixed for e in sentences if _overlaps(e.span, span)), None
        )
        row["inserted_gap_change"] = next(
            (e.gap_change for e in sentences if _overlaps(e.span, span)), None
        )
        row["top_gap_sentence_is_inserted"] = bool(sentences) and _overlaps(
            max(sentences, key=lambda e: e.gap_change).span, span
        )
    fires = [
        a.position for f in report.flagged for a in f.fires_at if a.position in prompt_positions
    ]
    row["flagged_prompt_firings"] = len(fires)
    row["flagged_firings_inside"] = sum(p in inserted for p in fires)
    d = report.divergence
    if d is not None:
        seq = torch.tensor([t.token_id for t in report.model_path.tokens])
        attr = attribute(
            lm, sae, LogitGap(seq, d.position - 1, d.expected_token_id, d.model_token_id)
        )
        per_position = attr.attribution.clamp(max=0).sum(1).neg()  # [seq] mass pushing wrong
        on_prompt = [p for p in prompt_positions if p < len(per_position)]
        total = float(per_position[on_prompt].sum())
        row["negative_mass_inside"] = (
            float(per_position[[p for p in on_prompt if p in inserted]].sum()) / total
            if total
            else None
        )
    return row


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def summarise(rows: list[dict]) -> dict:
    flips = [r for r in rows if not r["correct"] and r["has_divergence"]]
    if not flips:
        return {"flips": 0}
    fires = sum(r["flagged_prompt_firings"] for r in flips)
    masses = [r["negative_mass_inside"] for r in flips if r.get("negative_mass_inside") is not None]
    return {
        "flips": len(flips),
        "responsible_is_inserted": statistics.mean(r["responsible_is_inserted"] for r in flips),
        "chance_responsible": statistics.mean(1 / max(r["candidates"], 1) for r in flips),
        "no_responsible_span": statistics.mean(r["responsible_span"] is None for r in flips),
        "classed_distraction": statistics.mean(r["failure_class"] == "distraction" for r in flips),
        "inserted_deletion_fixes": statistics.mean(bool(r.get("inserted_deletion_fixes")) for r in flips),
        "top_gap_sentence_is_inserted": statistics.mean(r.get("top_gap_sentence_is_inserted", False) for r in flips),
        "flagged_firings_inside": (sum(r["flagged_firings_inside"] for r in flips) / fires) if fires else None,
        "negative_mass_inside_median": statistics.median(masses) if masses else None,
        "chance_token_share": statistics.mean(r["inserted_token_share"] for r in flips),
        "by_insertion_kind": {
            k: statistics.mean(r["responsible_is_inserted"] for r in flips if r["insertion_kind"] == k)
            for k in sorted({str(r["insertion_kind"]) for r in flips})
        },
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["tune", "test", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="flipped items per split at most")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    items = [
        i for i in items if i["flipped"] and (args.split == "both" or i["split"] == args.split)
    ]
    lm, sae = load_model("bundled"), load_sae("default")
    atlas = FeatureAtlas.for_sae(sae, "default", missing_ok=True)
    rows, t0 = [], time.process_time()
    for split in ("tune", "test"):
        chosen = [i for i in items if i["split"] == split][: args.limit]
        for k, item in enumerate(chosen):
            rows.append(measure(lm, sae, atlas, item))
            print(f"{split} {k + 1}/{len(chosen)} {item['id']}: responsible is inserted "
                  f"{rows[-1]['responsible_is_inserted']}", flush=True)  # fmt: skip
    result = {
        "splits": {s: summarise([r for r in rows if r["split"] == s]) for s in ("tune", "test")},
        "cpu_seconds": time.process_time() - t0,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["splits"], indent=2))


if __name__ == "__main__":
    main()
