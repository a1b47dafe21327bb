"""Protocols reported over repeated trials: SYSU-MM01's ten single-shot gallery draws (query features embedded
once, every gallery image embedded once for all draws) and the mean / standard deviation of any set of runs
(RegDB's ten splits)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmft.evaluation.retrieval import ClipSpec, EmbedFn, Progress, extract_embeddings

SYSU_MODES = ("all", "indoor")


def aggregate_trials(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (population, as papers report) of CMC, mAP and mINP over trials."""
    if not runs:
        raise ValueError("no trials to aggregate")
    out: dict[str, Any] = {"trials": len(runs)}
    for key in ("cmc", "mAP", "mINP"):
        values = np.stack([np.asarray(r[key], dtype=np.float64) for r in runs])
        out[key], out[f"{key}_std"] = values.mean(0), values.std(0)
    out["num_valid_queries"] = int(np.mean([r["num_valid_queries"] for r in runs]))
    return out


def evaluate_sysu(
    embed: EmbedFn,
    root: str | Path,
    spec: ClipSpec = ClipSpec(seq_len=1, height=288, width=144),
    device: str | torch.device = "cpu",
    modes: Sequence[str] = SYSU_MODES,
    trials: Sequence[int] = range(10),
    shots: int = 1,
    progress: Callable[[str], Progress] | None = None,
) -> dict[str, dict[str, Any]]:
    """SYSU-MM01 infrared -> visible per search mode: ``{mode: {"mean": aggregate, "runs": [metrics per trial]}}``.

    The queries (every IR image of the test ids) are embedded once; the gallery draws of all trials and modes
    are embedded once as a union, then each trial is scored under the SYSU rule.
    """
    from cmft.data.datasets.sysu_mm01 import sysu_gallery, sysu_query, sysu_tracklets
    from cmft.evaluation.metrics import evaluate_features

    root = Path(root)
    query = sysu_tracklets(root, sysu_query(root))
    draws = {(m, t): sysu_gallery(root, m, t, shots) for m in modes for t in trials}
    union = sorted({item for items in draws.values() for item in items})
    row = {item: i for i, item in enumerate(union)}
    q = extract_embeddings(embed, query, spec, device, progress and progress("infrared queries"))
    g = extract_embeddings(embed, sysu_tracklets(root, union), spec, device, progress and progress("visible gallery (all draws)"))
    out: dict[str, dict[str, Any]] = {}
    for m in modes:
        runs = []
        for t in trials:
            idx = torch.as_tensor([row[item] for item in draws[(m, t)]])
            runs.append(evaluate_features(q.feats, g.feats[idx], q.pids, g.pids[idx.numpy()], q.camids, g.camids[idx.numpy()],
                                          protocol="sysu"))
        out[m] = {"mean": aggregate_trials(runs), "runs": runs}
    return out
