"""Pictures that show what the numbers hide: the modality gap in embedding space, and where the CCF's
cross-attention looks in the other modality (paper §3.3.2, eq. 5)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def project_2d(feats: np.ndarray, method: str = "tsne", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of L2-normalised features: t-SNE (scikit-learn, cosine) or PCA; returns the method used.

    ``tsne`` falls back to PCA, and says so, when scikit-learn is not installed or there are too few points.
    """
    x = np.asarray(feats, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "tsne" and len(x) > 5:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            method = "pca"
        else:
            perplexity = float(min(30, (len(x) - 1) / 3))
            return TSNE(2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed).fit_transform(x), "t-SNE"
    if method not in ("tsne", "pca"):
        raise ValueError(f"unknown projection {method!r}; choose tsne or pca")
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA"


def embedding_plot(
    feats: dict[str, np.ndarray], pids: dict[str, np.ndarray], path: str | Path, max_ids: int = 20,
    method: str = "tsne", title: str = "", seed: int = 0,
) -> Path:
    """Features of both modalities in one 2-D map: colour = identity, marker = modality (o visible, ^ infrared).

    Same-colour circles and triangles that sit apart are the modality gap; ``max_ids`` identities present
    in both modalities are drawn (the first in sorted order) so colours stay tellable.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shared = sorted(set(pids["rgb"].tolist()) & set(pids["ir"].tolist()))[:max_ids]
    if not shared:
        raise ValueError("no identity appears in both modalities: nothing to show")
    keep = {m: np.isin(pids[m], shared) for m in ("rgb", "ir")}
    stacked = np.concatenate([feats["rgb"][keep["rgb"]], feats["ir"][keep["ir"]]])
    xy, used = project_2d(stacked, method, seed)
    n_rgb = int(keep["rgb"].sum())
    colour_of = {pid: i for i, pid in enumerate(shared)}
    fig = Figure(figsize=(6, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = __import__("matplotlib").colormaps["tab20"]
    for m, part, marker in (("rgb", slice(0, n_rgb), "o"), ("ir", slice(n_rgb, None), "^")):
        ids = pids[m][keep[m]]
        ax.scatter(xy[part, 0], xy[part, 1], c=[cmap(colour_of[p] % 20) for p in ids], marker=marker, s=28,
                   edgecolors="black", linewidths=0.3, label="visible" if m == "rgb" else "infrared")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or f"{used} of {len(shared)} identities (colour) in both modalities (marker)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


@torch.no_grad()
def cross_attention_maps(model: torch.nn.Module, rgb: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
    """Head-averaged RGB->IR attention of every CCF level for one normalised clip pair ``(1, T, 3, H, W)`` each:
    ``{"conv5": (N_rgb_tokens, N_ir_tokens), ...}``. Raises when the model has no CCF fusion."""
    from cmft.models.ccf import CMFTCascade

    fusion = getattr(model, "fusion", None)
    if not isinstance(fusion, CMFTCascade):
        raise ValueError("this model has no CCF cross-attention fusion (a fusion baseline or a single stream)")
    was = model.training
    model.eval()
    attention: dict[str, torch.Tensor] = {}
    try:
        model.forward_features(rgb=rgb, ir=ir, attention=attention)
    finally:
        model.train(was)
    return {name: weights[0].float().cpu() for name, weights in attention.items() if weights is not None}


def _denormalise(clip: torch.Tensor) -> np.ndarray:
    from cmft.data.preprocess import denormalize_clips

    return denormalize_clips(clip.cpu()).permute(0, 2, 3, 1).numpy()


def attention_figure(
    maps: dict[str, torch.Tensor], rgb: torch.Tensor, ir: torch.Tensor, path: str | Path, grid: Sequence[int] | None = None,
    title: str = "",
) -> Path:
    """Each frame of the visible clip above the infrared frame; with a spatial CCF level, the infrared frames are
    overlaid with the attention the visible tokens pay to each infrared token (summed over queries, finest level);
    the clip-level (Conv6) map, when present, as a frame-to-frame matrix."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames_rgb, frames_ir = _denormalise(rgb[0]), _denormalise(ir[0])
    t = frames_rgb.shape[0]
    spatial = [k for k in maps if k != "conv6"]
    fig = Figure(figsize=(1.3 * t + (2.2 if "conv6" in maps else 0), 4.2), dpi=120)
    FigureCanvasAgg(fig)
    cols = t + (2 if "conv6" in maps else 0)
    heat, level = None, None
    if spatial:
        level = spatial[0]
        received = maps[level].sum(0)  # attention mass each infrared token receives
        h, w = grid if grid is not None else _grid_of(received.numel() // t, frames_ir.shape[1:3])
        heat = received.view(t, h, w).numpy()
    for i in range(t):
        ax = fig.add_subplot(2, cols, i + 1)
        ax.imshow(frames_rgb[i])
        ax.set_axis_off()
        ax.set_title(f"RGB t{i}", fontsize=7)
        ax = fig.add_subplot(2, cols, cols + i + 1)
        ax.imshow(frames_ir[i])
        if heat is not None:
            ax.imshow(heat[i], cmap="jet", alpha=0.45, extent=(0, frames_ir.shape[2], frames_ir.shape[1], 0),
                      vmin=0, vmax=heat.max(), interpolation="bilinear")
        ax.set_axis_off()
        ax.set_title(f"IR t{i}" + (f" ({level})" if level else ""), fontsize=7)
    if "conv6" in maps:
        ax = fig.add_subplot(1, cols, (cols - 1, cols))
        im = ax.imshow(maps["conv6"].numpy(), cmap="viridis", vmin=0)
        ax.set_xlabel("IR frame", fontsize=7)
        ax.set_ylabel("RGB frame", fontsize=7)
        ax.set_title("clip level (Conv6)", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title or "CCF cross-attention: where visible tokens look in the infrared clip", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _grid_of(tokens: int, frame_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) token grid of a frame: the factorisation of ``tokens`` closest to the frame's aspect ratio."""
    aspect = frame_hw[0] / frame_hw[1]
    pairs = [(h, tokens // h) for h in range(1, tokens + 1) if tokens % h == 0]
    return min(pairs, key=lambda hw: abs(np.log(hw[0] / hw[1]) - np.log(aspect)))
