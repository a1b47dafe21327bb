"""What every ``cmft`` subcommand module shares: the Typer app, the consoles, error exit and progress bars."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video visible-infrared person re-ID (CMFT).")
console = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    from rich.text import Text

    err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)  # no markup, no wrapping
    raise typer.Exit(code=2)


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress display (bars with rate and time left) that prints nothing when it is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as p:
        yield p


def _task_callback(progress: Any, description: str):  # noqa: ANN202 - a closure factory
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update
