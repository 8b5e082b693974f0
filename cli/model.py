"""`driftscope model info` and `driftscope generate`: the model runtime."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.common import ModelOpt, RawOpt, friendly_errors, load_lm

model_app = typer.Typer(no_args_is_help=True, help="Inspect the language model.")


@model_app.command("info")
@friendly_errors
def model_info(
    model: ModelOpt = "bundled",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Load the model and print its identity, shape, hook point and load time."""
    from diagnostics.hooks import resid_post_name

    lm = load_lm(model)
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


@friendly_errors
def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt text.")],
    model: ModelOpt = "bundled",
    max_new_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Token budget.")] = 128,
    raw: RawOpt = False,
) -> None:
    """Greedy generation from PROMPT (chat template unless --raw)."""
    lm = load_lm(model)
    gen = lm.generate(prompt, chat=not raw, max_new_tokens=max_new_tokens)
    typer.echo(gen.text)
