"""`python -m cli` is the `driftscope` command."""

from cli.main import app

app(prog_name="driftscope")
