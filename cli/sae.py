"""`driftscope sae harvest|train|eval`: activation caches, SAE training and evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    HeldoutFractionOpt,
    ModelOpt,
    SplitOpt,
    friendly_errors,
    load_lm,
    read_documents,
)
from diagnostics.documents import HELDOUT_FRACTION

sae_app = typer.Typer(no_args_is_help=True, help="Harvest activations, train and evaluate SAEs.")

SourcesArg = Annotated[
    list[Path],
    typer.Argument(help="Text files: JSONL with 'text' (or GSM8K question/answer), or .txt."),
]


@sae_app.command("harvest")
@friendly_errors
def sae_harvest(
    sources: SourcesArg,
    out: Annotated[Path, typer.Option(help="Directory of the activation cache.")],
    model: ModelOpt = "bundled",
    layer: Annotated[int | None, typer.Option(help="Hook layer (default n_layers // 2).")] = None,
    split: SplitOpt = "train",
    heldout_fraction: HeldoutFractionOpt = HELDOUT_FRACTION,
    ctx_len: Annotated[int, typer.Option(min=8, max=8192)] = 256,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    model_dtype: Annotated[
        str, typer.Option(help="float32 or bfloat16 (faster on CPU).")
    ] = "bfloat16",
) -> None:
    """Run the model up to LAYER over text and write a memmapped fp16 activation cache."""
    from diagnostics.sae.harvest import harvest

    documents = read_documents([(s, split) for s in sources], heldout_fraction, interleave=True)
    lm = load_lm(model, model_dtype)
    meta = harvest(
        lm,
        documents,
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
    heldout_fraction: HeldoutFractionOpt = HELDOUT_FRACTION,
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
    lm = load_lm(model)
    documents = read_documents([(s, split) for s in sources], heldout_fraction, interleave=True)
    result, density = evaluate_sae(lm, sae, documents, max_tokens=max_tokens)
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
