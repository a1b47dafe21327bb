"""The temporal shift of TSM (Lin et al., 2019), as the official code does it, in residual position."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def temporal_shift(x: torch.Tensor, n_segment: int, fold_div: int = 8) -> torch.Tensor:
    """Shift channels along time for ``x`` of shape ``(n * T, C, H, W)`` (frames of a clip adjacent).

    With ``fold = C // fold_div``: channels ``[0, fold)`` take frame t+1 (the last frame gets zeros),
    ``[fold, 2 fold)`` take frame t-1 (the first gets zeros), the rest are unchanged. Written with
    slices, padding and one concatenation (no in-place slice assignment), so ``torch.export`` / ONNX
    trace it with a symbolic clip length ``n_segment``; the values are those of the official code.
    """
    nt, c, h, w = x.shape
    if isinstance(n_segment, int) and isinstance(nt, int) and nt % n_segment:
        raise ValueError(f"temporal_shift: {nt} frames are not a multiple of n_segment={n_segment}")
    x5 = x.reshape(-1, n_segment, c, h, w)
    fold = int(c) // fold_div  # channels are static
    ahead = F.pad(x5[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # frame t+1; the last frame gets zeros
    behind = F.pad(x5[:, :-1, fold : 2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # frame t-1; the first gets zeros
    return torch.cat([ahead, behind, x5[:, :, 2 * fold :]], dim=2).reshape(x.shape)


class TemporalShift(nn.Module):
    """Shift the input of ``net`` (a block's first conv): residual TSM leaves the shortcut unshifted.

    ``n_segment`` is the clip length; the backbone sets it on every forward, so any T works at test time.
    """

    def __init__(self, net: nn.Module, n_segment: int = 1, fold_div: int = 8) -> None:
        super().__init__()
        self.net, self.n_segment, self.fold_div = net, n_segment, fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.n_segment, self.fold_div))

    def extra_repr(self) -> str:
        return f"n_segment={self.n_segment}, fold_div={self.fold_div}"
