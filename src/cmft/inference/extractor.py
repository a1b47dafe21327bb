"""Embed tracklets with a trained checkpoint: the entry point for indexing, search and export.

``Extractor(checkpoint)(tracklets, modality)`` takes tracklets in whatever form a user holds them (a frame
folder, a list of image paths, a ``(T, H, W, 3)`` uint8 array, a ``(T, 3, H, W)`` tensor), samples each to
the run's test clip length exactly as evaluation does, batches them and returns L2-normalised float32 rows,
so cosine similarity is a dot product.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from cmft.data.loader import read_frames
from cmft.data.sampling import sample_frame_indices
from cmft.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cmft.data.types import Modality, Tracklet

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TrackletInput = Union[str, Path, Sequence[Union[str, Path]], np.ndarray, torch.Tensor, Tracklet]


def frame_paths(folder: str | Path) -> list[str]:
    """The image files of a tracklet folder in natural order (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such tracklet folder")
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=key)
    if not files:
        raise ValueError(f"{folder}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [str(p) for p in files]


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Extractor:
    """A checkpoint's single-modality embedding, batched, on CPU or GPU (bf16 autocast on GPU unless ``amp=False``)."""

    def __init__(self, checkpoint: str | Path | dict[str, Any], device: str = "auto", amp: bool | None = None,
                 batch_size: int = 32, seq_len: int | None = None) -> None:
        from cmft.engine.checkpoint import load_checkpoint, model_from_checkpoint

        ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        self.device = _resolve_device(device)
        self.model = model_from_checkpoint(ckpt, self.device)
        cfg = ckpt["config"]
        self.height, self.width = int(cfg["data"]["height"]), int(cfg["data"]["width"])
        self.seq_len = int(seq_len or cfg["eval"]["seq_len"])
        self.batch_size = batch_size
        self.amp = (self.device.type == "cuda") if amp is None else amp
        self.model_name = ckpt.get("model_name", "cmft")
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 1, 3, 1, 1)

    @cached_property
    def dim(self) -> int:
        """Embedding width (one probe forward pass, the first time it is asked)."""
        with torch.inference_mode():
            probe = torch.zeros(1, self.seq_len, 3, self.height, self.width, device=self.device)
            return int(self.model.embed(probe, "rgb").shape[1])

    def clip(self, tracklet: TrackletInput) -> torch.Tensor:
        """One tracklet as a uint8 clip ``(seq_len, 3, height, width)``, frames picked as the test loader picks them."""
        if isinstance(tracklet, Tracklet):
            tracklet = list(tracklet.paths)
        if isinstance(tracklet, (str, Path)):
            tracklet = frame_paths(tracklet)
        if isinstance(tracklet, np.ndarray):
            tracklet = torch.from_numpy(np.ascontiguousarray(tracklet))
            if tracklet.ndim != 4 or tracklet.shape[-1] not in (1, 3):
                raise ValueError(f"an array tracklet must be (T, H, W, 3) uint8 RGB, got shape {tuple(tracklet.shape)}")
            tracklet = tracklet.permute(0, 3, 1, 2)
        if isinstance(tracklet, torch.Tensor):
            if tracklet.ndim != 4 or tracklet.shape[1] not in (1, 3) or len(tracklet) == 0:
                raise ValueError(f"a tensor tracklet must be (T, 3, H, W) with T >= 1, got shape {tuple(tracklet.shape)}")
            frames = tracklet[sample_frame_indices(len(tracklet), self.seq_len, "test")]
            if frames.is_floating_point():
                frames = (frames.clamp(0, 1) * 255).round()
            frames = frames.to(torch.uint8).expand(-1, 3, -1, -1)
            return torch.nn.functional.interpolate(frames.float(), (self.height, self.width), mode="bilinear",
                                                   antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
        paths = [str(p) for p in tracklet]
        if not paths:
            raise ValueError("a tracklet needs at least one frame")
        return read_frames([paths[i] for i in sample_frame_indices(len(paths), self.seq_len, "test")], self.height, self.width)

    @torch.inference_mode()
    def embed_clips(self, clips: torch.Tensor, modality: Modality) -> torch.Tensor:
        """uint8 clips ``(B, T, 3, H, W)`` -> L2-normalised float32 embeddings ``(B, D)`` on the CPU."""
        x = (clips.to(self.device).float() / 255 - self.mean) / self.std
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            f = self.model.embed(x, modality)
        return torch.nn.functional.normalize(f.float(), dim=1).cpu()

    def __call__(self, tracklets: Sequence[TrackletInput] | TrackletInput, modality: Modality) -> np.ndarray:
        """Embed tracklets of one modality; a single tracklet gives one row."""
        if modality not in ("rgb", "ir"):
            raise ValueError(f"unknown modality {modality!r}; choose 'rgb' or 'ir'")
        single = isinstance(tracklets, (str, Path, np.ndarray, torch.Tensor, Tracklet)) or (
            isinstance(tracklets, Sequence) and len(tracklets) > 0 and isinstance(tracklets[0], (str, Path)) and
            Path(tracklets[0]).is_file())
        items = [tracklets] if single else list(tracklets)
        out = []
        for start in range(0, len(items), self.batch_size):
            clips = torch.stack([self.clip(t) for t in items[start:start + self.batch_size]])
            out.append(self.embed_clips(clips, modality))
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)
