"""L_ID: cross-entropy with label smoothing on an identity classifier's logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed cross-entropy (Szegedy et al.), the usual re-ID identity loss."""
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits (N, classes) and labels (N,) disagree: {tuple(logits.shape)} vs {tuple(labels.shape)}")
    return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
