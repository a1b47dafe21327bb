"""BN-neck embedding heads, identity classifiers (linear or cosine) and the pooling of a stream's last level."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSIFIERS = ("linear", "cosine")
POOLS = ("avg", "gem")


class BNNeck(nn.Module):
    """BatchNorm on the embedding (bias frozen at zero, the usual re-ID neck); retrieval uses its output."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class CosineClassifier(nn.Module):
    """``scale * cos(x, w_c)``: normalised features and class weights, so logits are not tiny at init.

    A freshly initialised linear classifier after a BN neck gives logits near 0 and weak, uniform
    gradients; with a fixed scale the softmax is confident from the start (CosFace/NormFace without margin).
    """

    def __init__(self, dim: int, num_classes: int, scale: float = 16.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, scale={self.scale}"


def classifier(dim: int, num_classes: int, kind: str = "linear", scale: float = 16.0) -> nn.Module:
    """A bias-free identity classifier: ``linear`` (the small init customary after a BN neck) or ``cosine``."""
    if kind == "linear":
        fc = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(fc.weight, std=0.001)
        return fc
    if kind == "cosine":
        return CosineClassifier(dim, num_classes, scale)
    raise ValueError(f"unknown classifier {kind!r}; choose one of {CLASSIFIERS}")


class GeM(nn.Module):
    """Generalised-mean pooling over every axis but batch and channel, with a learned exponent (init 3)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        return x.clamp_min(self.eps).pow(self.p).mean(dim=dims).pow(1.0 / self.p)


def pool_level(x: torch.Tensor, pool: nn.Module | None) -> torch.Tensor:
    """A stream's last level ``(B, T, C, h, w)`` pooled to ``(B, C)``: average, or GeM when given."""
    return x.mean(dim=(1, 3, 4)) if pool is None else pool(x, (1, 3, 4))
