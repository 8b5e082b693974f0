"""`driftscope transcoders train|eval`: per-layer transcoders for every MLP of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import friendly_errors, load_lm

transcoders_app = typer.Typer(
    no_args_is_help=True, help="Train and evaluate per-layer transcoders (circuit-tracer format)."
)


@transcoders_app.command("train")
@friendly_errors
def transcoders_train(
    config: Annotated[Path, typer.Argument(help="Training config (.toml or .json).")],
    out_dir: Annotated[Path | None, typer.Option(help="Override the output directory.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Override the token budget.")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads.")] = None,
) -> None:
    """Train (or resume) transcoders for every MLP from one streaming pass over the sources;
    writes OUT_DIR/transcoders (config.yaml + layer_{i}.safetensors)."""
    from diagnostics.transcoders.config import TranscoderTrainConfig
    from diagnostics.transcoders.trainer import train_transcoders

    cfg = TranscoderTrainConfig.from_file(
        config,
        out_dir=str(out_dir) if out_dir else None,
        max_tokens=max_tokens,
        threads=threads,
    )
    result = train_transcoders(cfg, load_lm(cfg.model, cfg.model_dtype))
    fvus = sorted(r.fvu for r in result.layers)
    typer.echo(
        f"trained {len(result.layers)} transcoders, {result.steps} steps ({result.tokens_seen} "
        f"tokens, {result.wall_seconds:.0f} s wall, {result.cpu_seconds:.0f} CPU-s): median "
        f"training fvu {fvus[len(fvus) // 2]:.3f}; saved {result.set_dir or '(not a full set)'}"
    )
    (Path(cfg.out_dir).expanduser() / "layers.json").write_text(
        json.dumps([r.__dict__ for r in result.layers], indent=1) + "\n"
    )
