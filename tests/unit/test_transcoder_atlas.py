"""The atlas of a whole transcoder set from one streaming pass (tiny Llama, 4 layers, a random
set): each layer's statistics equal a brute-force pass over that layer's MLP inputs and the
per-layer pipeline's atlas; a stopped build resumes; ids `layer/feature`; compact storage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from diagnostics.atlas import AtlasError, build_atlas
from diagnostics.atlas.dictionary import transcoder_layer
from diagnostics.atlas.transcoder_atlas import (
    KEEP_CONTEXTS,
    TranscoderAtlas,
    feature_id,
    parse_feature_id,
)
from diagnostics.atlas.transcoder_build import build_transcoder_atlas
from diagnostics.sae.harvest import token_windows
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs
from tests.conftest import make_tiny_lm
from tests.unit.test_atlas_build import make_corpus
from tests.unit.test_atlas_resume_and_dictionaries import _random_transcoders

SETTINGS = dict(
    max_tokens=3_000, ctx_len=64, batch_size=8, n_contexts=8, score_context_len=8, progress=False
)  # fmt: skip
D_TC = 24


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tc_atlas")
    lm = make_tiny_lm()
    _random_transcoders(lm, make_corpus(40), root / "tc", d_tc=D_TC)
    docs = make_corpus(60, seed=1)
    path = build_transcoder_atlas(lm, root / "tc", docs, checkpoint_dir=root / "ck", **SETTINGS)
    return lm, root, docs, path


def _brute_force(lm, docs, layers, n_tokens):
    """Each layer's features [text tokens, d_tc] window by window, until `n_tokens`."""
    special = torch.tensor(lm.tokenizer.all_special_ids)
    feats, total = {layer: [] for layer in layers}, 0
    for w in token_windows(lm.tokenizer, docs, SETTINGS["ctx_len"]):
        ids = torch.tensor([w])
        x, _ = mlp_inputs_outputs(lm, ids, list(layers))  # [n_layers, 1, seq, d]
        text = ~torch.isin(ids[0], special)
        for k, (layer, tc) in enumerate(layers.items()):
            feats[layer].append(tc.encode(x[k, 0].float())[text].detach())
        total += int(text.sum())
        if total >= n_tokens:
            break
    return {layer: torch.cat(f) for layer, f in feats.items()}


def test_one_pass_gives_every_layer_the_statistics_of_its_own_pass(built):
    lm, root, docs, path = built
    atlas = TranscoderAtlas.load(root / "tc")
    assert atlas.layers == [0, 1, 2, 3] and atlas.d_tc == D_TC
    layers = {layer: transcoder_layer(root / "tc", layer) for layer in atlas.layers}
    n_tokens = atlas.meta["n_tokens"]
    brute = _brute_force(lm, docs, layers, n_tokens)
    for layer, f in brute.items():
        a = atlas.layer(layer)
        assert a.n_tokens == n_tokens == len(f)
        np.testing.assert_array_equal(a.arrays["count"], (f > 0).sum(0).numpy())
        np.testing.assert_allclose(a.max_activation, f.amax(0).numpy(), rtol=1e-5)
        fired = (f > 0).sum(0).clamp(min=1)
        np.testing.assert_allclose(a.mean_activation, (f.sum(0) / fired).numpy(), rtol=1e-4)
    # and the same atlas as the per-layer pipeline (build_atlas) gives that layer
    single = build_atlas(lm, layers[2], docs, **SETTINGS | {"output_contexts": 0})
    two = atlas.layer(2)
    for key in ("count", "density", "detection_auroc", "description_auroc", "format_share"):
        np.testing.assert_array_equal(
            two.arrays[key], single.arrays[key].astype(two.arrays[key].dtype)
        )
    assert two.descriptions == single.descriptions
    described = [i for i, s in enumerate(two.label_sources) if s != "peaks"]
    assert [two.labels[i] for i in described] == [single.labels[i] for i in described]


