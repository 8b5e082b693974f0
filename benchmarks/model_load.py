"""Time loading the bundled model: first load (GGUF de-quantized into an empty cache) vs cached.

Each measurement runs in a fresh Python process, so the cached number includes no warm imports
of the model weights. Writes benchmarks/results/model_load.json.

    .venv/bin/python benchmarks/model_load.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "model_load.json"
SNIPPET = (
    "import json; from diagnostics.model_loading import load_model; lm = load_model(); "
    "print(json.dumps({'seconds': lm.load_seconds, 'from_cache': lm.from_cache}))"
)


def one_load(cache: str) -> dict:
    env = os.environ | {"DRIFTSCOPE_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    first, cached = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold = one_load(cache)
            warm = one_load(cache)
            assert not cold["from_cache"] and warm["from_cache"]
            first.append(cold["seconds"])
            cached.append(warm["seconds"])
    result = {
        "first_load_s_median": statistics.median(first),
        "cached_load_s_median": statistics.median(cached),
        "speedup": statistics.median(first) / statistics.median(cached),
        "first_load_s": first,
        "cached_load_s": cached,
        "torch_threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'first load (de-quantize + cache)':<36} {result['first_load_s_median']:8.2f} s")
    print(f"{'cached load':<36} {result['cached_load_s_median']:8.2f} s")
    print(f"{'speedup':<36} {result['speedup']:8.1f} x")


if __name__ == "__main__":
    main()
