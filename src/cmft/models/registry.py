"""A tiny model registry: every variant by name, with overrides (``create_model("cmft_r50", start=6)``)."""

from __future__ import annotations

from typing import Any

from cmft.models.cmft import CMFT

_VARIANTS: dict[str, dict[str, Any]] = {
    # the paper's model: dual-stream TSM ResNet-50, dual-branch CCFs from Conv5 (Table 3 default)
    "cmft_r50": {"backbone": "resnet50", "fusion": "ccf", "start": 5, "branches": 2, "fusion_dim": 512, "reduce_dim": 1024},
    # CPU-sized: ResNet-18 streams with narrower fusion
    "cmft_r18": {"backbone": "resnet18", "fusion": "ccf", "start": 5, "branches": 2, "fusion_dim": 128, "reduce_dim": 256},
    # the transformer backbone of paper §4.2 (16-frame clips, patches of 2 frames)
    "cmft_swin": {"backbone": "swin3d_s", "fusion": "ccf", "start": 5, "branches": 2, "fusion_dim": 384, "reduce_dim": 512},
    # two streams and no fusion: the baseline every fusion is compared with
    "dual_r50": {"backbone": "resnet50", "fusion": "none"},
    "dual_r18": {"backbone": "resnet18", "fusion": "none"},
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_VARIANTS)


def model_defaults(name: str) -> dict[str, Any]:
    """The constructor arguments a variant fixes (before overrides)."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return dict(_VARIANTS[name])


def create_model(name: str, **overrides: Any) -> CMFT:
    """Build a registered variant; ``overrides`` replace any :class:`~cmft.models.cmft.CMFT` argument."""
    args = model_defaults(name)
    args.update(overrides)
    try:
        return CMFT(**args)
    except TypeError as e:
        raise ValueError(f"bad argument for model {name!r}: {e}") from None