def test_every_live_feature_has_a_label_and_the_storage_is_compact(built):
    _, root, _, path = built
    atlas = TranscoderAtlas.load(root / "tc")
    for layer in atlas.layers:
        a = atlas.layer(layer)
        assert all(a.labels[i] for i in np.nonzero(a.live)[0])
        for i in np.nonzero(a.live)[0]:
            if a.label_sources[i] == "peaks":  # no description: the tokens it peaks on
                peak = a.contexts(int(i))[0]
                assert a.labels[i].startswith("strongest on ") and not a.descriptions[i]
                assert peak.tokens[peak.peak_index].strip() in a.labels[i]
        assert a.arrays["ctx_tokens"].shape[1:] == (KEEP_CONTEXTS, 17) and a.context_peak == 12
        assert "histogram" not in a.arrays and "score_windows" not in a.arrays
    assert (path / "vocab.json").is_file() and (path / "layer_0" / "rules.json.gz").is_file()
    assert "vocab" not in json.loads((path / "layer_0" / "atlas.json").read_text())
    assert not (root / "ck" / "atlas").exists()  # staged there, moved next to the set
    assert atlas.meta["cost"]["pass_seconds"] > 0 and atlas.meta["summary"]["n_latents"] == 4 * D_TC


def test_ids_search_and_node_labels(built):
    _, root, _, _ = built
    atlas = TranscoderAtlas.load(root / "tc")
    assert parse_feature_id(feature_id(3, 17)) == (3, 17) == parse_feature_id(" 3/17 ")
    for bad in ("3", "3/", "/4", "a/1", "1/2/3", "-1/2", "٣/1"):
        with pytest.raises(ValueError, match="LAYER/FEATURE"):
            parse_feature_id(bad)
    a = atlas.layer(1)
    live = int(np.nonzero(a.live)[0][0])
    assert atlas.node_label(1, live) == a.label(live) != ""
    assert atlas.node_label(9, 0) is None and atlas.node_label(1, D_TC) is None
    hits = atlas.search_label(a.label(live))
    assert (1, live) in hits[:5]
    assert atlas.entry(1, live).label == a.label(live) and atlas.card(1, live) is not None


def test_a_stopped_build_resumes_to_the_same_atlas(built, tmp_path):
    lm, root, docs, path = built
    shutil.copytree(root / "tc", tmp_path / "tc", ignore=shutil.ignore_patterns("atlas"))

    def stopping():
        for k, doc in enumerate(docs):
            if k == 30:
                raise KeyboardInterrupt
            yield doc

    kw = SETTINGS | {"checkpoint_dir": tmp_path / "ck", "checkpoint_every": 2}
    with pytest.raises(KeyboardInterrupt):
        build_transcoder_atlas(lm, tmp_path / "tc", stopping(), **kw)
    assert (tmp_path / "ck" / "pass.pt").is_file() and not (tmp_path / "tc" / "atlas").exists()
    build_transcoder_atlas(lm, tmp_path / "tc", docs, **kw)
    again, first = TranscoderAtlas.load(tmp_path / "tc"), TranscoderAtlas.load(root / "tc")
    for layer in first.layers:
        for key, value in first.layer(layer).arrays.items():
            np.testing.assert_array_equal(again.layer(layer).arrays[key], value, err_msg=key)
        assert again.layer(layer).labels == first.layer(layer).labels


def test_a_missing_or_foreign_atlas_is_refused(built, tmp_path):
    lm, root, _, _ = built
    assert TranscoderAtlas.load(tmp_path, missing_ok=True) is None
    with pytest.raises(AtlasError, match="features build --transcoders"):
        TranscoderAtlas.load(tmp_path)
    shutil.copytree(root / "tc", tmp_path / "other")  # the atlas beside a retrained layer 0
    layer0 = tmp_path / "other" / "layer_0.safetensors"
    tensors = load_file(layer0)
    save_file(tensors | {"W_dec": tensors["W_dec"].flip(0).contiguous()}, layer0)
    other = TranscoderAtlas.load(tmp_path / "other")
    assert other.node_label(1, 0) is not None or other.layer(1).d_sae == D_TC
    with pytest.raises(AtlasError, match="another set"):
        other.layer(0)
