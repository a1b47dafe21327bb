"""Pictures and a markdown report of an evaluation: CMC curves, ranked lists, a metrics table, the JSON records.

Plots use matplotlib's object API (no global backend switch); ranked lists are drawn with Pillow. A picture that
cannot be drawn does not cost the report: the writers return it, with its error, for the caller to show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps

from cmft.atomic import write_text_atomic
from cmft.data.types import DIRECTION_TITLES, Tracklet, VIDataset
from cmft.evaluation.retrieval import ClipSpec, Embeddings
from cmft.data.preprocess import model_input
from cmft.evaluation.visuals import attention_figure, cross_attention_maps, embedding_plot

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


def jsonable_metrics(results: dict[str, dict[str, Any]]) -> dict[str, dict]:
    """Metrics per row as plain JSON (fractions, not percent); rows averaged over trials add their spread."""
    out = {}
    for d, m in results.items():
        out[d] = {"rank1": float(m["cmc"][0]), "cmc": [float(x) for x in m["cmc"]], "mAP": float(m["mAP"]),
                  "mINP": float(m["mINP"]), "num_valid_queries": int(m["num_valid_queries"])}
        if "mAP_std" in m:
            out[d].update(trials=int(m["trials"]), rank1_std=float(m["cmc_std"][0]), mAP_std=float(m["mAP_std"]),
                          mINP_std=float(m["mINP_std"]))
    return out


def write_public_metrics(path: str | Path, results: dict[str, dict[str, dict[str, Any]]], num_test_ids: int) -> Path:
    """``{variant: public_metrics(...)}`` written atomically as JSON (the demo's ``metrics.json``)."""
    payload = {name: public_metrics(r, num_test_ids) for name, r in results.items()}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
    return Path(path)


def demo_context(floor: dict[str, dict[str, Any]], baselines: dict[str, dict[str, dict[str, Any]]], num_ids: int) -> str:
    """The demo report's yardsticks: chance, the training-free descriptor, and each trained baseline."""
    context = ("For scale: chance Rank-1 is about {:.1f}% ({} gallery identities); a training-free grey-level + motion "
               "descriptor scores:\n\n{}\n").format(100 / num_ids, num_ids, metrics_markdown(floor))
    for name, r in baselines.items():
        context += f"\nThe {name.replace('_', ' ')} baseline, trained the same way:\n\n{metrics_markdown(r)}\n"
    return context


@dataclass
class WrittenReport:
    """A report's markdown file and the pictures that could not be drawn (file name -> the error)."""

    path: Path
    failed: dict[str, Exception] = field(default_factory=dict)


T = TypeVar("T")


def _draw(failed: dict[str, Exception], name: str, draw: Callable[..., T], *args: Any) -> T | None:
    """``draw(*args)``, or None with the error kept in ``failed[name]``: a picture must not cost the metrics."""
    try:
        return draw(*args)
    except Exception as e:  # noqa: BLE001 - handed back to the caller, who reports it
        failed[name] = e
        return None


def _ranked_picture(out: Path, direction: str, dataset: VIDataset, sets: dict[str, Embeddings]) -> Path:
    q, g = (sets["ir"], sets["rgb"]) if direction == "ir2rgb" else (sets["rgb"], sets["ir"])
    qt, gt = dataset.split(direction)
    picks = list(range(0, len(qt), max(len(qt) // 6, 1)))[:6]
    ranked = top_k(q.feats, g.feats, q.pids, g.pids, q.camids, g.camids, picks, k=8, protocol=dataset.protocol)
    return ranked_list_grid(qt, gt, ranked, picks, out / f"ranked_{direction}.png")


def write_report(
    out: Path, results: dict[str, dict], dataset: VIDataset, sets: dict[str, Embeddings], title: str,
    ckpt: dict[str, Any] | None = None, extra: str = "", model: torch.nn.Module | None = None, spec: ClipSpec | None = None,
) -> WrittenReport:
    """``out/``: ``metrics.json``, CMC curves, ranked lists per direction, the report pictures and ``report.md``
    (``extra``: markdown after the metrics table; ``ckpt``: the model's description at the end)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(jsonable_metrics(results), indent=2))
    failed: dict[str, Exception] = {}
    cmc = _draw(failed, "cmc.png", plot_cmc, results, out / "cmc.png", title)
    pictures = []
    for d in results:
        if _draw(failed, f"ranked_{d}.png", _ranked_picture, out, d, dataset, sets) is not None:
            pictures.append(f"### {DIRECTION_TITLES[d]}\n\n![ranked list {d}](ranked_{d}.png)\n")
    pictures += report_visuals(out, dataset, sets, model, spec, failed)
    lines = [f"# {title}", "", metrics_markdown(results), "", extra, *(["![CMC curves](cmc.png)", ""] if cmc else []),
             "## Ranked lists", "", "Each row: a query (grey border), then its 8 best matches in the other modality, "
             "green when the identity is right, red when wrong (gallery items the protocol removes for that query are "
             "excluded).", "", *pictures]
    if ckpt is not None:
        lines += ["## Model", "", f"`{ckpt['model_name']}` trained {ckpt['epoch'] + 1} epochs, arguments `{ckpt['model_args']}`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return WrittenReport(out / "report.md", failed)


def write_summary_report(out: Path, results: dict[str, dict], title: str) -> WrittenReport:
    """A report of averaged rows only (SYSU-MM01's gallery draws): ``metrics.json``, CMC curves, ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    failed: dict[str, Exception] = {}
    cmc = _draw(failed, "cmc.png", plot_cmc, results, out / "cmc.png", title)
    (out / "metrics.json").write_text(json.dumps(jsonable_metrics(results), indent=2))
    (out / "report.md").write_text(f"# {title}\n\n{metrics_markdown(results)}\n" + ("\n![CMC curves](cmc.png)\n" if cmc else ""))
    return WrittenReport(out / "report.md", failed)


def _attention_picture(model: torch.nn.Module, spec: ClipSpec, pair: tuple[Tracklet, Tracklet], path: Path) -> Path | None:
    """The CCF cross-attention of one infrared / visible pair, or None when no CCF level kept its attention."""
    device = next(model.parameters()).device
    ir = model_input(list(pair[0].paths), spec.seq_len, spec.height, spec.width).to(device)
    rgb = model_input(list(pair[1].paths), spec.seq_len, spec.height, spec.width).to(device)
    maps = cross_attention_maps(model, rgb, ir)
    if not maps:
        return None
    return attention_figure(maps, rgb, ir, path, title=f"CCF cross-attention, identity {pair[0].pid}")


def report_visuals(
    out: Path, dataset: VIDataset, sets: dict[str, Embeddings], model: torch.nn.Module | None = None, spec: ClipSpec | None = None,
    failed: dict[str, Exception] | None = None,
) -> list[str]:
    """Markdown sections of the modality-gap map and, for a CCF model, the cross-attention of one true
    infrared / visible pair. Without an identity in both modalities (an unlabelled export) or a CCF model there
    is nothing to draw; a picture that fails is left out and recorded in ``failed`` (file name -> the error)."""
    from cmft.models.ccf import CMFTCascade

    failed = {} if failed is None else failed
    parts = []
    pids = {m: sets[m].pids for m in ("rgb", "ir")}
    if np.intersect1d(pids["rgb"], pids["ir"]).size:
        feats = {m: sets[m].feats.numpy() for m in ("rgb", "ir")}
        if _draw(failed, "embedding.png", embedding_plot, feats, pids, out / "embedding.png") is not None:
            parts.append("## Embedding space\n\nIdentities (colour) in both modalities (circle visible, triangle infrared): "
                         "same-colour markers far apart are the modality gap.\n\n![embedding](embedding.png)\n")
    if model is not None and spec is not None and isinstance(getattr(model, "fusion", None), CMFTCascade):
        gallery_by_pid = {t.pid: t for t in reversed(dataset.test_rgb)}
        pair = next(((q, gallery_by_pid[q.pid]) for q in dataset.test_ir if q.pid in gallery_by_pid), None)
        if pair is not None and _draw(failed, "attention.png", _attention_picture, model, spec, pair, out / "attention.png"):
            parts.append("## Cross-attention\n\nA visible clip and an infrared clip of the same person: where the "
                         "visible tokens attend in the infrared frames (CCF, eq. 5).\n\n![attention](attention.png)\n")
    return parts
