"""The `vidgate` command: admin commands use the database; client commands speak HTTP."""

from __future__ import annotations

import os
import sys

import typer

from vidgate.cli import admin, client, models, providers, usage

app = typer.Typer(
    name="vidgate",
    help="Self-hostable, API Mall-compatible video generation gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
admin.register(app)
client.register(app)
providers.register(app)
models.register(app)
usage.register(app)


def main() -> None:
    try:
        app()
    except Exception as exc:  # a bug, since each command reports what it expects in one line
        if os.environ.get("VIDGATE_LOG_LEVEL", "").upper() == "DEBUG":
            raise
        lines = str(exc).strip().splitlines()
        detail = f": {lines[0]}" if lines else ""
        print(
            f"error: unexpected {type(exc).__name__}{detail} "
            "(VIDGATE_LOG_LEVEL=DEBUG shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
