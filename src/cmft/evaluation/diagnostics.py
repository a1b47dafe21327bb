"""Why a model does or does not match across modalities: same-modality retrieval beside cross-modality
retrieval, and the modality gap of the embedding.

A model that "learns identities per modality but not across" retrieves well within RGB and within IR
(across cameras) and at chance between them; one that learns nothing is at chance everywhere. The
gap measure says how far apart the two modalities sit: same-identity cross-modal pairs should be
closer than different-identity pairs of the same modality mix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cmft.evaluation.metrics import evaluate_features
from cmft.evaluation.retrieval import Embeddings, score_directions


def same_modality_retrieval(sets: dict[str, Embeddings]) -> dict[str, dict]:
    """``{"rgb2rgb": metrics, "ir2ir": metrics}``: each tracklet queries the others of its modality.

    Always under the HITSZ-VCM rule (same identity in the same camera removed, which also removes
    the query itself), whatever the dataset: a hit must come from another camera, so this measures
    identity, not scene. A modality seen by one camera only (RegDB) has no such query and is left out.
    """
    out = {}
    for m in ("rgb", "ir"):
        e = sets[m]
        if len(np.unique(e.camids)) < 2:
            continue
        out[f"{m}2{m}"] = evaluate_features(e.feats, e.feats, e.pids, e.pids, e.camids, e.camids, protocol="hitsz_vcm")
    return out


def modality_gap(sets: dict[str, Embeddings]) -> dict[str, float]:
    """Mean cosine similarities of L2-normalised embeddings, by pair kind, and their differences.

    ``cross_pos``: same identity, RGB vs IR; ``cross_neg``: different identities, RGB vs IR;
    ``rgb_pos`` / ``ir_pos``: same identity within a modality (other tracklets); ``rgb_neg`` / ``ir_neg``
    likewise for different identities. ``cross_margin = cross_pos - cross_neg`` is near 0 for a model
    that does not align the modalities; ``centroid_cos`` is the cosine between the two modalities' mean
    embeddings (near 1 when they share one region of the space).
    """
    rgb, ir = F.normalize(sets["rgb"].feats.float(), dim=1), F.normalize(sets["ir"].feats.float(), dim=1)
    pr, pi = torch.as_tensor(sets["rgb"].pids), torch.as_tensor(sets["ir"].pids)

    def means(a: torch.Tensor, b: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor, exclude_self: bool) -> tuple[float, float]:
        s = a @ b.t()
        same, diff = pa[:, None] == pb[None, :], pa[:, None] != pb[None, :]
        if exclude_self:
            same &= ~torch.eye(len(pa), dtype=torch.bool)
        return float(s[same].mean()) if same.any() else float("nan"), float(s[diff].mean()) if diff.any() else float("nan")

    out: dict[str, float] = {}
    out["cross_pos"], out["cross_neg"] = means(rgb, ir, pr, pi, False)
    out["rgb_pos"], out["rgb_neg"] = means(rgb, rgb, pr, pr, True)
    out["ir_pos"], out["ir_neg"] = means(ir, ir, pi, pi, True)
    out["cross_margin"] = out["cross_pos"] - out["cross_neg"]
    out["rgb_margin"] = out["rgb_pos"] - out["rgb_neg"]
    out["ir_margin"] = out["ir_pos"] - out["ir_neg"]
    out["centroid_cos"] = float(F.cosine_similarity(rgb.mean(0, keepdim=True), ir.mean(0, keepdim=True)).item())
    return out


def diagnose(sets: dict[str, Embeddings], protocol: str = "hitsz_vcm") -> dict[str, Any]:
    """Cross-modality (both directions), same-modality retrieval and the modality gap, as one dict of percents/cosines."""
    rows = {**score_directions(sets, protocol=protocol), **same_modality_retrieval(sets)}
    return {
        "retrieval": {k: {"rank1": 100 * float(m["cmc"][0]), "mAP": 100 * float(m["mAP"])} for k, m in rows.items()},
        "gap": modality_gap(sets),
    }


