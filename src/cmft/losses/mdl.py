"""MDL, the modality discriminative (centre) loss (paper eq. 15-17; PMT's DCL).

``c_p`` = the mean of identity p's samples of both modalities. ``ap`` = the mean distance of every
centre to its own samples; ``an`` = the mean over identities of the mean distance to the selected
other-identity samples. ``L = ap / an``. Negatives: ``dynamic`` keeps those strictly closer than
their mean (the paper's rule), ``hard`` the nearest only, ``all`` every one (paper Table 5).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from cmft.losses.distance import euclidean_dist, split_modalities

Negatives = Literal["dynamic", "hard", "all"]


def mdl_loss(feats: torch.Tensor, labels: torch.Tensor, negatives: Negatives = "dynamic", normalize: bool = False) -> torch.Tensor:
    """MDL on a ``[RGB; IR]`` batch with labels ``[l; l]``; needs at least two identities."""
    if negatives not in ("dynamic", "hard", "all"):
        raise ValueError(f"unknown MDL negative selection {negatives!r}; choose 'dynamic', 'hard' or 'all'")
    if normalize:
        feats = F.normalize(feats, p=2, dim=-1)
    split_modalities(feats, labels)
    ids, inverse = torch.unique(labels, sorted=False, return_inverse=True)
    if len(ids) < 2:
        raise ValueError("MDL needs at least two identities in the batch (negatives for each centre)")
    member = F.one_hot(inverse, len(ids)).t().to(feats.dtype)  # (P, 2PK)
    centres = (member @ feats) / member.sum(1, keepdim=True)
    d = euclidean_dist(centres, feats)
    own = member.bool()
    ap = d[own].mean()
    neg = ~own
    d_neg = d.masked_fill(own, 0)
    mean_neg = d_neg.sum(1, keepdim=True) / neg.sum(1, keepdim=True)
    if negatives == "dynamic":
        keep = neg & (d < mean_neg)
    elif negatives == "hard":
        keep = neg & (d == d.masked_fill(own, float("inf")).amin(1, keepdim=True))
    else:
        keep = neg
    kept = keep.to(feats.dtype)
    an = ((d * kept).sum(1) / kept.sum(1).clamp_min(1)).mean()
    return ap / an
