"""What every ``cmft`` command module shares: the consoles, error exit, progress bars, dataset loading and tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)  # no markup, no wrapping
    raise typer.Exit(code=2)


def _warn(message: str) -> None:
    """A warning line on stderr (no markup, no wrapping); the command goes on."""
    err.print(Text("warning: ", style="bold yellow") + Text(message), soft_wrap=True)


def _warn_pictures(failed: dict[str, Exception]) -> None:
    """One warning line per report picture that could not be drawn, naming the picture and the error."""
    for name, e in failed.items():
        _warn(f"report picture {name} was not drawn: {type(e).__name__}: {e}")


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress display (bars with rate and time left) that prints nothing when it is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    ) as p:
        yield p


def _task_callback(progress: Any, description: str) -> Callable[[int, int], None]:
    """A new task on ``progress`` and the ``(done, total)`` callback that advances it."""
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update


def _load_data(root: Path, dataset: str = "auto", skip_missing: bool = False, check_files: bool = True,
               splits: tuple[str, ...] | None = None, trial: int | None = None, mode: str = "all",
               protocol: str | None = None) -> Any:
    """Load any supported dataset, or exit with its error. HITSZ-VCM: by default every split whose name list has
    frames (a ``cmft track`` export may hold only the test split)."""
    from cmft.data.errors import DatasetFormatError
    from cmft.data.datasets.registry import load_dataset

    try:
        return load_dataset(dataset, root, skip_missing=skip_missing, check_files=check_files, splits=splits, trial=trial,
                            mode=mode, protocol=protocol)
    except (DatasetFormatError, ValueError) as e:
        _fail(str(e))


def _metrics_table(results: dict[str, dict], title: str) -> Table:
    """Rank-1/5/10/20, mAP, mINP per row; rows averaged over trials show ``mean ± sd`` for Rank-1 and mAP."""
    from cmft.data.types import DIRECTION_TITLES

    table = Table(title=title)
    for col in ("direction", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP", "queries"):
        table.add_column(col, justify="right" if col != "direction" else "left")
    for d, m in results.items():
        cmc = m["cmc"]
        ranks = [f"{100 * cmc[k - 1]:.2f}" if k <= len(cmc) else "-" for k in (1, 5, 10, 20)]
        mAP = f"{100 * m['mAP']:.2f}"
        if "mAP_std" in m:
            ranks[0] += f" ± {100 * m['cmc_std'][0]:.2f}"
            mAP += f" ± {100 * m['mAP_std']:.2f}"
        table.add_row(DIRECTION_TITLES.get(d, d), *ranks, mAP, f"{100 * m['mINP']:.2f}", str(m["num_valid_queries"]))
    return table


def _print_summary(ds: Any, title: str) -> None:
    """Identities, tracklets and frames per split and modality of a loaded dataset, as a table."""
    from cmft.data import dataset_summary

    summary = dataset_summary(ds)
    table = Table(title=title)
    for col in ("split", "ids", "RGB tracklets", "IR tracklets", "RGB frames", "IR frames"):
        table.add_column(col, justify="right" if col != "split" else "left")
    mixed = ds.num_query is not None  # query and gallery are sets of their own, each with both modalities
    names = {"train": "train", "query": "query" if mixed else "query (IR)", "gallery": "gallery" if mixed else "gallery (RGB)",
             "auxiliary": "auxiliary (train_auxiliary)"}
    for split, c in summary.items():
        if split in names:
            table.add_row(names[split], *(f"{c[k]:,}" for k in ("ids", "rgb_tracklets", "ir_tracklets", "rgb_frames", "ir_frames")))
    console.print(table)
