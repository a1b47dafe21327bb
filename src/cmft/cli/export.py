"""``cmft export``: a checkpoint's embedding as ONNX or TorchScript files, a JSON sidecar each, verified against PyTorch.

Everything heavy (torch.onnx, onnxruntime) is imported inside the command.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from cmft.cli._common import _fail, console

FORMATS = ("onnx", "torchscript")
MODALITIES = ("rgb", "ir", "both")
MIN_COSINE = 0.999  # below this an export is wrong, not merely rounded differently


def output_paths(checkpoint: Path, fmt: str, modality: str, out: Path | None) -> dict[str, Path]:
    """Where each modality's file goes: ``--out`` as given for one modality; for ``both``, ``<stem>_rgb<suffix>``
    and ``<stem>_ir<suffix>``. Without ``--out``: beside the checkpoint, named after it."""
    from cmft.inference.export import SUFFIXES

    suffix = SUFFIXES[fmt]
    base = out if out is not None else checkpoint.with_suffix(suffix)
    if base.suffix == "":
        base = base.with_name(base.name + suffix)
    if modality != "both":
        return {modality: base}
    return {m: base.with_name(f"{base.stem}_{m}{base.suffix}") for m in ("rgb", "ir")}


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cmft-export-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        _fail(f"cannot write to {folder}: {e.strerror or e}")


def export(
    checkpoint: Annotated[Path, typer.Argument(help="a cmft checkpoint (best.pt / last.pt of a training run)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx (ONNX Runtime, dynamic batch and clip length) or torchscript (torch.jit.load, no cmft needed)")] = "onnx",
    modality: Annotated[str, typer.Option(help="rgb, ir, or both (one file each: <stem>_rgb / <stem>_ir)")] = "both",
    out: Annotated[Optional[Path], typer.Option(help="output file (default: beside the checkpoint, .onnx / .torchscript)")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version")] = 18,
    verify: Annotated[bool, typer.Option(help="compare each file with PyTorch on random clips (batch 1 and 3, two clip lengths)")] = True,
) -> None:
    """Export the retrieval embedding of a checkpoint: input normalised clips (B, T, 3, H, W), output L2-normalised (B, D)."""
    fmt, modality = fmt.lower(), modality.lower()
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if modality not in MODALITIES:
        _fail(f"--modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if fmt == "onnx" and not 7 <= opset <= 25:
        _fail(f"--opset must be an ONNX opset between 7 and 25 (18 is the default), got {opset}")
    if out is not None and out.is_dir():
        _fail(f"--out {out} is a folder; give a file name such as {out / ('model' + ('.onnx' if fmt == 'onnx' else '.torchscript'))}")
    try:
        if fmt == "onnx":
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
    except ImportError as e:
        _fail(f"ONNX export needs onnxscript and onnxruntime ({e.name} is missing): pip install 'cmft[serve]'")

    from cmft.inference.export import (ExportError, export_onnx, export_torchscript, load_source, verify_onnx,
                                       verify_torchscript, write_sidecar)

    try:
        model, info = load_source(checkpoint)  # the reference for verification; each export rebuilds its own copy
    except (FileNotFoundError, ValueError, TypeError) as e:
        _fail(str(e))
    targets = output_paths(checkpoint, fmt, modality, out)
    for folder in {p.parent for p in targets.values()}:
        _check_writable(folder)

    lengths = (info["seq_len"], info["seq_len"] + 2)
    for mod, path in targets.items():
        console.print(f"{mod}: exporting to {path} ...", soft_wrap=True, markup=False, highlight=False)
        try:
            if fmt == "onnx":
                meta = export_onnx(checkpoint, path, mod, opset=opset)
            else:
                meta = export_torchscript(checkpoint, path, mod)
        except (ExportError, ValueError) as e:
            _fail(str(e))
        except OSError as e:
            _fail(f"cannot write {path}: {e.strerror or e}")
        line = "not verified (--no-verify)"
        if verify:
            check = verify_onnx if fmt == "onnx" else verify_torchscript
            try:
                v = check(path, model, mod, batch_sizes=(1, 3), clip_lengths=lengths)
            except Exception as e:  # the runtime rejects the file or an input shape: report it, keep the file
                _fail(f"verification of {path} failed ({type(e).__name__}: {e}); the file is kept for inspection")
            meta["verification"] = v
            line = (f"verification ({v['provider']}, batch 1 and 3, clip lengths {lengths[0]} and {lengths[1]}): "
                    f"max abs diff {v['max_abs_diff']:.2e}, min cosine {v['min_cosine']:.7f}")
        side = write_sidecar(path, meta)
        console.print(f"{mod}: wrote {path} ({path.stat().st_size / 2**20:.1f} MB) and {side.name}; input "
                      f"B x T x 3 x {meta['height']} x {meta['width']} -> {meta['embedding_dim']}-d embedding",
                      soft_wrap=True, markup=False, highlight=False)
        console.print(f"{mod}: {line}", soft_wrap=True, markup=False, highlight=False)
        if verify and v["min_cosine"] < MIN_COSINE:
            _fail(f"{path} does not match PyTorch (min cosine {v['min_cosine']:.6f} < {MIN_COSINE}); "
                  "the file and its sidecar are kept for inspection")


def register(app: typer.Typer) -> None:
    """Add ``export`` to ``app``."""
    app.command("export")(export)
