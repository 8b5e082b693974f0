"""Build the atlas of every layer of a transcoder set in one streaming pass.

Each forward of a batch of text windows captures every layer's MLP input (one pass, stopped after
the last MLP: `diagnostics.atlas.dictionary.encoder_inputs`); each layer's transcoder encodes its
own and feeds its own accumulator (`diagnostics.atlas.collect`). Then each layer goes through the
SAE atlas's own finishing stage (`diagnostics.atlas.build.finish_atlas`: rules, descriptions, their
scores, generic marks, logit lens), gets a peak-token label where it has no description, is
trimmed (`diagnostics.atlas.transcoder_atlas.compact`) and saved.

Stages per layer: the causal output test is optional (`output_contexts`, 0 by default: about
(features + null directions) x contexts clamps of the layers above, hours per layer at 256
contexts), and so is the LLM explainer (not run here). Everything else is on by default.

Checkpoints (`diagnostics.atlas.checkpoint`): the pass saves every layer's state every
`checkpoint_every` batches; each finished layer is saved to `<checkpoint>/atlas/layer_{L}/` and
skipped by a resumed build; the output test checkpoints its blocks per layer. The finished atlas
replaces `<set>/atlas/` in one rename.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diagnostics.atlas.build import OUTPUT_CLAMP, finish_atlas
from diagnostics.atlas.checkpoint import CHECKPOINT_EVERY, BuildCheckpoint
from diagnostics.atlas.collect import collect, vocab_size_of
from diagnostics.atlas.dictionary import transcoder_layer
from diagnostics.atlas.labels import vocab_strings
from diagnostics.atlas.store import ATLAS_VERSION, JSON_FILE, sae_fingerprint
from diagnostics.atlas.transcoder_atlas import (
    SET_ATLAS_DIR,
    SET_FILE,
    VOCAB_FILE,
    compact,
    label_unlabelled,
    layer_name,
)
from diagnostics.language_model import LanguageModel
from diagnostics.transcoders.io import read_config


@torch.no_grad()
def build_transcoder_atlas(
    lm: LanguageModel,
    set_dir: str | Path,
    documents: Iterable[str],
    *,
    checkpoint_dir: str | Path,
    max_tokens: int = 300_000,
    ctx_len: int = 256,
    batch_size: int = 16,
    n_contexts: int = 16,
    progress: bool = True,
    score_every: int = 5,
    score_context_len: int = 32,
    max_score_contexts: int = 8192,
    n_logit_tokens: int = 5,
    output_contexts: int = 0,
    output_clamp: float = OUTPUT_CLAMP,
    sources: list[str] | None = None,
    split: str = "",
    seed: int = 0,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> Path:
    """Build and save `<set_dir>/atlas/` (see the module doc); returns its path. The caller
    removes `checkpoint_dir` once it is saved."""
    set_dir = Path(set_dir)
    config = read_config(set_dir)
    n_layers = len(config["transcoders"])
    layers = [transcoder_layer(set_dir, layer) for layer in range(n_layers)]
    settings = {
        "model": lm.model_id, "set": [sae_fingerprint(t.W_dec) for t in layers],
        "max_tokens": max_tokens, "ctx_len": ctx_len, "batch_size": batch_size,
        "n_contexts": n_contexts, "score_every": score_every,
        "score_context_len": score_context_len, "max_score_contexts": max_score_contexts,
        "n_logit_tokens": n_logit_tokens, "output_contexts": output_contexts,
        "output_clamp": output_clamp, "sources": sources or [], "split": split, "seed": seed,
    }  # fmt: skip
    checkpoint = BuildCheckpoint(checkpoint_dir, settings, every=checkpoint_every)
    staging = Path(checkpoint_dir) / SET_ATLAS_DIR
    cost = _cost(staging)
    t0, c0 = time.perf_counter(), time.process_time()
    collected = collect(
        lm, layers, documents, max_tokens=max_tokens, ctx_len=ctx_len, batch_size=batch_size,
        n_contexts=n_contexts, progress=progress, score_every=score_every,
        score_context_len=score_context_len, max_score_contexts=max_score_contexts,
        checkpoint=checkpoint,
    )  # fmt: skip
    cost["pass_seconds"] = round(collected[0].seconds, 1)
    cost["pass_cpu_seconds"] = cost.get("pass_cpu_seconds", 0.0) + time.process_time() - c0
    _write_json(staging / "cost.json", cost)
    summaries: dict[str, dict] = {}
    bar = tqdm(range(n_layers), desc="layers", unit="layer", disable=not progress)
    for layer in bar:
        done = staging / layer_name(layer) / JSON_FILE
        if not done.is_file():
            t1, c1 = time.perf_counter(), time.process_time()
            layer_ck = None
            if output_contexts > 0:  # the output test's blocks, per layer
                layer_ck = BuildCheckpoint(Path(checkpoint_dir) / layer_name(layer), {"l": layer})
            atlas = finish_atlas(
                lm, layers[layer], collected[layer], ctx_len=ctx_len, progress=False,
                score_context_len=score_context_len, n_logit_tokens=n_logit_tokens,
                output_contexts=output_contexts, output_clamp=output_clamp, sources=sources,
                split=split, seed=seed, checkpoint=layer_ck,
            )  # fmt: skip
            label_unlabelled(atlas)
            compact(atlas)
            atlas.save(staging, name=layer_name(layer), vocab=False, gz=True)
            if layer_ck is not None:
                layer_ck.remove()
            cost["finish_seconds"] = cost.get("finish_seconds", 0.0) + time.perf_counter() - t1
            cost["finish_cpu_seconds"] = (
                cost.get("finish_cpu_seconds", 0.0) + time.process_time() - c1
            )
            _write_json(staging / "cost.json", cost)
        collected[layer] = None  # type: ignore[call-overload]  (frees the layer's pass state)
        summaries[str(layer)] = json.loads(done.read_text())["meta"]["summary"]
    strings = vocab_strings(lm.tokenizer, vocab_size_of(lm))
    _write_json(staging / VOCAB_FILE, strings)
    meta = {
        "version": ATLAS_VERSION, "model_id": lm.model_id, "scan": config.get("scan", ""),
        "layers": list(range(n_layers)),
        "d_tc": layers[0].cfg.d_sae, "n_tokens": _n_tokens(staging), "sources": sources or [],
        "split": split, "output_contexts": output_contexts,
        "cost": {k: round(v, 1) for k, v in cost.items()}
        | {"wall_seconds_this_run": round(time.perf_counter() - t0, 1)},
        "summary": _totals(summaries), "layer_summaries": summaries,
    }  # fmt: skip
    _write_json(staging / SET_FILE, meta)
    (staging / "cost.json").unlink(missing_ok=True)
    target = set_dir / SET_ATLAS_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(staging), str(target))
    return target


def _totals(summaries: dict[str, dict]) -> dict:
    """Counts over every layer (n_latents, n_live, n_labelled, n_generic, ...)."""
    keys = ("n_latents", "n_live", "n_dead", "n_dense", "n_labelled", "n_description_scored",
            "n_generic")  # fmt: skip
    return {k: sum(int(s.get(k) or 0) for s in summaries.values()) for k in keys}


def _n_tokens(staging: Path) -> int:
    return int(json.loads((staging / layer_name(0) / JSON_FILE).read_text())["meta"]["n_tokens"])


def _cost(staging: Path) -> dict:
    """The cost of a stopped build so far (a resumed build adds to it)."""
    path = staging / "cost.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False))
    tmp.replace(path)
