"""A training-free clip descriptor: the floor any learned model must beat on the same split."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cmft.data.types import Modality


class GreyMotionDescriptor(torch.nn.Module):
    """Per-frame standardised grey levels pooled to a coarse grid: their temporal mean (shape, pattern)
    and temporal standard deviation (motion energy). Colour is dropped so both modalities share a space.
    """

    def __init__(self, grid: tuple[int, int] = (16, 8)) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, clips: torch.Tensor, modality: Modality | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, 2 * gh * gw)``; ``modality`` is accepted for the embedding interface."""
        b, t = clips.shape[:2]
        grey = clips.float().mean(dim=2, keepdim=True).flatten(0, 1)  # (B*T, 1, H, W)
        grey = (grey - grey.mean(dim=(2, 3), keepdim=True)) / grey.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        cells = F.adaptive_avg_pool2d(grey, self.grid).view(b, t, -1)
        return torch.cat([cells.mean(1), cells.std(1, unbiased=False)], dim=1)
