"""`driftscope apikey create`: API keys of the service."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import friendly_errors

apikey_app = typer.Typer(no_args_is_help=True, help="Manage API keys of the service.")


@apikey_app.command("create")
@friendly_errors
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
) -> None:
    """Create an API key (stored hashed in DATABASE_URL) and print it once."""
    from service.api_keys import create_api_key
    from service.db import migrate, session_scope

    migrate()
    with session_scope() as session:
        typer.echo(create_api_key(session, name))
