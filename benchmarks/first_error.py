"""How often the diagnosis points inside the hand-labelled first wrong step.

    .venv/bin/python benchmarks/first_error.py [--split tune|test|both] [--no-baseline]
        [--data benchmarks/data/first_error_fresh.jsonl]

The labelled set (benchmarks/data/first_error.jsonl, benchmarks/data/README.md) holds failures of
the bundled model on GSM8K test problems that no other benchmark or test uses, each with the
character span of its first wrong step in the model's own output and its kind, labelled before
the locator was tuned. The tune half was looked at while tuning; the test half never.

For each failure and each condition (with the GSM8K reference solution, without it) the located
offset is the character of the model's output where the diagnosis attributes: the first token at
which the corrected path differs from the model's own (`first_error` + `paths`, the same functions
`diagnose` runs; the tokenizer is the model's). A hit is an offset inside the labelled span; a
false blame an offset before it (a right step blamed). Rates are given by kind, for prose
misreads, and by the location's confidence.
Baselines are the previous divergence: without a reference the final answer token; with one, the
first numeric token of the reference text the model would not have produced (teacher forcing the
reference), placed on the model's output at the same token index, as the report page did.
Results: benchmarks/results/<data name>.json; misses are printed. `--data` takes the fresh
set of issue 25 (GSM8K train failures labelled before its locator ran on them).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from diagnostics.answers import judge, to_float
from diagnostics.first_error import correction_for, locate_first_error
from diagnostics.gold_solution import gold_for
from diagnostics.model_loading import load_model
from diagnostics.paths import corrected_path, token_char_spans
from diagnostics.prompts import last_question

DATA = Path(__file__).parent / "data" / "first_error.jsonl"
RESULTS = Path(__file__).parent / "results" / "first_error.json"
_ANNOTATION = re.compile(r"<<[^<>]*>>")
_DIGIT = re.compile(r"\d")


def locate(tok, item: dict, reference: str | None) -> dict:
    """Where the diagnosis attributes on this item's output: the located offset and the first
    error it found."""
    output = item["output"]
    out_ids = torch.tensor(tok(output, add_special_tokens=False)["input_ids"], dtype=torch.long)
    judgment = judge(output, item["expected"], "gsm8k")
    gold = gold_for(item["question"], item["expected"], reference)
    error = locate_first_error(
        last_question(item["question"]), output, to_float(item["expected"]), gold, judgment.span
    )
    correction = correction_for(error, output, judgment.span, item["expected"], [])
    path = corrected_path(tok, out_ids, output, correction)
    spans = token_char_spans(tok, out_ids)
    if path is None:
        offset = None
    else:
        offset = visible_start(output, spans, path.divergence)
    return {
        "offset": offset,
        "kind": error.kind.value if error else None,
        "found_by": error.found_by.value if error else None,
        "step": error.step_text if error else None,
        "step_span": list(error.span) if error else None,
        "gold_source": error.gold_source if error else None,
        "confidence": error.confidence.value if error else None,
    }


def visible_start(output: str, spans: list[tuple[int, int]], d: int) -> int:
    """Where the token at index d starts, its leading whitespace skipped (' Sally' is 'Sally')."""
    if d >= len(spans):
        return len(output)
    a, b = spans[d]
    return a + len(output[a:b]) - len(output[a:b].lstrip()) if output[a:b].strip() else a


def answer_token_offset(tok, item: dict) -> int | None:
    """The previous divergence without a reference: the first changed character when the
    expected answer replaces the model's (the answer token)."""
    output = item["output"]
    span = judge(output, item["expected"], "gsm8k").span
    if span is None:
        return None
    written, expected = output[span[0] : span[1]], item["expected"]
    k = next((i for i, (a, b) in enumerate(zip(written, expected, strict=False)) if a != b), None)
    return span[0] + (k if k is not None else min(len(written), len(expected)))


