"""Losses: identity, batch-hard / cross-modal triplet, MSRL, MDL, and the Table 4 baselines (WRT, HCT)."""

from cmft.losses.baselines import hetero_centre_triplet, wrt_loss
from cmft.losses.distance import euclidean_dist
from cmft.losses.identity import identity_loss
from cmft.losses.mdl import mdl_loss
from cmft.losses.msrl import msrl_loss
from cmft.losses.triplet import batch_hard_triplet, cross_triplet

__all__ = [
    "batch_hard_triplet", "cross_triplet", "euclidean_dist", "hetero_centre_triplet", "identity_loss",
    "mdl_loss", "msrl_loss", "wrt_loss",
]
