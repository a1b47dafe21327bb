"""Pictures and a markdown report of an evaluation: CMC curves, ranked lists, a metrics table.

Plots use matplotlib's object API (no global backend switch); ranked lists are drawn with Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps

from cmft.data.types import DIRECTION_TITLES, Tracklet

GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (128, 128, 128)


def plot_cmc(results: dict[str, dict[str, Any]], path: str | Path, title: str = "CMC") -> Path:
    """CMC curves (rank 1..20) of every direction in one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for d, m in results.items():
        cmc = 100 * np.asarray(m["cmc"])
        ax.plot(np.arange(1, len(cmc) + 1), cmc, marker="o", markersize=3,
                label=f"{DIRECTION_TITLES.get(d, d)} (R1 {cmc[0]:.1f}, mAP {100 * m['mAP']:.1f})")
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def top_k(
    q_feats: torch.Tensor, g_feats: torch.Tensor, q_pids: np.ndarray, g_pids: np.ndarray,
    q_camids: np.ndarray, g_camids: np.ndarray, queries: Sequence[int], k: int = 8, protocol: str = "hitsz_vcm",
) -> list[list[int]]:
    """Gallery indices of the k best matches of some queries, by cosine, under a protocol's removal rule."""
    from cmft.evaluation.protocols import get_protocol

    q = F.normalize(q_feats[list(queries)].float(), dim=1)
    g = F.normalize(g_feats.float(), dim=1)
    dist = -(q @ g.t())
    rule = get_protocol(protocol).remove
    if rule is not None:
        same_pid = torch.as_tensor(q_pids[list(queries)][:, None] == g_pids[None])
        removed = rule(same_pid, torch.as_tensor(q_camids[list(queries)])[:, None], torch.as_tensor(g_camids)[None])
        dist = dist.masked_fill(removed, float("inf"))
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return order.tolist()


def _thumb(t: Tracklet, size: tuple[int, int], border: tuple[int, int, int]) -> Image.Image:
    with Image.open(t.paths[len(t.paths) // 2]) as img:
        im = img.convert("RGB").resize(size, Image.BILINEAR)
    return ImageOps.expand(im, border=3, fill=border)


def ranked_list_grid(
    query: Sequence[Tracklet], gallery: Sequence[Tracklet], ranked: list[list[int]], queries: Sequence[int],
    path: str | Path, thumb: tuple[int, int] = (48, 96),
) -> Path:
    """One row per query: its middle frame, then the top-k gallery tracklets, green when the identity matches."""
    k = max(len(r) for r in ranked)
    cw, ch = thumb[0] + 6, thumb[1] + 6
    pad, label_h = 10, 14
    canvas = Image.new("RGB", (pad + cw + 2 * pad + k * (cw + 4), len(ranked) * (ch + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (qi, ranks) in enumerate(zip(queries, ranked)):
        y = pad + row * (ch + label_h + pad)
        qt = query[qi]
        canvas.paste(_thumb(qt, thumb, GREY), (pad, y + label_h))
        draw.text((pad, y), f"q {qt.modality} id{qt.pid}", fill=(0, 0, 0))
        for j, gi in enumerate(ranks):
            gt = gallery[gi]
            x = pad + cw + 2 * pad + j * (cw + 4)
            canvas.paste(_thumb(gt, thumb, GREEN if gt.pid == qt.pid else RED), (x, y + label_h))
            draw.text((x, y), f"{j + 1}: cam{gt.camid}", fill=(0, 0, 0))
    canvas.save(path)
    return Path(path)


def metrics_markdown(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of Rank-1/5/10/20, mAP and mINP (percent) per direction."""
    lines = ["| direction | Rank-1 | Rank-5 | Rank-10 | Rank-20 | mAP | mINP |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d, m in results.items():
        cmc = np.asarray(m["cmc"])
        ranks = [f"{100 * cmc[r - 1]:.2f}" if r <= len(cmc) else "-" for r in (1, 5, 10, 20)]
        lines.append(f"| {DIRECTION_TITLES.get(d, d)} | {' | '.join(ranks)} | {100 * m['mAP']:.2f} | {100 * m['mINP']:.2f} |")
    return "\n".join(lines)


PUBLIC_DIRECTIONS = {"ir2rgb": "ir_to_rgb", "rgb2ir": "rgb_to_ir"}


def public_metrics(results: dict[str, dict[str, Any]], num_test_ids: int) -> dict[str, dict[str, float | int]]:
    """Both directions as the stable ``metrics.json`` record: ``{"ir_to_rgb": {"rank1", "rank5", "rank10",
    "rank20", "mAP", "mINP" (percent), "num_test_ids"}, "rgb_to_ir": ...}``."""
    out: dict[str, dict[str, float | int]] = {}
    for d, key in PUBLIC_DIRECTIONS.items():
        if d not in results:
            continue
        m = results[d]
        cmc = np.asarray(m["cmc"], dtype=float)
        row: dict[str, float | int] = {f"rank{k}": round(100 * float(cmc[min(k, len(cmc)) - 1]), 4) for k in (1, 5, 10, 20)}
        row.update(mAP=round(100 * float(m["mAP"]), 4), mINP=round(100 * float(m["mINP"]), 4), num_test_ids=int(num_test_ids))
        out[key] = row
    return out