@torch.no_grad()
def reference_token_offset(lm, item: dict) -> int | None:
    """The previous divergence with a reference: teacher-force the reference (annotations
    removed) and take its first numeric token the model would not produce; the report page then
    outlined the model's own token at that index."""
    tok = lm.tokenizer
    prompt_ids = lm.prompt_ids(item["question"], chat=True)
    ref_ids = tok(_ANNOTATION.sub("", item["answer"]), add_special_tokens=False)["input_ids"]
    seq = torch.cat([prompt_ids, torch.tensor(ref_ids, dtype=torch.long)])
    logits = lm.model(seq[None]).logits[0]
    p = len(prompt_ids)
    index = None
    for pos in range(p, len(seq)):
        if int(logits[pos - 1].argmax()) != int(seq[pos]) and _DIGIT.search(
            tok.decode([int(seq[pos])])
        ):
            index = pos - p
            break
    if index is None:
        return None
    out_ids = torch.tensor(tok(item["output"], add_special_tokens=False)["input_ids"])
    return visible_start(item["output"], token_char_spans(tok, out_ids), index)


def hit(offset: int | None, span: list[int]) -> bool:
    return offset is not None and span[0] <= offset < span[1]


METHODS = ("located_with_reference", "located_without_reference",
           "baseline_with_reference", "baseline_without_reference")  # fmt: skip


def summarise(rows: list[dict], methods: tuple[str, ...] = METHODS) -> dict:
    """Hit rates and false-blame rates (located before the labelled span) by method and
    condition, overall and by kind."""
    out: dict = {"items": len(rows)}
    kinds = sorted({r["kind"] for r in rows})
    for method in methods:
        hits = [r[method]["hit"] for r in rows]
        early = [r[method]["offset"] is not None and r[method]["offset"] < r["span"][0]
                 for r in rows]  # fmt: skip
        prose = [r[method]["hit"] for r in rows if r["kind"] == "misread_number" and r["prose"]]
        out[method] = {
            "overall": statistics.mean(hits) if hits else float("nan"),
            "false_blame": statistics.mean(early) if early else float("nan"),
            "prose_misread": statistics.mean(prose) if prose else None,
            "prose_misread_n": len(prose),
            "by_kind": {
                k: {
                    "hit_rate": statistics.mean(r[method]["hit"] for r in rows if r["kind"] == k),
                    "n": sum(r["kind"] == k for r in rows),
                }
                for k in kinds
            },
        }
        slip_op = [
            r[method]["hit"] for r in rows if r["kind"] in ("calculation_slip", "wrong_operation")
        ]
        out[method]["calculation_slip+wrong_operation"] = (
            statistics.mean(slip_op) if slip_op else None
        )
    for cond in ("with_reference", "without_reference"):
        located = [r[f"located_{cond}"] for r in rows]
        out[f"confidence_{cond}"] = {
            str(conf): {
                "n": len(sel),
                "hit_rate": statistics.mean(x["hit"] for x in sel),
                "false_blame": statistics.mean(
                    x["offset"] is not None and x["offset"] < r["span"][0]
                    for x, r in zip(located, rows, strict=True)
                    if x["confidence"] == conf
                ),
            }
            for conf in sorted({x["confidence"] for x in located}, key=str)
            if (sel := [x for x in located if x["confidence"] == conf])
        }
    located = [r["located_with_reference"] for r in rows]
    out["kind_agreement_with_reference"] = (
        statistics.mean(r["located_with_reference"]["kind"] == r["kind"] for r in rows)
        if rows
        else None
    )
    out["found_by_with_reference"] = _counts([x["found_by"] for x in located])
    out["found_by_without_reference"] = _counts(
        [r["located_without_reference"]["found_by"] for r in rows]
    )
    return out


