"""Export a checkpoint's single-modality embedding to ONNX or TorchScript, and check the file against PyTorch.

Input contract of every exported file (and of :class:`EmbeddingHead`):

* input ``clips``: float32 ``(B, T, 3, H, W)``, RGB channel order, pixel values scaled to [0, 1] and then
  normalised with the ImageNet mean / std (:data:`MEAN`, :data:`STD`), exactly what ``CMFT.embed`` takes.
  An IR frame is its grey image repeated on the three channels, as the data loaders do. ``B`` and ``T``
  are dynamic; ``H x W`` is fixed at the checkpoint's training size.
* output ``embedding``: float32 ``(B, D)``, L2-normalised, so cosine similarity is a dot product. It is the
  stream of the chosen modality followed by its BN neck, the embedding evaluation ranks with.

ONNX files come from ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript), with ``B`` and
``T`` as ``torch.export.Dim`` dynamic dimensions; the model's own temporal shift
(:func:`~cmft.models.temporal_shift.temporal_shift`, free of in-place slice assignment) exports as it is,
and the graph reshapes by the symbolic clip length, not the one of the example.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cmft.data.loader import ClipSpec
from cmft.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_clips
from cmft.data.types import Modality
from cmft.models.cmft import stream_embedding

MEAN, STD = tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
INPUT_NAME, OUTPUT_NAME = "clips", "embedding"
BATCH_AXIS, CLIP_AXIS = "batch", "clip_len"
DEFAULT_OPSET = 18
FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}
Source = str | Path | dict | nn.Module


class ExportError(RuntimeError):
    """The export itself failed (the exporter's message is kept)."""


class EmbeddingHead(nn.Module):
    """One modality of a CMFT model as ``clips -> L2-normalised embedding`` (the contract of this module's doc).

    Holds a copy of the modality's stream and its BN neck; the model passed in is not changed. Always in
    eval mode. The stream's own temporal shift exports as it is (it reshapes by the symbolic clip length).
    """

    def __init__(self, model: nn.Module, modality: Modality) -> None:
        super().__init__()
        if modality not in ("rgb", "ir"):
            raise ValueError(f"unknown modality {modality!r}; choose 'rgb' or 'ir'")
        if not hasattr(model, modality) or not hasattr(model, f"neck_{modality}"):
            raise TypeError(f"expected a cmft CMFT model, got {type(model).__name__}")
        self.modality = modality
        self.stream = copy.deepcopy(getattr(model, modality))
        self.neck = copy.deepcopy(getattr(model, f"neck_{modality}"))
        self.pool = copy.deepcopy(getattr(model, "pool", None))  # GeM, or None for the average
        self.dim = int(self.neck.bn.num_features)
        self.eval()

    def train(self, mode: bool = True) -> EmbeddingHead:
        return super().train(False)  # BN statistics are frozen: an export is an inference graph

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"clips must be (B, T, 3, H, W), got shape {tuple(clips.shape)}")
        return F.normalize(stream_embedding(self.stream, self.pool, self.neck, clips), dim=1)


# ----------------------------------------------------------------------------------------- sources and metadata


def load_source(source: Source) -> tuple[nn.Module, dict[str, Any]]:
    """A model and what is known about it from a checkpoint path, a loaded checkpoint dict or a model.

    The info dict has ``height``, ``width``, ``seq_len`` (``None`` for a bare model), ``model_name``,
    ``checkpoint`` and ``epoch``. Raises ``FileNotFoundError`` / ``ValueError`` for a missing or bad checkpoint.
    """
    from cmft.models.checkpoint import load_checkpoint, model_from_checkpoint

    if isinstance(source, nn.Module):
        return source, {"height": None, "width": None, "seq_len": None, "model_name": type(source).__name__,
                               "checkpoint": None, "epoch": None}
    path = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        source = load_checkpoint(path)
    if not isinstance(source, dict):
        raise TypeError(f"export a checkpoint path, a checkpoint dict or a model, not {type(source).__name__}")
    try:
        model = model_from_checkpoint(source)
        spec = ClipSpec.from_config(source["config"])
        info = {"height": spec.height, "width": spec.width, "seq_len": spec.seq_len, "model_name": source.get("model_name", "cmft"),
                "checkpoint": str(path.resolve()) if path else None, "epoch": source.get("epoch")}
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        where = f"{path}: " if path else ""
        raise ValueError(f"{where}checkpoint lacks what an export needs ({type(e).__name__}: {e})") from None
    return model, info


def _input_size(info: dict[str, Any], height: int | None, width: int | None, seq_len: int | None) -> tuple[int, int, int]:
    h, w = height or info["height"], width or info["width"]
    if not h or not w:
        raise ValueError("a bare model has no input size: pass height= and width= (the training frame size)")
    return int(h), int(w), int(seq_len or info["seq_len"] or 6)


