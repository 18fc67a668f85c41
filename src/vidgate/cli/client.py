"""Client commands that talk HTTP to a running gateway (filled in by the video tasks work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