def _counts(values) -> dict:
    return {str(v): values.count(v) for v in sorted(set(values), key=str)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["tune", "test", "both"], default="both")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--no-baseline", action="store_true", help="skip the model forwards")
    parser.add_argument("--out", type=Path, default=None, help="default: results/<data>.json")
    args = parser.parse_args()
    args.out = args.out or RESULTS.parent / f"{args.data.stem}.json"
    torch.set_num_threads(1)
    items = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    lm = load_model("bundled")
    tok = lm.tokenizer
    t0 = time.process_time()
    methods = tuple(m for m in METHODS if not (args.no_baseline and m == "baseline_with_reference"))
    rows = []
    for item in items:
        if item["kind"] == "unlabelable" or (args.split != "both" and item["split"] != args.split):
            continue
        row = {"id": item["id"], "kind": item["kind"], "split": item["split"], "span": item["span"],
               "prose": item.get("prose", item["kind"] == "misread_number")}  # fmt: skip
        for cond, reference in (("with_reference", item["answer"]), ("without_reference", None)):
            found = locate(tok, item, reference)
            found["hit"] = hit(found["offset"], item["span"])
            row[f"located_{cond}"] = found
        if not args.no_baseline:
            base_ref = reference_token_offset(lm, item)
            row["baseline_with_reference"] = {
                "offset": base_ref,
                "hit": hit(base_ref, item["span"]),
            }
        base_ans = answer_token_offset(tok, item)
        row["baseline_without_reference"] = {"offset": base_ans, "hit": hit(base_ans, item["span"])}
        rows.append(row)
    result = {
        "splits": {
            s: summarise([r for r in rows if r["split"] == s], methods) for s in ("tune", "test")
        },
        "baseline_with_reference_skipped": args.no_baseline,
        "unlabelable": sum(i["kind"] == "unlabelable" for i in items),
        "cpu_seconds": time.process_time() - t0,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    by_id = {i["id"]: i for i in items}
    for split, summary in result["splits"].items():
        if not summary["items"]:
            continue
        print(f"\n== {split} half: {summary['items']} labelled failures")
        for method in methods:
            m = summary[method]
            kinds = "  ".join(
                f"{k} {v['hit_rate']:.2f} ({v['n']})" for k, v in m["by_kind"].items()
            )
            slip = m["calculation_slip+wrong_operation"]
            prose = m["prose_misread"]
            by_conf = summary.get(f"confidence_{method.removeprefix('located_')}", {})
            confs = "  ".join(
                f"{c} {v['hit_rate']:.2f}/{v['false_blame']:.2f} ({v['n']})"
                for c, v in by_conf.items()
            )
            if confs and method.startswith("located"):
                print(f"  {'':27s} by confidence (hit/false-blame): {confs}")
            print(
                f"  {method:27s} overall {m['overall']:.2f}  false-blame {m['false_blame']:.2f}  "
                f"prose misreads {prose if prose is None else round(prose, 2)} "
                f"({m['prose_misread_n']})  slips+ops {slip if slip is None else round(slip, 2)}"
                f"  | {kinds}"
            )
    print("\nmisses of the located divergence:")
    groups = defaultdict(list)
    for r in rows:
        for cond in ("with_reference", "without_reference"):
            found = r[f"located_{cond}"]
            if not found["hit"]:
                groups[(r["split"], cond)].append((r, found))
    for (split, cond), misses in sorted(groups.items()):
        print(f"\n-- {split}, {cond}: {len(misses)} misses")
        for r, found in misses:
            item = by_id[r["id"]]
            a, b = item["span"]
            at = found["offset"]
            near = (
                item["output"][max(0, at - 20) : at + 20].replace("\n", "⏎")
                if at is not None
                else "-"
            )
            where = "EARLY" if at is not None and at < a else ("late" if at is not None else "-")
            print(f"  {r['id']} [{r['kind']}] {where} labelled {item['output'][a:b]!r}; located "
                  f"{found['kind']}/{found['found_by']}/{found['confidence']} {found['step']!r} "
                  f"at {at}: ...{near}...")  # fmt: skip


if __name__ == "__main__":
    main()