def metadata(info: dict[str, Any], modality: str, fmt: str, dim: int, height: int, width: int, seq_len: int,
             **extra: Any) -> dict[str, Any]:
    """What a consumer of an exported file needs to feed it: the JSON sidecar and the files' own metadata."""
    return {
        "format": fmt,
        "modality": modality,
        "input": {"name": INPUT_NAME, "shape": [BATCH_AXIS, CLIP_AXIS, 3, height, width], "dtype": "float32",
                  "layout": "B, T, C, H, W", "channels": "RGB (IR: grey repeated on 3 channels)",
                  "normalisation": "x = (pixel / 255 - mean) / std", "mean": list(MEAN), "std": list(STD)},
        "output": {"name": OUTPUT_NAME, "shape": [BATCH_AXIS, dim], "dtype": "float32", "l2_normalised": True},
        "height": height, "width": width, "seq_len": seq_len, "embedding_dim": dim,
        "model_name": info.get("model_name"), "checkpoint": info.get("checkpoint"), "epoch": info.get("epoch"),
        "torch": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
    }


def sidecar_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.json`` (beside the exported file)."""
    return Path(path).with_suffix(".json")


def write_sidecar(path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as the JSON sidecar of the exported file ``path``; returns the sidecar's path."""
    from cmft.atomic import write_text_atomic

    side = sidecar_path(path)
    write_text_atomic(side, json.dumps(meta, indent=2) + "\n")
    return side


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces it only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _example(height: int, width: int, seq_len: int, batch: int = 2) -> torch.Tensor:
    # batch 2 and T >= 2: torch.export specialises dimensions of size 0 or 1
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, max(seq_len, 2), 3, height, width, generator=g)


# ------------------------------------------------------------------------------------------------------ export


def export_onnx(source: Source, path: str | Path, modality: Modality = "rgb", *, opset: int = DEFAULT_OPSET,
                height: int | None = None, width: int | None = None, seq_len: int | None = None,
                optimize: bool = True) -> dict[str, Any]:
    """Export one modality's embedding to a self-contained ONNX file (weights inside) with dynamic ``B`` and ``T``.

    ``source``: a checkpoint path or dict (input size from its config) or a CMFT model (give ``height`` and
    ``width``). The example clip for tracing has ``seq_len`` frames (default: the checkpoint's evaluation clip
    length); any clip length works with the file. Returns the metadata (also stored in the file's
    ``metadata_props``), ready for :func:`write_sidecar`.
    """
    model, info = load_source(source)
    h, w, t = _input_size(info, height, width, seq_len)
    head = EmbeddingHead(model, modality)
    example = _example(h, w, t)
    dims = {INPUT_NAME: {0: torch.export.Dim(BATCH_AXIS), 1: torch.export.Dim(CLIP_AXIS)}}
    path = Path(path)
    meta = metadata(info, modality, "onnx", head.dim, h, w, t, opset=opset,
                    exporter=f"torch.onnx.export(dynamo=True), torch {torch.__version__}")
    with warnings.catch_warnings(), _atomic_target(path) as tmp:
        warnings.simplefilter("ignore")  # the exporter's deprecation and fallback chatter; the result is verified
        try:
            with torch.no_grad():  # no_grad halves the export time (no autograd bookkeeping while tracing)
                program = torch.onnx.export(head, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                            dynamic_shapes=dims, opset_version=opset, dynamo=True, optimize=optimize,
                                            external_data=False, verbose=False)
        except Exception as e:
            raise ExportError(f"ONNX export of the {modality} embedding failed: {type(e).__name__}: {e}") from e
        program.model.metadata_props.update({f"cmft.{k}": json.dumps(v) for k, v in meta.items()})
        program.save(str(tmp), external_data=False)
    return meta


def export_torchscript(source: Source, path: str | Path, modality: Modality = "rgb", *, height: int | None = None,
                       width: int | None = None, seq_len: int | None = None) -> dict[str, Any]:
    """Export one modality's embedding as a traced TorchScript module (``torch.jit.load`` needs no cmft).

    Tracing records the clip length symbolically (it is read from the input's shape), so any ``B`` and ``T``
    work. The metadata is also stored in the archive as the extra file ``cmft.json``.
    """
    model, info = load_source(source)
    h, w, t = _input_size(info, height, width, seq_len)
    head = EmbeddingHead(model, modality)
    example = _example(h, w, t)
    meta = metadata(info, modality, "torchscript", head.dim, h, w, t,
                    exporter=f"torch.jit.trace, torch {torch.__version__}")
    path = Path(path)
    with warnings.catch_warnings(), _atomic_target(path) as tmp:
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated in favour of torch.export; TracerWarnings
        try:
            with torch.no_grad():
                traced = torch.jit.trace(head, example, check_trace=False)  # checked by verify_torchscript
        except Exception as e:
            raise ExportError(f"TorchScript trace of the {modality} embedding failed: {type(e).__name__}: {e}") from e
        torch.jit.save(traced, str(tmp), _extra_files={"cmft.json": json.dumps(meta)})
    return meta


