"""The `driftscope` command line."""

from __future__ import annotations

import typer

from cli.apikey import apikey_app
from cli.audit import audit
from cli.diagnose import diagnose
from cli.features import features_app
from cli.model import generate, model_app
from cli.sae import sae_app
from cli.serve import serve_command
from cli.transcoders import transcoders_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None)
app.add_typer(model_app, name="model")
app.add_typer(sae_app, name="sae")
app.add_typer(transcoders_app, name="transcoders")
app.command()(generate)
app.command()(diagnose)
app.add_typer(features_app, name="features")
app.command("audit")(audit)
app.command("serve")(serve_command)
app.add_typer(apikey_app, name="apikey")
