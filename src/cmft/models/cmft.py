"""CMFT: two modality streams, a fusion of their features, BN-neck heads (paper Fig. 3, DESIGN.md §5).

Train mode returns a dict of embeddings and logits for every branch present; eval mode returns one
embedding: the stream of the clip's modality, or the fused embedding when given an RGB and an IR clip.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cmft.data.types import Modality
from cmft.models.backbones import Pretrained, build_stream, joint_levels
from cmft.models.fusion import SCORE_FUSIONS, build_fusion, fuse_scores
from cmft.models.heads import POOLS, BNNeck, GeM, pool_level
from cmft.models.heads import classifier as make_classifier


def stream_embedding(stream: nn.Module, pool: nn.Module | None, neck: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """One modality's retrieval embedding: the stream's last level, pooled (mean or GeM over T x h x w), through
    its BN neck. The single definition used by :meth:`CMFT.embed` and by the exported heads."""
    return neck(pool_level(stream.forward_levels(clips)[-1], pool))


class CMFT(nn.Module):
    """Dual-stream video re-ID model with a configurable fusion (``none``, score, ``concat``, ``ccf``).

    ``share_from`` (2..5) makes the IR stream reuse the RGB stream's stages from that level on (the
    usual VI-ReID practice); ``None`` keeps two independent streams as in the paper.
    """

    def __init__(
        self,
        num_classes: int = 500,
        backbone: str = "resnet50",
        fusion: str = "ccf",
        start: int = 5,
        branches: int = 2,
        layers: int = 1,
        heads: int = 8,
        fusion_dim: int = 512,
        reduce_dim: int = 1024,
        pool_grid: tuple[int, int] = (16, 8),
        share_from: int | None = None,
        pretrained: Pretrained = None,
        fold_div: int = 8,
        last_stride: int = 1,
        classifier: str = "linear",
        cosine_scale: float = 16.0,
        pool: str = "avg",
    ) -> None:
        super().__init__()
        self.args: dict[str, Any] = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.args["pretrained"] = None if pretrained is None else str(pretrained)
        self.args["pool_grid"] = list(pool_grid)
        self.rgb = build_stream(backbone, pretrained, fold_div, last_stride)
        self.ir = build_stream(backbone, pretrained, fold_div, last_stride)
        self.load_report = self.rgb.load_report
        self.share_from = share_from
        if share_from is not None:
            if share_from not in (2, 3, 4, 5):
                raise ValueError(f"share_from must be a level 2..5 (paper Conv2..Conv5) or None, got {share_from}")
            self.ir.share_stages(self.rgb, share_from - 2)
        channels = self.rgb.channels
        self.dim = channels[-1]
        self.fusion_name = fusion
        self.fusion = build_fusion(
            fusion, channels, start=start, branches=branches, layers=layers, heads=heads,
            fusion_dim=fusion_dim, reduce_dim=reduce_dim, pool_grid=tuple(pool_grid),
        )
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
        if pool == "gem" and backbone == "swin3d_s":
            raise ValueError("pool='gem' needs non-negative features (ResNet streams); swin3d_s ends in a LayerNorm")
        self.pool = GeM() if pool == "gem" else None  # one pooling for both streams
        self.neck_rgb, self.neck_ir = BNNeck(self.dim), BNNeck(self.dim)
        # shared: both modalities in one identity space
        self.classifier = make_classifier(self.dim, num_classes, classifier, cosine_scale)
        if self.fusion is not None:
            self.neck_fused = BNNeck(self.fusion.out_dim)
            self.classifier_fused = make_classifier(self.fusion.out_dim, num_classes, classifier, cosine_scale)

    def forward_features(
        self, rgb: torch.Tensor | None = None, ir: torch.Tensor | None = None, attention: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Pooled stream features ``feat_rgb``/``feat_ir`` (mean or GeM over T x h x w) and, for a pair, ``feat_fused``.

        With shared stages and both modalities, the shared stages run once on the joint batch. A dict passed
        as ``attention`` receives the CCF levels' cross-attention weights of a pair."""
        if rgb is None and ir is None:
            raise ValueError("give an RGB clip batch, an IR clip batch, or both (B, T, 3, H, W)")
        out: dict[str, torch.Tensor] = {}
        levels = {}
        for name, clips in (("rgb", rgb), ("ir", ir)):
            if clips is not None and clips.dim() != 5:
                raise ValueError(f"{name} clips must be (B, T, 3, H, W), got shape {tuple(clips.shape)}")
        if rgb is not None and ir is not None and rgb.shape[:2] != ir.shape[:2]:
            raise ValueError(f"paired clips need the same (B, T): RGB {tuple(rgb.shape[:2])} vs IR {tuple(ir.shape[:2])}")
        if self.share_from is not None and rgb is not None and ir is not None:
            levels["rgb"], levels["ir"] = joint_levels(self.rgb, self.ir, rgb, ir, self.share_from - 2)
        else:
            for name, clips, stream in (("rgb", rgb, self.rgb), ("ir", ir, self.ir)):
                if clips is not None:
                    levels[name] = stream.forward_levels(clips)
        for name, lv in levels.items():
            out[f"feat_{name}"] = pool_level(lv[-1], self.pool)
        if len(levels) == 2:
            if self.fusion is not None:
                out["feat_fused"] = self.fusion(levels["rgb"], levels["ir"], attention)
        return out

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | torch.Tensor:
        """BN necks and classifiers: the full dict in train mode, the retrieval embedding in eval mode."""
        out = dict(feats)
        for name in ("rgb", "ir"):
            if f"feat_{name}" in feats:
                out[f"bn_{name}"] = getattr(self, f"neck_{name}")(feats[f"feat_{name}"])
        paired = "bn_rgb" in out and "bn_ir" in out
        if "feat_fused" in feats:
            out["bn_fused"] = self.neck_fused(feats["feat_fused"])
        elif paired:
            out["bn_fused"] = (out["bn_rgb"] + out["bn_ir"]) / 2  # no learned fusion: the mean of the two
        if not self.training:
            if paired:
                return out["bn_fused"]
            return out["bn_rgb"] if "bn_rgb" in out else out["bn_ir"]
        for name in ("rgb", "ir"):
            if f"bn_{name}" in out:
                out[f"logits_{name}"] = self.classifier(out[f"bn_{name}"])
        if "feat_fused" in feats:
            out["logits_fused"] = self.classifier_fused(out["bn_fused"])
        elif paired and self.fusion_name in SCORE_FUSIONS:
            out["logits_fused"] = fuse_scores(out["logits_rgb"], out["logits_ir"], self.fusion_name)
        return out

    def forward(self, rgb: torch.Tensor | None = None, ir: torch.Tensor | None = None) -> dict[str, torch.Tensor] | torch.Tensor:
        return self.forward_head(self.forward_features(rgb, ir))

    @torch.no_grad()
    def embed_pair(self, rgb: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """The retrieval embedding of aligned RGB / IR clip pairs: the fused one (the mean of the two stream
        embeddings for a model without a learned fusion)."""
        was = self.training
        self.eval()
        try:
            return self.forward(rgb=rgb, ir=ir)
        finally:
            self.train(was)

    @torch.no_grad()
    def embed(self, clips: torch.Tensor, modality: Modality) -> torch.Tensor:
        """The retrieval embedding of single-modality clips (the :data:`~cmft.evaluation.retrieval.EmbedFn` contract)."""
        if modality not in ("rgb", "ir"):
            raise ValueError(f"unknown modality {modality!r}; choose 'rgb' or 'ir'")
        if clips.dim() != 5:
            raise ValueError(f"{modality} clips must be (B, T, 3, H, W), got shape {tuple(clips.shape)}")
        was = self.training
        self.eval()
        try:
            return stream_embedding(getattr(self, modality), self.pool, getattr(self, f"neck_{modality}"), clips)
        finally:
            self.train(was)
