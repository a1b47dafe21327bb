"""``cmft profile`` (parameters and FLOPs of the fusion variants) and ``cmft train`` (one training run)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cmft.cli._common import _fail, _metrics_table, console, err
from cmft.cli._runs import _run_training


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


def train_cmd(
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dotted overrides, e.g. optim.lr=0.05 train.epochs=10")] = None,
    config: Annotated[Optional[Path], typer.Option("-c", "--config", help="YAML config (configs/...); default: built-in defaults")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run folder (default: runs/<config name>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="resume the run in this folder from its last.pt")] = None,
) -> None:
    """Train CMFT (two-stage progressive learning); checkpoints, logs and the resolved config go to the run folder."""
    from cmft.config import ConfigError, load_config

    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as e:
        _fail(str(e))
    run_dir = resume or out or Path("runs") / (config.stem if config else "default")
    result = _run_training(cfg, run_dir, resume is not None)
    if os.environ.get("RANK", "0") != "0":
        return
    console.print(f"[green]done[/]: {result.epochs_done} epochs in {run_dir}")
    if result.best is not None:
        console.print(_metrics_table({d: result.best[d] for d in ("ir2rgb", "rgb2ir") if d in result.best}, f"best checkpoint (epoch {result.best['epoch'] + 1})"))


def register(app: typer.Typer) -> None:
    """Add ``profile`` and ``train`` to ``app``."""
    app.command("profile")(profile)
    app.command("train")(train_cmd)
