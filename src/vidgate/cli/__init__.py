"""The `vidgate` command: admin commands use the database; client commands speak HTTP."""

from __future__ import annotations

import typer

from vidgate.cli import admin, client

app = typer.Typer(
    name="vidgate",
    help="Self-hostable, API Mall-compatible video generation gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
admin.register(app)
client.register(app)


def main() -> None:
    app()
