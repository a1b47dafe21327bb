"""Optimiser with separate learning rates for the pretrained streams and the new layers, and its schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from cmft.config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Streams (``rgb.*``, ``ir.*``) at ``lr * backbone_lr_mult``, everything else at ``lr``; no decay on norms and biases."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        backbone = name.startswith(("rgb.", "ir."))
        decay = p.dim() > 1
        groups.setdefault((backbone, decay), []).append(p)
    out = []
    for (backbone, decay), params in sorted(groups.items()):
        out.append({
            "params": params,
            "lr": cfg.lr * (cfg.backbone_lr_mult if backbone else 1.0),
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "name": f"{'backbone' if backbone else 'new'}{'' if decay else '_no_decay'}",
        })
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW; with ``optim.fused`` (default: when the weights are on CUDA) each
    step is one fused kernel instead of a loop of per-tensor ones."""
    groups = param_groups(model, cfg)
    fused = cfg.fused if cfg.fused is not None else next(model.parameters()).device.type == "cuda"
    kinds = {"fused": True} if fused else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **kinds)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **kinds)
    raise ValueError(f"optim.name must be 'sgd' or 'adamw', got {cfg.name!r}")


def lr_factor(cfg: OptimConfig, epoch: float, total_epochs: int) -> float:
    """Multiplier of the base learning rates at a (fractional) epoch: linear warm-up, then step or cosine."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return 0.01 + 0.99 * epoch / cfg.warmup_epochs
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        span = max(total_epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * min((epoch - cfg.warmup_epochs) / span, 1.0)))
    raise ValueError(f"optim.schedule must be 'step' or 'cosine', got {cfg.schedule!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_epochs: int, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR over :func:`lr_factor` (its state is saved with the checkpoint)."""
    if cfg.schedule not in ("step", "cosine"):
        raise ValueError(f"optim.schedule must be 'step' or 'cosine', got {cfg.schedule!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step / steps_per_epoch, total_epochs))
