"""Cross-modality metric losses the paper compares with (Table 4): WRT (AGW) and hetero-centre triplet (HCT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cmft.losses.distance import euclidean_dist, split_modalities


def _softmax_weights(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``d`` over the entries of ``mask`` in each row (AGW's stabilised form, +1e-6 in the sum)."""
    top = (d * mask).amax(1, keepdim=True)
    e = torch.exp(d - top) * mask
    return e / (e.sum(1, keepdim=True) + 1e-6)


def wrt_loss(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Weighted regularised triplet (Ye et al., AGW): softmax-weighted positives and negatives, soft margin."""
    d = euclidean_dist(feats, feats)
    pos = (labels[:, None] == labels[None, :]).to(feats.dtype)
    neg = 1 - pos
    d_ap, d_an = d * pos, d * neg
    furthest_pos = (d_ap * _softmax_weights(d_ap, pos)).sum(1)
    closest_neg = (d_an * _softmax_weights(-d_an, neg)).sum(1)
    return F.soft_margin_loss(closest_neg - furthest_pos, torch.ones_like(closest_neg))


def hetero_centre_triplet(feats: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Hetero-centre triplet (Liu et al.): batch-hard triplet over per-(identity, modality) centres.

    The positive of a centre is its identity's centre in the other modality; negatives are every
    other identity's centres of either modality.
    """
    rgb, ir, lab = split_modalities(feats, labels)
    ids, inverse = torch.unique(lab, sorted=False, return_inverse=True)
    if len(ids) < 2:
        raise ValueError("hetero-centre triplet needs at least two identities in the batch")
    member = F.one_hot(inverse, len(ids)).t().to(feats.dtype)
    member = member / member.sum(1, keepdim=True)
    centres = torch.cat([member @ rgb, member @ ir])
    cl = torch.arange(len(ids), device=feats.device).repeat(2)
    same = cl[:, None] == cl[None, :]
    d = euclidean_dist(centres, centres)
    hardest_pos = d.masked_fill(~same, float("-inf")).amax(1)
    hardest_neg = d.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin).mean()
