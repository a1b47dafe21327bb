"""The ``cmft`` console script: one app, subcommands that import their heavy code lazily."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Video visible-infrared person re-ID (CMFT).")
console = Console()
err = Console(stderr=True)

DIRECTION_TITLES = {"ir2rgb": "infrared -> visible", "rgb2ir": "visible -> infrared"}


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
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


def _load_vcm(root: Path, skip_missing: bool = False, check_files: bool = True):  # noqa: ANN202
    from cmft.data import DatasetFormatError, load_hitsz_vcm

    try:
        return load_hitsz_vcm(root, check_files=check_files, skip_missing=skip_missing)
    except DatasetFormatError as e:
        _fail(str(e))


def _metrics_table(results: dict[str, dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("direction", "Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP", "queries"):
        table.add_column(col, justify="right" if col != "direction" else "left")
    for d, m in results.items():
        cmc = m["cmc"]
        ranks = [f"{100 * cmc[k - 1]:.2f}" if k <= len(cmc) else "-" for k in (1, 5, 10, 20)]
        table.add_row(DIRECTION_TITLES.get(d, d), *ranks, f"{100 * m['mAP']:.2f}", f"{100 * m['mINP']:.2f}", str(m["num_valid_queries"]))
    return table


def _jsonable_metrics(results: dict[str, dict]) -> dict[str, dict]:
    return {
        d: {"rank1": float(m["cmc"][0]), "cmc": [float(x) for x in m["cmc"]], "mAP": float(m["mAP"]), "mINP": float(m["mINP"]),
            "num_valid_queries": int(m["num_valid_queries"])}
        for d, m in results.items()
    }


@app.command()
def info(
    root: Annotated[Path, typer.Argument(help="dataset root (HITSZ-VCM layout: info/ beside the image folders)")],
    dataset: Annotated[str, typer.Option(help="dataset format")] = "hitsz_vcm",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    skip_missing: Annotated[bool, typer.Option(help="drop frames listed but missing on disk")] = False,
    check_files: Annotated[bool, typer.Option(help="check that every listed frame exists")] = True,
) -> None:
    """Summarise a dataset: ids, tracklets and frames per modality and split (infrared->visible protocol)."""
    if dataset != "hitsz_vcm":
        _fail(f"unknown dataset {dataset!r}; supported: hitsz_vcm")
    from cmft.data import dataset_summary

    summary = dataset_summary(_load_vcm(root, skip_missing, check_files))
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{dataset}: {root}")
    for col in ("split", "ids", "RGB tracklets", "IR tracklets", "RGB frames", "IR frames"):
        table.add_column(col, justify="right" if col != "split" else "left")
    names = {"train": "train", "query": "query (IR)", "gallery": "gallery (RGB)"}
    for split, c in summary.items():
        table.add_row(names[split], *(f"{c[k]:,}" for k in ("ids", "rgb_tracklets", "ir_tracklets", "rgb_frames", "ir_frames")))
    console.print(table)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="output folder (created; must be empty or a previous synth output)")],
    ids: Annotated[int, typer.Option(help="total identities (train + test)")] = 80,
    train_ids: Annotated[Optional[int], typer.Option(help="training identities (default: half)")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed writes identical files")] = 0,
    cameras: Annotated[Optional[int], typer.Option(help="cameras, each with an RGB (day) and an IR (night) mode")] = None,
    height: Annotated[Optional[int], typer.Option(help="crop height in pixels")] = None,
    width: Annotated[Optional[int], typer.Option(help="crop width in pixels")] = None,
    workers: Annotated[Optional[int], typer.Option(help="worker processes (output does not depend on it)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="any other SynthConfig field, KEY=VALUE (see docs/synthetic.md)")] = [],
) -> None:
    """Generate the synthetic visible-infrared video dataset in the HITSZ-VCM layout."""
    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

    given = {"ids": ids, "train_ids": train_ids, "seed": seed, "cameras": cameras, "height": height, "width": width, "workers": workers}
    kwargs = {k: v for k, v in given.items() if v is not None}
    types = {f.name: f.type for f in fields(SynthConfig)}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            _fail(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(types)}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    try:
        config = SynthConfig(**kwargs)
        with _progress() as p:
            generate_synthetic(out, config, progress=_task_callback(p, "rendering identities"))
    except (ValueError, FileExistsError) as e:
        _fail(str(e))
    console.print(f"[green]wrote[/] {out}")
    info(out)


@app.command()
def baseline(
    root: Annotated[Path, typer.Argument(help="HITSZ-VCM dataset root (e.g. the output of `cmft synth`)")],
    seq_len: Annotated[int, typer.Option(help="frames per test clip")] = 6,
    height: Annotated[int, typer.Option(help="frame height fed to the descriptor")] = 128,
    width: Annotated[int, typer.Option(help="frame width")] = 64,
    workers: Annotated[int, typer.Option(help="frame-decoding worker processes")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
) -> None:
    """Score a training-free grey-level + motion descriptor on both HITSZ-VCM directions (the floor to beat)."""
    from cmft.evaluation.retrieval import ClipSpec, evaluate_directions
    from cmft.models import GreyMotionDescriptor

    ds = _load_vcm(root)
    spec = ClipSpec(seq_len=seq_len, height=height, width=width, workers=workers)
    with _progress() as p:
        results = evaluate_directions(GreyMotionDescriptor(), ds, spec, progress=lambda name: _task_callback(p, f"embedding {name}"))
    if as_json:
        print(json.dumps(_jsonable_metrics(results), indent=2))
        return
    n_ids = len({t.pid for t in ds.gallery_rgb})
    console.print(_metrics_table(results, f"grey-motion descriptor (no training) on {root}"))
    console.print(f"chance Rank-1 is about {100 / n_ids:.1f}% ({n_ids} gallery identities)")


@app.command()
def profile(
    model: Annotated[str, typer.Option(help="registered model whose backbone the variants share")] = "cmft_r50",
    seq_len: Annotated[int, typer.Option(help="frames per clip")] = 6,
    height: Annotated[int, typer.Option(help="frame height")] = 256,
    width: Annotated[int, typer.Option(help="frame width")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    out: Annotated[Optional[Path], typer.Option(help="also write the table as markdown here")] = None,
) -> None:
    """Parameters and FLOPs of every paper Table 2 / Table 3 fusion variant, beside the paper's numbers."""
    from cmft.models import list_models
    from cmft.models.profile import profile_markdown, profile_variants

    if model not in list_models():
        _fail(f"unknown model {model!r}; available: {', '.join(list_models())}")
    with err.status("counting parameters and FLOPs (fvcore) for 10 variants..."):
        rows = profile_variants(model, seq_len, height, width)
    setting = f"{model}, {seq_len} frames of {height}x{width} per modality"
    if out is not None:
        out.write_text(profile_markdown(rows, setting))
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    table = Table(title=f"fusion variants: {setting} (FLOPs = multiply-adds)")
    for col in ("variant", "params total", "params fusion", "Conv6 CCF", "FLOPs total", "FLOPs fusion", "paper params", "paper FLOPs"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        conv6 = "-" if r.params_ccf_conv6 is None else f"{r.params_ccf_conv6 / 1e6:.2f}M"
        table.add_row(r.variant, f"{r.params_total / 1e6:.2f}M", f"{r.params_fusion / 1e6:.2f}M", conv6,
                      f"{r.flops_total / 1e9:.2f}G", f"{r.flops_fusion / 1e9:.3f}G", r.paper_params, r.paper_flops)
    console.print(table)


def main() -> None:
    app()
