"""`python -m diagnostics` is the `driftscope` command."""

from diagnostics.cli import app

app(prog_name="driftscope")
