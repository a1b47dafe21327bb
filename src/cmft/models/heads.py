"""BN-neck embedding heads and identity classifiers."""

from __future__ import annotations

import torch
from torch import nn


class BNNeck(nn.Module):
    """BatchNorm on the embedding (bias frozen at zero, the usual re-ID neck); retrieval uses its output."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


def classifier(dim: int, num_classes: int) -> nn.Linear:
    """A bias-free identity classifier with the small init customary after a BN neck."""
    fc = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(fc.weight, std=0.001)
    return fc
