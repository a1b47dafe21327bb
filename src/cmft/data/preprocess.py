"""The one way from frames to model input: decode or take frames, sample a clip, resize, normalise.

Every consumer goes through here: the test loader (through :func:`~cmft.data.transforms.build_clip_transform`,
whose last step is :func:`normalize_clips`), the :class:`~cmft.inference.Extractor` (and so the index, the
service and the tracker's appearance model), the export checks and the report pictures. A model's input is
float32 ``(B, T, 3, H, W)``: RGB order (an IR frame is its grey level on three channels), ``pixel / 255``
normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from cmft.data.sampling import sample_frame_indices
from cmft.data.types import Tracklet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TrackletInput = Union[str, Path, Sequence[Union[str, Path]], np.ndarray, torch.Tensor, Tracklet]


def normalize_clips(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``(..., 3, H, W)`` (any device) -> the model's float32 input (``pixel / 255``, ImageNet mean / std)."""
    return TF.normalize(TF.to_dtype(frames, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD))


def denormalize_clips(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalize_clips`, as float ``[0, 1]`` (for pictures)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def read_frames(paths: Sequence[str], height: int, width: int) -> torch.Tensor:
    """Decode frames as 3-channel uint8 (IR greyscale is replicated) resized to ``(T, 3, height, width)``."""
    from PIL import Image

    frames = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                img = img.convert("RGB")
                if img.size != (width, height):
                    img = img.resize((width, height), Image.BILINEAR)
                frames[i] = np.asarray(img)
        except (OSError, ValueError) as e:
            raise OSError(f"{p}: cannot decode image ({e})") from None
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


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


def frames_to_clip(tracklet: TrackletInput, seq_len: int, height: int, width: int) -> torch.Tensor:
    """A tracklet in any form a user holds it (frame folder, image paths, ``(T, H, W, 3)`` uint8 array,
    ``(T, 3, H, W)`` tensor, :class:`Tracklet`) as a uint8 clip ``(seq_len, 3, height, width)``, frames picked
    as the test loader picks them (a tracklet shorter than ``seq_len``, a single crop included, has frames
    repeated: the temporal shift always sees a clip of the length it was trained on)."""
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
        frames = tracklet[sample_frame_indices(len(tracklet), seq_len, "test")]
        if frames.is_floating_point():
            frames = (frames.clamp(0, 1) * 255).round()
        frames = frames.to(torch.uint8).expand(-1, 3, -1, -1)
        return torch.nn.functional.interpolate(frames.float(), (height, width), mode="bilinear",
                                               antialias=True, align_corners=False).round().clamp(0, 255).to(torch.uint8)
    paths = [str(p) for p in tracklet]
    if not paths:
        raise ValueError("a tracklet needs at least one frame")
    return read_frames([paths[i] for i in sample_frame_indices(len(paths), seq_len, "test")], height, width)


def model_input(tracklet: TrackletInput, seq_len: int, height: int, width: int) -> torch.Tensor:
    """One tracklet as the model takes it: a normalised float32 batch of one clip ``(1, seq_len, 3, height, width)``."""
    return normalize_clips(frames_to_clip(tracklet, seq_len, height, width)).unsqueeze(0)
