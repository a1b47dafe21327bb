"""The ``cmft`` console script: one app, subcommands that import their heavy code lazily."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video visible-infrared person re-ID (CMFT).")


def main() -> None:
    app()
