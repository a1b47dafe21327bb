"""``cmft info``, ``cmft synth`` and ``cmft baseline``: look at a dataset, generate the synthetic one, score the floor."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from cmft.cli._common import _fail, _load_data, _metrics_table, _print_summary, _progress, _task_callback, console


def info(
    root: Annotated[Path, typer.Argument(help="dataset root: HITSZ-VCM (info/), SYSU-MM01 (exp/, cam1..cam6), RegDB (idx/, Visible, Thermal) or BUPTCampus (DATA/, data_paths.json)")],
    dataset: Annotated[str, typer.Option(help="auto (from the layout), hitsz_vcm, sysu_mm01, regdb or buptcampus")] = "auto",
    trial: Annotated[Optional[int], typer.Option(help="RegDB split 1..10 / SYSU-MM01 gallery draw 0..9")] = None,
    mode: Annotated[str, typer.Option(help="SYSU-MM01 search mode: all or indoor")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    skip_missing: Annotated[bool, typer.Option(help="drop frames listed but missing on disk")] = False,
    check_files: Annotated[bool, typer.Option(help="check that every listed frame exists")] = True,
) -> None:
    """Summarise a dataset: ids, tracklets and frames per modality and split (infrared->visible protocol)."""
    from cmft.data import dataset_summary

    ds = _load_data(root, dataset, skip_missing=skip_missing, check_files=check_files, trial=trial, mode=mode)
    if as_json:
        print(json.dumps(dataset_summary(ds), indent=2))
        return
    _print_summary(ds, f"{ds.name}: {root}")


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


def baseline(
    root: Annotated[Path, typer.Argument(help="HITSZ-VCM dataset root (e.g. the output of `cmft synth`)")],
    seq_len: Annotated[int, typer.Option(help="frames per test clip")] = 6,
    height: Annotated[int, typer.Option(help="frame height fed to the descriptor")] = 128,
    width: Annotated[int, typer.Option(help="frame width")] = 64,
    workers: Annotated[int, typer.Option(help="frame-decoding worker processes")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print metrics as JSON")] = False,
) -> None:
    """Score a training-free grey-level + motion descriptor on both HITSZ-VCM directions (the floor to beat)."""
    from cmft.evaluation.report import jsonable_metrics
    from cmft.evaluation.retrieval import ClipSpec, evaluate_directions
    from cmft.models import GreyMotionDescriptor

    ds = _load_data(root, splits=("test",))
    spec = ClipSpec(seq_len=seq_len, height=height, width=width, workers=workers)
    with _progress() as p:
        results = evaluate_directions(GreyMotionDescriptor(), ds, spec, progress=lambda name: _task_callback(p, f"embedding {name}"))
    if as_json:
        print(json.dumps(jsonable_metrics(results), indent=2))
        return
    n_ids = len({t.pid for t in ds.test_rgb})
    console.print(_metrics_table(results, f"grey-motion descriptor (no training) on {root}"))
    console.print(f"chance Rank-1 is about {100 / n_ids:.1f}% ({n_ids} gallery identities)")


def register(app: typer.Typer) -> None:
    """Add ``info``, ``synth`` and ``baseline`` to ``app``."""
    app.command("info")(info)
    app.command("synth")(synth)
    app.command("baseline")(baseline)
