"""The progressive objective (paper §3.4.4): which losses apply in which stage, read from the model's output dict.

Stage 1 (``epoch < warm_epochs``): ``L_ID + L_Cross``. Stage 2: ``L_ID + l1 MSRL + l2 MDL``.
``xmodal_weight`` (0 in the paper) adds a cross-modal batch-hard triplet in both stages.
L_ID sums the label-smoothed cross-entropy of every classifier present (RGB, IR, fused). Metric
losses see the ``[RGB; IR]`` batch of stream embeddings with labels ``[l; l]``; L_Cross adds the
fused embeddings' own triplet when the model fuses.
"""

from __future__ import annotations

from typing import Any

import torch

from cmft.config import LossConfig
from cmft.losses.baselines import hetero_centre_triplet, wrt_loss
from cmft.losses.identity import identity_loss
from cmft.losses.mdl import mdl_loss
from cmft.losses.msrl import msrl_loss
from cmft.losses.triplet import batch_hard_triplet, cross_modal_triplet, cross_triplet

CROSS_LOSSES = ("lcross", "wrt", "hct", "triplet", "none")


class Objective:
    """Total loss and its named parts for one training batch, by stage."""

    def __init__(self, cfg: LossConfig) -> None:
        if cfg.cross not in CROSS_LOSSES:
            raise ValueError(f"loss.cross must be one of {CROSS_LOSSES}, got {cfg.cross!r}")
        if cfg.metric_on not in ("feat", "bn"):
            raise ValueError(f"loss.metric_on must be 'feat' or 'bn', got {cfg.metric_on!r}")
        self.cfg = cfg

    def stage(self, epoch: int) -> int:
        """1 during the warm-up stage (the first ``warm_epochs`` epochs, 0-based), else 2."""
        return 1 if epoch < self.cfg.warm_epochs else 2

    def _cross(self, rgb: torch.Tensor, ir: torch.Tensor, fused: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        both, both_labels = torch.cat([rgb, ir]), torch.cat([labels, labels])
        if c.cross == "lcross":
            return cross_triplet(rgb, ir, labels, fused, c.margin)
        if c.cross == "triplet":
            return batch_hard_triplet(both, both_labels, c.margin)
        if c.cross == "wrt":
            return wrt_loss(both, both_labels)
        return hetero_centre_triplet(both, both_labels, c.margin)

    def __call__(
        self, out: dict[str, torch.Tensor], labels: torch.Tensor, stage: int, *, as_tensors: bool = False,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``out``: the model's train-mode dict for a paired batch; ``labels``: ``(N,)`` ids of the pairs. The parts
        come as floats, or with ``as_tensors`` as detached 0-d tensors on the device (no host-device sync)."""
        c = self.cfg
        parts: dict[str, torch.Tensor] = {}
        logits = [out[k] for k in ("logits_rgb", "logits_ir", "logits_fused") if k in out]
        if not logits:
            raise ValueError("the model output has no logits: is the model in train mode?")
        if c.id_weight:
            parts["id"] = c.id_weight * sum(identity_loss(x, labels, c.label_smoothing) for x in logits)
        key = c.metric_on
        rgb, ir = out[f"{key}_rgb"].float(), out[f"{key}_ir"].float()
        fused = out.get(f"{key}_fused")
        fused = fused.float() if fused is not None and "feat_fused" in out else None
        cross_w = c.cross_weight if stage == 1 else c.stage2_cross_weight
        if cross_w and c.cross != "none":
            parts["cross"] = cross_w * self._cross(rgb, ir, fused, labels)
        if c.xmodal_weight:
            parts["xmodal"] = c.xmodal_weight * cross_modal_triplet(rgb, ir, labels, c.xmodal_margin)
        if stage == 2:
            both, both_labels = torch.cat([rgb, ir]), torch.cat([labels, labels])
            if c.msrl_weight:
                parts["msrl"] = c.msrl_weight * msrl_loss(both, both_labels, c.msrl_metric, c.msrl_normalize)
            if c.mdl_weight:
                parts["mdl"] = c.mdl_weight * mdl_loss(both, both_labels, c.mdl_negatives, c.mdl_normalize)
        total = sum(parts.values())
        if as_tensors:
            return total, {k: v.detach() for k, v in parts.items()}
        return total, {k: float(v.detach()) for k, v in parts.items()}