# ------------------------------------------------------------------------------------------------ verification


def onnx_providers(device: Literal["auto", "cpu", "cuda"] = "auto") -> list[str]:
    """ONNX Runtime providers: CUDA first when asked for (``auto``: when this onnxruntime has it), then CPU."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in have:
        raise ValueError(f"onnxruntime has no CUDAExecutionProvider here (available: {', '.join(have)})")
    cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in have)
    return (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]


def random_clips(batch: int, clip_len: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 frames normalised like real input: float32 ``(B, T, 3, H, W)``."""
    g = torch.Generator().manual_seed(seed)
    return normalize_clips(torch.randint(0, 256, (batch, clip_len, 3, height, width), generator=g, dtype=torch.uint8))


def compare(run: Callable[[torch.Tensor], np.ndarray], model: nn.Module, modality: Modality, height: int, width: int,
            batch_sizes: Sequence[int] = (1, 3), clip_lengths: Sequence[int] = (3, 5), seed: int = 0) -> dict[str, Any]:
    """Run ``run`` and PyTorch's ``model.embed`` (L2-normalised) on the same random clips for every (B, T).

    Returns ``max_abs_diff`` and ``min_cosine`` over all cases, and ``cases`` with each case's numbers.
    """
    cases = []
    for i, (b, t) in enumerate((b, t) for b in batch_sizes for t in clip_lengths):
        clips = random_clips(b, t, height, width, seed + i)
        with torch.no_grad():
            ref = F.normalize(model.embed(clips, modality).float(), dim=1).numpy()
        got = np.asarray(run(clips), dtype=np.float32)
        if got.shape != ref.shape:
            raise AssertionError(f"batch {b}, clip length {t}: output shape {got.shape}, PyTorch {ref.shape}")
        cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        cases.append({"batch": b, "clip_len": t, "max_abs_diff": float(np.abs(got - ref).max()),
                      "min_cosine": float(cos.min())})
    return {"max_abs_diff": max(c["max_abs_diff"] for c in cases), "min_cosine": min(c["min_cosine"] for c in cases),
            "cases": cases}


def _model_of(model: Source) -> nn.Module:
    return model if isinstance(model, nn.Module) else load_source(model)[0]


def verify_onnx(path: str | Path, model: Source, modality: Modality, *, batch_sizes: Sequence[int] = (1, 3),
                clip_lengths: Sequence[int] = (3, 5), device: Literal["auto", "cpu", "cuda"] = "auto",
                seed: int = 0) -> dict[str, Any]:
    """Compare an exported ONNX file (ONNX Runtime) with PyTorch on random clips of several batch sizes and
    clip lengths. ``model``: the CMFT model or checkpoint it came from. Returns ``max_abs_diff``, ``min_cosine``,
    ``cases`` and ``provider`` (the ONNX Runtime provider that ran it)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=onnx_providers(device))
    shape = session.get_inputs()[0].shape
    height, width = int(shape[3]), int(shape[4])
    name = session.get_inputs()[0].name
    result = compare(lambda x: session.run(None, {name: x.numpy()})[0], _model_of(model), modality, height, width,
                     batch_sizes, clip_lengths, seed)
    return {**result, "provider": session.get_providers()[0]}


def verify_torchscript(path: str | Path, model: Source, modality: Modality, *, batch_sizes: Sequence[int] = (1, 3),
                       clip_lengths: Sequence[int] = (3, 5), seed: int = 0) -> dict[str, Any]:
    """Compare a TorchScript export (``torch.jit.load``, CPU) with PyTorch, as :func:`verify_onnx` does."""
    extra = {"cmft.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["cmft.json"] or "{}")
    if "height" not in meta:
        raise ValueError(f"{path}: no cmft.json in the TorchScript archive (not made by cmft export)")
    with torch.no_grad(), torch.jit.optimized_execution(False):  # the JIT's profiling runs cost seconds per new shape
        result = compare(lambda x: module(x).numpy(), _model_of(model), modality, meta["height"], meta["width"],
                         batch_sizes, clip_lengths, seed)
    return {**result, "provider": "torch.jit (CPU)"}
