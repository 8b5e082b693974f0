"""The shipped transcoder set on the bundled model: circuit-tracer loads it as it is, and a
layer's held-out explained variance is the one its record states."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.transcoders.evaluate import evaluate_layers, heldout_windows
from diagnostics.transcoders.io import load_layer, load_transcoder_set, read_record
from diagnostics.transcoders.shipped import shipped_transcoders_dir

SET = shipped_transcoders_dir()
DATA = Path(__file__).resolve().parents[3] / "shared/datasets"

pytestmark = pytest.mark.skipif(
    not (SET / "config.yaml").is_file(),
    reason="the transcoder set is not shipped yet: `make transcoders` trains it (docs/transcoders.md)",
)


def test_circuit_tracer_loads_the_shipped_set(bundled_lm):
    tc_set = load_transcoder_set(SET)
    assert tc_set.n_layers == bundled_lm.n_layers
    assert tc_set.feature_input_hook == "mlp.hook_in"


def test_a_layers_explained_variance_is_the_recorded_one(bundled_lm):
    recorded = {row["layer"]: row for row in read_record(SET)["eval"]["layers"]}
    layer = 15
    sources = sorted(str(p) for p in (DATA / "corpus").glob("*.jsonl"))
    sources.append(str(DATA / "gsm8k/train.jsonl"))
    # the first windows of the same held-out stream the benchmark scored (a prefix of it)
    windows = heldout_windows(bundled_lm, sources, 5_000)
    [ev] = evaluate_layers(bundled_lm, {layer: load_layer(SET, layer)}, windows)
    assert ev.explained_variance == pytest.approx(recorded[layer]["explained_variance"], abs=0.05)
