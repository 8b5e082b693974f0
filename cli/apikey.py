"""`driftscope apikey create|list|revoke`: API keys of the service."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import friendly_errors

apikey_app = typer.Typer(no_args_is_help=True, help="Manage API keys of the service.")


@apikey_app.command("create")
@friendly_errors
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
    admin: Annotated[
        bool, typer.Option(help="The key sees every key's jobs, reports and audits.")
    ] = False,
) -> None:
    """Create an API key (stored hashed in DATABASE_URL) and print it once."""
    from service.api_keys import create_api_key
    from service.db import migrate, session_scope

    migrate()
    with session_scope() as session:
        typer.echo(create_api_key(session, name, admin=admin))


@apikey_app.command("list")
@friendly_errors
def apikey_list() -> None:
    """Every key: prefix, name, admin, created and revoked (never the secret)."""
    from service.api_keys import list_api_keys
    from service.db import as_aware, migrate, session_scope

    migrate()
    with session_scope() as session:
        rows = list_api_keys(session)
    typer.echo(f"{'prefix':<14}{'admin':<7}{'created':<27}{'revoked':<27}name")
    for row in rows:
        created = as_aware(row.created_at).isoformat(timespec="seconds")
        revoked = as_aware(row.revoked_at)
        typer.echo(
            f"{row.prefix:<14}{'yes' if row.admin else 'no':<7}{created:<27}"
            f"{revoked.isoformat(timespec='seconds') if revoked else '-':<27}{row.name}"
        )


@apikey_app.command("revoke")
@friendly_errors
def apikey_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (`ds_<prefix>_...`).")],
) -> None:
    """Revoke a key: it stops working at once; its jobs, reports and audits stay."""
    from service.api_keys import revoke_api_key
    from service.db import migrate, session_scope

    if prefix.startswith("ds_"):
        prefix = prefix.split("_", 2)[1]
    migrate()
    with session_scope() as session:
        row = revoke_api_key(session, prefix)
    if row is None:
        typer.secho(f"error: no API key with prefix {prefix}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {row.prefix} ({row.name or 'no name'})")
