"""How the two streams are fused (paper Table 2): none, score average, score product, concat + FC, CCF cascade."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cmft.models.ccf import CMFTCascade

FUSIONS = ("none", "score_avg", "score_mul", "concat", "ccf")
SCORE_FUSIONS = ("score_avg", "score_mul")


def fuse_scores(logits_rgb: torch.Tensor, logits_ir: torch.Tensor, how: str) -> torch.Tensor:
    """Log-scores of the fused identity prediction: the mean or the (renormalised) product of the probabilities."""
    lr, li = F.log_softmax(logits_rgb, dim=1), F.log_softmax(logits_ir, dim=1)
    if how == "score_avg":
        return torch.logsumexp(torch.stack([lr, li]), dim=0) - math.log(2)
    if how == "score_mul":
        return F.log_softmax(lr + li, dim=1)
    raise ValueError(f"{how!r} is not a score fusion; choose one of {SCORE_FUSIONS}")


class ConcatFusion(nn.Module):
    """Feature concatenation + FC: ``[f_rgb, f_ir] -> dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * dim, dim)
        self.out_dim = dim

    def forward(
        self, levels_rgb: list[torch.Tensor], levels_ir: list[torch.Tensor], attention: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        f = [lv[-1].mean(dim=(1, 3, 4)) for lv in (levels_rgb, levels_ir)]
        return self.fc(torch.cat(f, dim=1))


def build_fusion(fusion: str, channels: tuple[int, int, int, int], **ccf_args) -> nn.Module | None:  # noqa: ANN003
    """The learned fusion module of a variant (``None`` for no fusion and for score fusions)."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
    if fusion == "ccf":
        return CMFTCascade(channels, **ccf_args)
    if fusion == "concat":
        return ConcatFusion(channels[-1])
    return None
