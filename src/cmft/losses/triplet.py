"""Batch-hard triplet losses: the paper's L_Cross (eq. 7-10) and the plain batch-hard triplet."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cmft.losses.distance import euclidean_dist


def batch_hard_triplet(feats: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Mean over anchors of ``max(0, d(a, hardest positive) - d(a, hardest negative) + margin)``.

    Every anchor needs a negative in the batch (more than one identity); the hardest positive of an
    anchor alone is itself at distance ~1e-6, which the reference keeps.
    """
    n = feats.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"features {tuple(feats.shape)} and labels {tuple(labels.shape)} disagree")
    same = labels[:, None] == labels[None, :]
    if bool(same.all()):
        raise ValueError("batch-hard triplet needs at least two identities in the batch")
    return _hardest_triplets(euclidean_dist(feats, feats), same, margin)


def _hardest_triplets(d: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over anchors (rows of ``d``) of the hinge on the farthest positive and the nearest negative column."""
    hardest_pos = d.masked_fill(~same, float("-inf")).amax(1)
    hardest_neg = d.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def cross_triplet(
    rgb: torch.Tensor, ir: torch.Tensor, labels: torch.Tensor, fused: torch.Tensor | None = None, margin: float = 0.1
) -> torch.Tensor:
    """L_Cross: batch-hard triplet within RGB + within IR (+ within the fused embeddings when given)."""
    loss = batch_hard_triplet(rgb, labels, margin) + batch_hard_triplet(ir, labels, margin)
    if fused is not None:
        loss = loss + batch_hard_triplet(fused, labels, margin)
    return loss


def cross_modal_triplet(rgb: torch.Tensor, ir: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet across modalities: each RGB anchor against its hardest IR positive and hardest IR
    negative, and each IR anchor against RGB ones (the hard mining of cross-modal re-ID, e.g. AGW / DEEN).

    Unlike L_Cross, which only compares samples of one modality, this pulls the two modalities of an
    identity together; it needs two identities in the batch.
    """
    if rgb.shape != ir.shape or labels.shape != (rgb.shape[0],):
        raise ValueError(f"RGB {tuple(rgb.shape)}, IR {tuple(ir.shape)} and labels {tuple(labels.shape)} disagree")
    same = labels[:, None] == labels[None, :]
    if bool(same.all()):
        raise ValueError("the cross-modal triplet needs at least two identities in the batch")
    d = euclidean_dist(rgb, ir)  # (RGB anchors, IR items); its transpose serves the IR anchors
    return (_hardest_triplets(d, same, margin) + _hardest_triplets(d.t(), same, margin)) / 2
