"""Pairwise Euclidean distance as the reference re-ID code computes it (clamped at 1e-12 before the root)."""

from __future__ import annotations

import torch


def euclidean_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||`` for ``(m, d)`` and ``(n, d)``: ``sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, 1e-12))``.

    The clamp keeps the gradient finite at zero distance (a sample and itself), as in every reference.
    """
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1, keepdim=True).t()
    d = torch.addmm(d, a, b.t(), beta=1, alpha=-2)
    return d.clamp(min=1e-12).sqrt()


def split_modalities(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check a ``[RGB block; IR block]`` batch with labels ``[l; l]``; returns (rgb, ir, l)."""
    n = feats.shape[0]
    if feats.dim() != 2 or labels.shape != (n,) or n % 2:
        raise ValueError(
            f"expected (2N, D) features and (2N,) labels laid out [RGB; IR], got {tuple(feats.shape)} and {tuple(labels.shape)}"
        )
    lr, li = labels.chunk(2)
    if not torch.equal(lr, li):
        raise ValueError("the RGB and IR halves of the batch must carry the same labels in the same order ([l; l])")
    rgb, ir = feats.chunk(2)
    return rgb, ir, lr
