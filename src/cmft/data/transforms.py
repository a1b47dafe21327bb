"""Clip transforms: one set of random parameters for every frame of a clip (a clip is one motion).

torchvision's v2 transforms draw their parameters once per call and apply them to all leading
dimensions, so a ``(T, 3, H, W)`` clip is flipped, cropped, jittered and erased as one image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from cmft.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_clips
from cmft.data.types import Modality

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ChannelExchange", "ClipAugment", "NormalizeClip", "build_clip_transform"]


@dataclass(frozen=True)
class ClipAugment:
    """Augmentation strengths (paper §4.2: flip and random erasing; IR also colour jitter and blur)."""

    flip_p: float = 0.5
    pad: int = 10  # pad-and-crop back to size
    erase_p: float = 0.5
    ir_jitter: float = 0.3  # brightness and contrast factor range, IR only
    ir_blur_p: float = 0.5
    ir_blur_kernel: int = 5
    ir_blur_sigma: tuple[float, float] = (0.1, 2.0)
    gray_p: float = 0.0  # RGB only: the clip turned grey (DEEN, M3-ReID use 0.5), bridging to IR's single channel
    channel_p: float = 0.0  # RGB only: one random colour channel copied to all three (CAJL's channel exchange)

    def __post_init__(self) -> None:
        for name in ("flip_p", "erase_p", "ir_blur_p", "gray_p", "channel_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} (data.{name} for the RGB levers) must be a probability in [0, 1], got {v}")


class ChannelExchange(torch.nn.Module):
    """With probability ``p``, replace a clip's three channels by one of them drawn at random (once per clip).

    Channel-augmented joint learning (Ye et al., ICCV 2021): a colour image seen through one channel
    looks like a single-channel infrared one while keeping its textures.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return clip
        c = int(torch.randint(3, ()))
        return clip[..., c : c + 1, :, :].expand_as(clip).contiguous()


class NormalizeClip(torch.nn.Module):
    """:func:`~cmft.data.preprocess.normalize_clips` as a transform step (the one normalisation of model input)."""

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return normalize_clips(clip)


def build_clip_transform(
    modality: Modality, train: bool, height: int, width: int, augment: ClipAugment = ClipAugment()
) -> v2.Compose:
    """uint8 clip ``(T, 3, h, w)`` -> normalised float ``(T, 3, height, width)``; augmented when ``train``."""
    if modality not in ("rgb", "ir"):
        raise ValueError(f"unknown modality {modality!r}; choose 'rgb' or 'ir'")
    steps: list[torch.nn.Module] = [v2.Resize((height, width), antialias=True)]
    if train:
        steps += [v2.RandomHorizontalFlip(augment.flip_p)]
        if augment.pad > 0:
            steps += [v2.Pad(augment.pad), v2.RandomCrop((height, width))]
        if modality == "rgb":
            if augment.gray_p > 0:
                steps += [v2.RandomGrayscale(augment.gray_p)]
            if augment.channel_p > 0:
                steps += [ChannelExchange(augment.channel_p)]
        if modality == "ir":
            steps += [
                v2.ColorJitter(brightness=augment.ir_jitter, contrast=augment.ir_jitter),
                v2.RandomApply([v2.GaussianBlur(augment.ir_blur_kernel, augment.ir_blur_sigma)], p=augment.ir_blur_p),
            ]
    steps += [NormalizeClip()]
    if train and augment.erase_p > 0:
        steps += [v2.RandomErasing(p=augment.erase_p, value=0.0)]
    return v2.Compose(steps)
