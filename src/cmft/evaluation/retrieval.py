"""Embed the tracklets of a test split and score both HITSZ-VCM directions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cmft.data.loader import ClipSpec, build_test_loader
from cmft.data.types import DIRECTIONS, Direction, Modality, Tracklet, VIDataset, direction_modalities
from cmft.evaluation.reranking import Rerank

EmbedFn = Callable[[torch.Tensor, Modality], torch.Tensor]
"""``(clips (B, T, 3, H, W), modality) -> embeddings (B, D)``: a model in eval mode, or any descriptor."""

Progress = Callable[[int, int], None]


@dataclass
class Embeddings:
    """Features of a list of tracklets with their labels, in tracklet order."""

    feats: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray

    def __getitem__(self, rows: slice | np.ndarray) -> Embeddings:
        """The embeddings of a slice (or an index array) of the tracklets."""
        if isinstance(rows, np.ndarray):
            return Embeddings(self.feats[torch.from_numpy(rows)], self.pids[rows], self.camids[rows])
        return Embeddings(self.feats[rows], self.pids[rows], self.camids[rows])


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
    loader = build_test_loader(tracklets, spec)
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


EmbedPairFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(rgb clips, ir clips) -> embeddings (B, D)`` of aligned pairs: ``CMFT.embed_pair``."""


@torch.no_grad()
def extract_pair_embeddings(
    embed_pair: EmbedPairFn, pairs: Sequence[tuple[Tracklet, Tracklet]], spec: ClipSpec = ClipSpec(),
    device: str | torch.device = "cpu", progress: Progress | None = None,
) -> Embeddings:
    """Embed aligned ``(rgb, ir)`` tracklet pairs: both clips take the same frames (test sampling depends on the
    length only, and a pair's tracklets are equally long)."""
    if not pairs:
        raise ValueError("no pairs to embed")
    rgb = build_test_loader([p[0] for p in pairs], spec)
    ir = build_test_loader([p[1] for p in pairs], spec)
    feats: list[torch.Tensor] = []
    for a, b in zip(rgb, ir):
        feats.append(embed_pair(a["clip"].to(device, non_blocking=True), b["clip"].to(device, non_blocking=True)).float().cpu())
        if progress is not None:
            progress(sum(len(f) for f in feats), len(pairs))
    return Embeddings(torch.cat(feats), np.array([p[0].pid for p in pairs], dtype=np.int64),
                      np.array([p[0].camid for p in pairs], dtype=np.int64))


def score_fused(
    embed_pair: EmbedPairFn, dataset: VIDataset, spec: ClipSpec = ClipSpec(), device: str | torch.device = "cpu",
    rerank: Rerank | None = None, progress: Callable[[str], Progress] | None = None,
) -> dict:
    """The ``fused`` row: paired queries against paired gallery moments, with the fused embedding of each pair."""
    q = extract_pair_embeddings(embed_pair, dataset.test_pairs["query"], spec, device, progress and progress("query pairs"))
    g = extract_pair_embeddings(embed_pair, dataset.test_pairs["gallery"], spec, device, progress and progress("gallery pairs"))
    return score_pair(q, g, dataset.protocol, rerank, device)


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
        "ir": extract_embeddings(embed, dataset.test_ir, spec, device, progress and progress("infrared tracklets")),
        "rgb": extract_embeddings(embed, dataset.test_rgb, spec, device, progress and progress("visible tracklets")),
    }


def protocol_directions(protocol: str) -> tuple[Direction, ...]:
    """The directions a protocol reports: SYSU-MM01 only infrared -> visible (its rule is about IR query cameras);
    BUPTCampus also the same-modality pairs its authors print."""
    if protocol == "sysu":
        return ("ir2rgb",)
    if protocol.startswith("buptcampus"):
        return (*DIRECTIONS, "ir2ir", "rgb2rgb")
    return DIRECTIONS


def score_pair(
    q: Embeddings, g: Embeddings, protocol: str = "hitsz_vcm", rerank: Rerank | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Metrics of queries ``q`` against gallery ``g``: cosine distance, or with ``rerank`` the k-reciprocal one.
    ``device`` (default: where the features are) computes the distances and the metric kernel there, a GPU
    included; the metrics are the same on every device up to the distances' float rounding."""
    from cmft.evaluation.metrics import evaluate, evaluate_features

    qf, gf = (q.feats, g.feats) if device is None else (q.feats.to(device), g.feats.to(device))
    if rerank is None:
        return evaluate_features(qf, gf, q.pids, g.pids, q.camids, g.camids, protocol=protocol)
    return evaluate(rerank.distances(qf, gf), q.pids, g.pids, q.camids, g.camids, protocol=protocol)


def score_directions(
    sets: dict[str, Embeddings], directions: Sequence[Direction] | None = None, protocol: str = "hitsz_vcm",
    rerank: Rerank | None = None, num_query: dict[str, int] | None = None, device: str | torch.device | None = None,
) -> dict[str, dict]:
    """Metrics per direction (``ir2rgb``: infrared query -> visible gallery; ``rgb2ir``: the reverse) under a
    protocol's rule (default directions: :func:`protocol_directions`), optionally re-ranked. ``num_query``
    (:attr:`VIDataset.num_query`) splits each modality's set into its queries and its gallery; ``device``: see
    :func:`score_pair`."""
    out: dict[str, dict] = {}
    for d in directions or protocol_directions(protocol):
        q_mod, g_mod = direction_modalities(d)
        q, g = sets[q_mod], sets[g_mod]
        if num_query is not None:
            q, g = q[: num_query[q_mod]], g[num_query[g_mod]:]
        elif q_mod == g_mod:
            raise ValueError(f"{d!r} needs separate query and gallery sets (num_query)")
        out[d] = score_pair(q, g, protocol, rerank, device)
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
    return score_directions(embed_test_sets(embed, dataset, spec, device, progress), directions, dataset.protocol,
                            num_query=dataset.num_query)
