"""Embed the tracklets of a test split and score both HITSZ-VCM directions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cmft.data.loader import build_test_loader
from cmft.data.types import DIRECTIONS, Direction, Modality, Tracklet, VIDataset

EmbedFn = Callable[[torch.Tensor, Modality], torch.Tensor]
"""``(clips (B, T, 3, H, W), modality) -> embeddings (B, D)``: a model in eval mode, or any descriptor."""

Progress = Callable[[int, int], None]


@dataclass
class Embeddings:
    """Features of a list of tracklets with their labels, in tracklet order."""

    feats: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray


@dataclass(frozen=True)
class ClipSpec:
    """How test clips are made: frames per clip, frame size, batch, loader workers, flip averaging."""

    seq_len: int = 6
    height: int = 256
    width: int = 128
    batch_size: int = 32
    workers: int = 2
    flip: bool = False

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> ClipSpec:
        """The test clips of a run: ``eval.seq_len``, the training frame size, ``eval.batch_size``, ``data.workers``,
        ``eval.flip`` of a :class:`~cmft.config.Config` or of the config dict a checkpoint holds; keyword
        arguments replace fields (``None`` keeps the config's value)."""
        from cmft.config import Config, config_from_dict

        if not isinstance(cfg, Config):
            cfg = config_from_dict(cfg)
        spec = cls(cfg.eval.seq_len, cfg.data.height, cfg.data.width, cfg.eval.batch_size, cfg.data.workers, cfg.eval.flip)
        return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None})


@torch.no_grad()
def extract_embeddings(
    embed: EmbedFn,
    tracklets: Sequence[Tracklet],
    spec: ClipSpec = ClipSpec(),
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> Embeddings:
    """Embed single-modality tracklets (test-mode frame sampling); with ``spec.flip`` average with the mirrored clip."""
    if not tracklets:
        raise ValueError("no tracklets to embed")
    modality = tracklets[0].modality
    loader = build_test_loader(tracklets, spec.seq_len, spec.height, spec.width, spec.batch_size, spec.workers)
    feats: list[torch.Tensor] = []
    done = 0
    for batch in loader:
        clips = batch["clip"].to(device, non_blocking=True)
        f = embed(clips, modality).float()
        if spec.flip:
            f = (f + embed(clips.flip(-1), modality).float()) / 2
        feats.append(f.cpu())
        done += len(clips)
        if progress is not None:
            progress(done, len(tracklets))
    return Embeddings(
        torch.cat(feats),
        np.array([t.pid for t in tracklets], dtype=np.int64),
        np.array([t.camid for t in tracklets], dtype=np.int64),
    )


def embed_test_sets(
    embed: EmbedFn,
    dataset: VIDataset,
    spec: ClipSpec = ClipSpec(),
    device: str | torch.device = "cpu",
    progress: Callable[[str], Progress] | None = None,
) -> dict[str, Embeddings]:
    """``{"ir": ..., "rgb": ...}``: the infrared and the visible test tracklets, each embedded once.

    ``progress(name)`` may return a per-set progress callback.
    """
    return {
        "ir": extract_embeddings(embed, dataset.query_ir, spec, device, progress and progress("infrared tracklets")),
        "rgb": extract_embeddings(embed, dataset.gallery_rgb, spec, device, progress and progress("visible tracklets")),
    }


def protocol_directions(protocol: str) -> tuple[Direction, ...]:
    """The directions a protocol reports: SYSU-MM01 only infrared -> visible (its rule is about IR query cameras)."""
    return ("ir2rgb",) if protocol == "sysu" else DIRECTIONS


def score_directions(
    sets: dict[str, Embeddings], directions: Sequence[Direction] | None = None, protocol: str = "hitsz_vcm"
) -> dict[str, dict]:
    """Metrics per direction (``ir2rgb``: infrared query -> visible gallery; ``rgb2ir``: the reverse) under a
    protocol's rule (default directions: :func:`protocol_directions`)."""
    from cmft.evaluation.metrics import evaluate_features

    out: dict[str, dict] = {}
    for d in directions or protocol_directions(protocol):
        q, g = (sets["ir"], sets["rgb"]) if d == "ir2rgb" else (sets["rgb"], sets["ir"])
        out[d] = evaluate_features(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, protocol=protocol)
    return out


def evaluate_directions(
    embed: EmbedFn,
    dataset: VIDataset,
    spec: ClipSpec = ClipSpec(),
    device: str | torch.device = "cpu",
    directions: Sequence[Direction] | None = None,
    progress: Callable[[str], Progress] | None = None,
) -> dict[str, dict]:
    """Embed both test sets once and score each direction under the dataset's protocol (see :func:`score_directions`)."""
    return score_directions(embed_test_sets(embed, dataset, spec, device, progress), directions, dataset.protocol)
