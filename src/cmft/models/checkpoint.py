"""Reading cmft checkpoints safely (``weights_only=True``) and rebuilding the model one describes.

A checkpoint (written by :mod:`cmft.engine.checkpoint`) holds the resolved config, the model's name and
constructor arguments, the stage and epoch, the weights, and the training state, so a model can be rebuilt
from the file alone. Evaluation, inference and export read checkpoints through here, never through the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FORMAT = "cmft-checkpoint-v1"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a cmft checkpoint safely; a clear error for a missing, torn or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read as a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a cmft checkpoint (no '{FORMAT}' marker)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any] | str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    from cmft.models.cmft import CMFT

    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    args = dict(ckpt["model_args"])
    args["pretrained"] = None  # the weights come from the checkpoint
    args["pool_grid"] = tuple(args.get("pool_grid", (16, 8)))
    model = CMFT(**args)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
