"""Embed tracklets with a trained checkpoint: the entry point for indexing, search and export.

``Extractor(checkpoint)(tracklets, modality)`` takes tracklets in whatever form a user holds them (a frame
folder, a list of image paths, a ``(T, H, W, 3)`` uint8 array, a ``(T, 3, H, W)`` tensor), samples each to
the run's test clip length exactly as evaluation does, batches them and returns L2-normalised float32 rows,
so cosine similarity is a dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmft.data.loader import ClipSpec
from cmft.data.preprocess import TrackletInput, frame_paths, frames_to_clip, normalize_clips
from cmft.data.types import Modality, Tracklet
from cmft.devices import resolve_device

__all__ = ["Extractor", "TrackletInput", "frame_paths"]


class Extractor:
    """A checkpoint's single-modality embedding, batched, on CPU or GPU (bf16 autocast on GPU unless ``amp=False``)."""

    def __init__(self, checkpoint: str | Path | dict[str, Any], device: str = "auto", amp: bool | None = None,
                 batch_size: int = 32, seq_len: int | None = None) -> None:
        from cmft.models.checkpoint import load_checkpoint, model_from_checkpoint

        ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        self.device = resolve_device(device)
        self.model = model_from_checkpoint(ckpt, self.device)
        spec = ClipSpec.from_config(ckpt["config"], seq_len=seq_len)  # the one reading of a run's test clips
        self.height, self.width, self.seq_len = spec.height, spec.width, spec.seq_len
        self.batch_size = batch_size
        self.amp = (self.device.type == "cuda") if amp is None else amp
        self.model_name = ckpt.get("model_name", "cmft")

    @cached_property
    def dim(self) -> int:
        """Embedding width (one probe forward pass, the first time it is asked)."""
        with torch.inference_mode():
            probe = torch.zeros(1, self.seq_len, 3, self.height, self.width, device=self.device)
            return int(self.model.embed(probe, "rgb").shape[1])

    def clip(self, tracklet: TrackletInput) -> torch.Tensor:
        """One tracklet as a uint8 clip ``(seq_len, 3, height, width)`` (:func:`~cmft.data.preprocess.frames_to_clip`)."""
        return frames_to_clip(tracklet, self.seq_len, self.height, self.width)

    @torch.inference_mode()
    def embed_clips(self, clips: torch.Tensor, modality: Modality) -> torch.Tensor:
        """uint8 clips ``(B, T, 3, H, W)`` -> L2-normalised float32 embeddings ``(B, D)`` on the CPU."""
        x = normalize_clips(clips.to(self.device))
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
