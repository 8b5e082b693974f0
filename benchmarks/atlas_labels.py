"""Measure the readable labels of the shipped atlas (issue 15) and write them to a file.

Reads the atlas of the default SAE and, for "before" numbers, the labels of the atlas it replaced
(`--before`: a directory holding that atlas's atlas.json, e.g. from `git show`). Writes
benchmarks/results/atlas_labels.json:

- detection AUROC of the descriptions vs the full rules (same held-out contexts, same hard
  negatives machinery), medians over latents scored both ways;
- the share of labels with a sub-word fragment, before and after: a shown element with a run of
  letters that is not a word of its own in the text corpus (seen space- or punctuation-delimited
  at least 3 times in `--corpus`);
- generic latents, causal output sides, the retrieval check (a latent's own description, searched
  with `features search --label`, ranks it in the top 10) on 200 random described latents, and 20
  random latents before/after;
- the atlas load time (median of 5 loads in this process).

    .venv/bin/python benchmarks/atlas_labels.py --before /tmp/old_atlas --corpus ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
from diagnostics.texts import iter_documents

from diagnostics.atlas import FeatureAtlas

RESULTS = Path(__file__).parent / "results" / "atlas_labels.json"
_QUOTED = re.compile(r'"([^"]*)"')
_LETTERS = re.compile(r"[^\W\d_]+", re.UNICODE)


def corpus_words(root: Path, min_count: int = 3) -> set[str]:
    """Lower-case words seen on their own at least `min_count` times in the corpus and GSM8K."""
    counts: Counter[str] = Counter()
    for path in sorted(root.glob("**/*.jsonl")):
        for doc in iter_documents(path, "all"):
            counts.update(w.lower() for w in _LETTERS.findall(doc))
    return {w for w, n in counts.items() if n >= min_count}


def has_fragment(label: str, vocabulary: set[str]) -> bool:
    """Whether a shown (quoted) element of the label has a run of letters that is not a word."""
    return any(
        run.lower() not in vocabulary
        for element in _QUOTED.findall(label)
        for run in _LETTERS.findall(element)
    )


def median(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return round(float(np.median(x)), 4) if len(x) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="dir of the old atlas.json")
    parser.add_argument("--corpus", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--atlas", default="default", help="SAE or atlas directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    loads = []
    for _ in range(5):
        t = time.perf_counter()
        atlas = FeatureAtlas.load(args.atlas)
        loads.append(time.perf_counter() - t)
    old_labels: list[str] = json.loads((args.before / "atlas.json").read_text())["labels"]
    a = atlas.arrays
    live = atlas.live
    described = live & np.array([bool(d) for d in atlas.descriptions])
    both = described & ~np.isnan(a["detection_auroc"]) & ~np.isnan(a["description_auroc"])
    words = corpus_words(args.corpus)
    old_live = [old_labels[i] for i in np.nonzero(live)[0]]
    new_live = [atlas.labels[i] for i in np.nonzero(live)[0]]
    causal = live & (a["output_lifts"][:, 0] > a["output_threshold"])

    rng = np.random.default_rng(args.seed)
    sample = rng.choice(
        np.nonzero(described)[0], size=min(200, int(described.sum())), replace=False
    )
    t = time.perf_counter()
    ranks = [atlas.search_label(atlas.description(int(i)))[:10] for i in sample]
    search_ms = (time.perf_counter() - t) / len(sample) * 1e3
    found = [int(i) in r for i, r in zip(sample, ranks, strict=True)]
    shown = rng.choice(np.nonzero(live)[0], size=20, replace=False)
    test = atlas.meta.output_test
    result = {
        "atlas": atlas.version,
        "load_ms_median_of_5": round(statistics.median(loads) * 1e3, 1),
        "n_live": int(live.sum()),
        "n_described": int(described.sum()),
        "n_scored_both": int(both.sum()),
        "median_detection_auroc_full_rule": median(a["detection_auroc"][both]),
        "median_detection_auroc_description": median(a["description_auroc"][both]),
        "median_random_label_auroc_description": median(a["description_random_auroc"][both]),
        "share_description_auroc_ge_0.75": round(
            float((a["description_auroc"][both] >= 0.75).mean()), 4
        ),
        "median_coverage_full_rule_vs_description": None,
        "share_labels_with_subword_fragment_before": round(
            float(np.mean([has_fragment(x, words) for x in old_live])), 4
        ),
        "share_labels_with_subword_fragment_after": round(
            float(np.mean([has_fragment(x, words) for x in new_live])), 4
        ),
        "n_generic": int(atlas.generic.sum()),
        "share_generic_of_live": round(float(atlas.generic.sum() / live.sum()), 4),
        "generic_by_reason": dict(
            Counter(
                atlas.generic_reason(int(i)).split(":")[0] for i in np.nonzero(atlas.generic)[0]
            )
        ),
        "n_causal_output": int(causal.sum()),
        "share_causal_output_of_live": round(float(causal.sum() / live.sum()), 4),
        "output_test": test,
        "retrieval_top10_share": round(float(np.mean(found)), 4),
        "retrieval_sample": len(sample),
        "search_ms_per_query": round(search_ms, 1),
        "random_latents_before_after": [
            {
                "id": int(i),
                "before": old_labels[int(i)],
                "after": atlas.labels[int(i)],
                "generic": atlas.generic_reason(int(i)),
            }
            for i in sorted(shown)
        ],  # fmt: skip
    }
    rules = atlas.rules
    cov_rule = [rules[i]["coverage"] for i in np.nonzero(described)[0]]
    cov_desc = [atlas.description_rule(int(i)).coverage for i in np.nonzero(described)[0]]
    result["median_coverage_full_rule_vs_description"] = [
        round(float(np.median(cov_rule)), 4),
        round(float(np.median(cov_desc)), 4),
    ]
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "random_latents_before_after"}, indent=2
        )
    )


if __name__ == "__main__":
    main()
