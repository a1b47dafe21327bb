"""MSRL, the modality-shared refinement loss (paper eq. 11-14; PMT's MSEL).

For every RGB sample, the mean distance to its identity's other RGB samples (intra) should equal
the mean distance to its identity's IR samples (cross); the IR side likewise:
``L = 1/2 [mean_i (cross_i - intra_i)^2 over RGB + the same over IR]``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from cmft.losses.distance import euclidean_dist, split_modalities

Metric = Literal["euclidean", "cosine"]


def _dist(a: torch.Tensor, b: torch.Tensor, metric: Metric) -> torch.Tensor:
    if metric == "euclidean":
        return euclidean_dist(a, b)
    if metric == "cosine":
        return 1 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).t()
    raise ValueError(f"unknown MSRL metric {metric!r}; choose 'euclidean' or 'cosine'")


def msrl_loss(feats: torch.Tensor, labels: torch.Tensor, metric: Metric = "euclidean", normalize: bool = False) -> torch.Tensor:
    """MSRL on a ``[RGB; IR]`` batch with labels ``[l; l]``; ``normalize`` L2-normalises features first.

    Every identity needs at least two samples per modality (an intra distance); otherwise ValueError.
    """
    if normalize:
        feats = F.normalize(feats, p=2, dim=-1)
    rgb, ir, lab = split_modalities(feats, labels)
    same = (lab[:, None] == lab[None, :]).to(feats.dtype)
    others = same - torch.eye(len(lab), dtype=feats.dtype, device=feats.device)
    n_others = others.sum(1)
    if bool((n_others == 0).any()):
        raise ValueError("MSRL needs K >= 2 samples of every identity in each modality (an intra-modality distance)")
    d = _dist(torch.cat([rgb, ir]), torch.cat([rgb, ir]), metric)
    n = len(lab)
    total = feats.new_zeros(())
    for a, b in ((slice(0, n), slice(n, 2 * n)), (slice(n, 2 * n), slice(0, n))):
        intra = (d[a, a] * others).sum(1) / n_others
        cross = (d[a, b] * same).sum(1) / same.sum(1)
        total = total + (cross - intra).pow(2).mean()
    return total / 2
