"""Build the hand-labelled first-wrong-step set read by benchmarks/first_error.py.

    nice -n 10 .venv/bin/python benchmarks/make_first_error_set.py [--set fresh] generate
    .venv/bin/python benchmarks/make_first_error_set.py [--set fresh] check   # == diagnose()
    .venv/bin/python benchmarks/make_first_error_set.py [--set fresh] merge   # + hand labels

`--set original` (the default) is GSM8K test problems 500-659; `--set fresh` is GSM8K train
problems 5000-5071, labelled by reading before any locator was run on them (issue 25).
`generate` runs the bundled model (fp32, one thread) greedily on the set's problems,
exactly as `diagnose` does in default mode (chat template, 256 new tokens, stopping once the
gsm8k judge's answer is final; left-padded batches, which `check` shows equal batch-1 and
`diagnose`), and keeps the failures the gsm8k judge calls wrong in first_error_failures.jsonl.
The labels in first_error_labels.jsonl were written by a person reading each failure (never by
the locator in diagnostics/first_error.py: the set exists to test it); `merge` turns each
label's span_text into character offsets in the output and writes first_error.jsonl with a
deterministic tune/test split (alternating by problem index). See benchmarks/data/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diagnostics.answers import judge
from diagnostics.model_loading import load_model
from diagnostics.options import DiagnosisOptions

GSM8K = Path(os.environ.get("GSM8K_DIR", "/work/shared/datasets/gsm8k"))
DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class LabelledSet:
    """One labelled set: which GSM8K rows it draws on and where its three files live."""

    name: str
    """`first_error` (the original set) or `first_error_fresh` (labelled blind, issue 25)."""
    split: str
    """The GSM8K file the problems come from: `test` or `train`."""
    first: int
    """First 0-based line index of that file."""
    last: int
    """Last line index (inclusive)."""

    @property
    def failures(self) -> Path:
        return DATA / f"{self.name}_failures.jsonl"

    @property
    def labels(self) -> Path:
        return DATA / f"{self.name}_labels.jsonl"

    @property
    def out(self) -> Path:
        return DATA / f"{self.name}.jsonl"


SETS = {
    # GSM8K test 500-659: no other benchmark or test uses them.
    "original": LabelledSet("first_error", "test", 500, 659),
    # GSM8K train 5000-5071: far past the rows make_distraction_set.py takes (the first short
    # problems in file order) and the few-shot pool (lines 1-5).
    "fresh": LabelledSet("first_error_fresh", "train", 5000, 5071),
}
KINDS = {
    "calculation_slip",
    "wrong_operation",
    "misread_number",
    "invented_step",
    "missing_step",
    "answer_only",
    "unlabelable",
}


def problems(ls: LabelledSet, first: int) -> list[dict]:
    """The set's GSM8K rows first..ls.last (inclusive) with their id and expected number."""
    rows = (GSM8K / f"{ls.split}.jsonl").read_text(encoding="utf-8").splitlines()
    out = []
    for index in range(first, ls.last + 1):
        row = json.loads(rows[index])
        expected = row["answer"].split("####")[-1].strip().replace(",", "")
        out.append({"id": f"gsm8k-{ls.split}-{index}", "index": index, **row, "expected": expected})
    return out


def greedy_outputs(lm, items: list[dict], batch_size: int) -> list[str]:
    """The model's greedy outputs, generated as `diagnose` generates them in default mode."""
    from diagnostics.diagnose import stop_rule

    opts = DiagnosisOptions()
    texts = []
    for b in range(0, len(items), batch_size):
        chunk = items[b : b + batch_size]
        prompts = [lm.prompt_ids(p["question"], chat=opts.chat) for p in chunk]  # [P_i] each
        rows = lm.generate_rows(
            prompts, max_new_tokens=opts.max_new_tokens, stop=stop_rule(opts)
        ).ids
        texts += [lm.tokenizer.decode(ids, skip_special_tokens=True) for ids in rows]
        print(f"  generated {b + len(chunk)}/{len(items)}", flush=True)
    return texts


