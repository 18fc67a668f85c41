"""`vidgate models make-tiny`: a tiny random-weight pipeline in diffusers' folder layout, built
offline, to try the diffusers provider (and to test it) without downloading real weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidgate.cli.admin import fail
from vidgate.local_models import PIPELINE_KINDS


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Local models for the diffusers provider.", no_args_is_help=True)
    group.command("make-tiny")(make_tiny)
    app.add_typer(group, name="models")


def make_tiny(
    pipeline: Annotated[str, typer.Option(help=f"The pipeline kind: {', '.join(PIPELINE_KINDS)}.")],
    out: Annotated[Path, typer.Option(help="The folder to write (created if missing).")],
) -> None:
    """Build a tiny random-weight pipeline (seeded, a few MB at most) and save it to OUT."""
    if pipeline not in PIPELINE_KINDS:
        raise fail(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINE_KINDS)})")
    if out.exists() and any(out.iterdir()):
        raise fail(f"{out} exists and is not empty")
    try:
        from vidgate.local_models.tiny import make_tiny as build
    except ModuleNotFoundError as missing:
        raise fail(f"{missing.name} is not installed: pip install 'vidgate[local]'") from None
    build(pipeline, out)
    typer.echo(f"wrote a tiny {pipeline} pipeline to {out}")
