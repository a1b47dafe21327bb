"""The ``cmft`` console script: one Typer app whose commands, each a thin module here, import heavy code lazily."""

from __future__ import annotations

import typer

from cmft.cli import data, demo, evaluate, export, ingest, search, serve, track, train


def build_app() -> typer.Typer:
    """The app with every command, in the order ``cmft --help`` lists them."""
    application = typer.Typer(add_completion=False, no_args_is_help=True, help="Video visible-infrared person re-ID (CMFT).")
    for module in (search, track, ingest, serve, export, data, train, evaluate, demo):
        module.register(application)
    return application


app = build_app()


def main() -> None:
    """Run the console script."""
    app()


__all__ = ["app", "build_app", "main"]