def generate(ls: LabelledSet, batch_size: int, start: int | None) -> None:
    """Failures of problems start..last; a start after the set's first resumes, appending."""
    lm = load_model("bundled")
    start = ls.first if start is None else start
    items = problems(ls, start)
    t0 = time.process_time()
    failures = 0
    DATA.mkdir(parents=True, exist_ok=True)
    with ls.failures.open("w" if start == ls.first else "a", encoding="utf-8") as f:
        for b in range(0, len(items), batch_size):
            chunk = items[b : b + batch_size]
            for item, output in zip(chunk, greedy_outputs(lm, chunk, batch_size), strict=True):
                if judge(output, item["expected"], "gsm8k").correct:
                    continue
                failures += 1
                keep = ("id", "question", "answer", "expected")
                f.write(json.dumps({**{k: item[k] for k in keep}, "output": output}) + "\n")
            f.flush()
            print(f"{b + len(chunk)}/{len(items)} problems, {failures} failures", flush=True)
    print(f"{len(items)} problems, {failures} failures, {time.process_time() - t0:.0f} CPU s")


def check(ls: LabelledSet, ids: list[str]) -> None:
    """The stored outputs of `ids` equal batch-1 generation and the output `diagnose` reports."""
    from diagnostics.diagnose import diagnose
    from diagnostics.sae.io import load_sae

    lm = load_model("bundled")
    sae = load_sae("default")
    stored = {r["id"]: r for r in map(json.loads, ls.failures.read_text().splitlines())}
    cheap = DiagnosisOptions(verify=False, context=False, null_draws=0, control_draws=0)
    for id_ in ids:
        item = stored[id_]
        single = greedy_outputs(lm, [item], 1)[0]
        report = diagnose(lm, sae, item["question"], item["expected"], options=cheap)
        same = item["output"] == single == report.model_path.text
        print(f"{id_}: batched == batch-1 == diagnose(): {same}")
        if not same:
            raise SystemExit(f"{id_}: outputs differ")


def merge(ls: LabelledSet) -> None:
    """<name>.jsonl: every failure with its hand label, span_text located in the output."""
    failures = [json.loads(line) for line in ls.failures.read_text().splitlines() if line.strip()]
    labels = {}
    for line in ls.labels.read_text(encoding="utf-8").splitlines():
        if line.strip():
            label = json.loads(line)
            if label["id"] in labels:
                raise SystemExit(f"{label['id']}: labelled twice")
            labels[label["id"]] = label
    missing = [f["id"] for f in failures if f["id"] not in labels]
    extra = set(labels) - {f["id"] for f in failures}
    if missing or extra:
        raise SystemExit(f"unlabelled: {missing}; labels without a failure: {sorted(extra)}")
    order = sorted(failures, key=lambda f: int(f["id"].rsplit("-", 1)[1]))
    rows = []
    for n, item in enumerate(order):
        label = labels[item["id"]]
        if label["kind"] not in KINDS:
            raise SystemExit(f"{item['id']}: unknown kind {label['kind']!r}")
        span = None
        if label["kind"] != "unlabelable":
            text = label["span_text"]
            start = item["output"].find(text, label.get("hint", 0))
            if not text or start < 0:
                raise SystemExit(f"{item['id']}: span_text {text!r} not in the output")
            span = [start, start + len(text)]
        extra = {"prose": label["prose"]} if "prose" in label else {}  # the fresh set's
        rows.append({**item, "span": span, "kind": label["kind"], **extra, "note": label["note"],
                     "split": "tune" if n % 2 == 0 else "test"})  # fmt: skip
    ls.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} labelled failures -> {ls.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", choices=sorted(SETS), default="original", dest="which")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="greedy outputs of the set's problems, failures kept")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--start", type=int, default=None, help="resume from this index (appends)")
    chk = sub.add_parser("check", help="stored outputs equal batch-1 generation and diagnose()")
    chk.add_argument("ids", nargs="*", default=[])
    sub.add_parser("merge", help="join the hand labels into first_error.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ls = SETS[args.which]
    if args.command == "generate":
        generate(ls, args.batch_size, args.start)
    elif args.command == "check":
        ids = args.ids or [json.loads(r)["id"] for r in ls.failures.read_text().splitlines()[:2]]
        check(ls, ids)
    else:
        merge(ls)


if __name__ == "__main__":
    main()
