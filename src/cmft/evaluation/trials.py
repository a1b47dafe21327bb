"""Evaluation runs: a checkpoint on a dataset's test split, SYSU-MM01's ten single-shot gallery draws (query
features embedded once, every gallery image embedded once for all draws), LLCM's gallery draws, and the mean /
standard deviation of any set of runs. RegDB's ten splits, which train a model each, are
:func:`cmft.engine.regdb.run_regdb_trials`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmft.data.types import VIDataset
from cmft.devices import resolve_device
from cmft.evaluation.reranking import Rerank
from cmft.evaluation.retrieval import (ClipSpec, EmbedFn, Embeddings, Progress, embed_test_sets, extract_embeddings,
                                      score_directions, score_fused, score_pair)

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
    rerank: Rerank | None = None,
) -> dict[str, dict[str, Any]]:
    """SYSU-MM01 infrared -> visible per search mode: ``{mode: {"mean": aggregate, "runs": [metrics per trial]}}``.

    The queries (every IR image of the test ids) are embedded once; the gallery draws of all trials and modes
    are embedded once as a union, then each trial is scored under the SYSU rule.
    """
    from cmft.data.datasets.sysu_mm01 import sysu_gallery, sysu_query, sysu_tracklets
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
            idx = np.array([row[item] for item in draws[(m, t)]])
            drawn = Embeddings(g.feats[torch.from_numpy(idx)], g.pids[idx], g.camids[idx])
            runs.append(score_pair(q, drawn, "sysu", rerank, device))
        out[m] = {"mean": aggregate_trials(runs), "runs": runs}
    return out


def _checkpoint_model(
    checkpoint: str | Path | dict[str, Any], device: str | torch.device | None
) -> tuple[dict[str, Any], torch.nn.Module, str | torch.device]:
    """The loaded checkpoint, its model on ``device`` (default: the GPU when there is one, :func:`~cmft.devices.resolve_device`), and that device."""
    from cmft.models.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    device = resolve_device(device or "auto")
    return ckpt, model_from_checkpoint(ckpt, device), device


@dataclass
class CheckpointEvaluation:
    """A checkpoint, its model, both test sets embedded with it, and the metrics of each direction."""

    results: dict[str, dict]
    sets: dict[str, Embeddings]
    checkpoint: dict[str, Any]
    model: torch.nn.Module


def evaluate_checkpoint(
    checkpoint: str | Path | dict[str, Any],
    dataset: VIDataset,
    spec: ClipSpec = ClipSpec(),
    device: str | torch.device | None = None,
    progress: Callable[[str], Progress] | None = None,
    rerank: Rerank | None = None,
) -> CheckpointEvaluation:
    """Embed both test sets with a checkpoint's model (a path, or a checkpoint already loaded) and score both
    directions under the dataset's protocol (re-ranked with ``rerank``). A missing or foreign checkpoint raises
    FileNotFoundError / ValueError."""
    ckpt, model, device = _checkpoint_model(checkpoint, device)
    sets = embed_test_sets(model.embed, dataset, spec, device, progress=progress)
    results = score_directions(sets, protocol=dataset.protocol, rerank=rerank, num_query=dataset.num_query, device=device)
    if dataset.test_pairs and hasattr(model, "embed_pair"):  # both sensors of one moment: the fused row
        results["fused"] = score_fused(model.embed_pair, dataset, spec, device, rerank, progress)
    return CheckpointEvaluation(results, sets, ckpt, model)


def evaluate_sysu_checkpoint(
    checkpoint: str | Path | dict[str, Any],
    root: str | Path,
    spec: ClipSpec,
    trials: int = 10,
    shots: int = 1,
    device: str | torch.device | None = None,
    progress: Callable[[str], Progress] | None = None,
    rerank: Rerank | None = None,
) -> dict[str, dict[str, Any]]:
    """A checkpoint's SYSU-MM01 rows, each the mean of the first ``trials`` gallery draws:
    ``{"all-search": aggregate, "indoor-search": aggregate}`` (see :func:`evaluate_sysu`)."""
    _, model, device = _checkpoint_model(checkpoint, device)
    out = evaluate_sysu(model.embed, root, spec, device, trials=range(trials), shots=shots, progress=progress,
                        rerank=rerank)
    return {f"{mode}-search": r["mean"] for mode, r in out.items()}


def evaluate_llcm(
    embed: EmbedFn,
    root: str | Path,
    spec: ClipSpec = ClipSpec(seq_len=1, height=384, width=144),
    device: str | torch.device = "cpu",
    trials: Sequence[int] = range(10),
    progress: Callable[[str], Progress] | None = None,
    rerank: Rerank | None = None,
) -> dict[str, dict[str, Any]]:
    """LLCM both directions over its gallery draws: ``{direction: {"mean": aggregate, "runs": [metrics per draw]}}``.

    Every test image of each modality is embedded once: it is a query of its direction, and the draws of
    the other direction's gallery are subsets of it."""
    from cmft.data.datasets.llcm import llcm_draws
    from cmft.data.types import direction_modalities

    queries, draws = llcm_draws(root, range(min(trials), max(trials) + 1))
    sets = {m: extract_embeddings(embed, queries[m], spec, device, progress and progress(f"{name} test images"))
            for m, name in (("ir", "infrared"), ("rgb", "visible"))}
    row = {m: {t.paths[0]: i for i, t in enumerate(queries[m])} for m in sets}
    out: dict[str, dict[str, Any]] = {}
    for d in ("ir2rgb", "rgb2ir"):
        q_mod, g_mod = direction_modalities(d)
        runs = [score_pair(sets[q_mod], sets[g_mod][np.array([row[g_mod][g.paths[0]] for g in draws[t][g_mod]])],
                           "llcm", rerank, device) for t in trials]
        out[d] = {"mean": aggregate_trials(runs), "runs": runs}
    return out


def evaluate_llcm_checkpoint(
    checkpoint: str | Path | dict[str, Any],
    root: str | Path,
    spec: ClipSpec,
    trials: int = 10,
    device: str | torch.device | None = None,
    progress: Callable[[str], Progress] | None = None,
    rerank: Rerank | None = None,
) -> dict[str, dict[str, Any]]:
    """A checkpoint's LLCM rows, each direction the mean of the first ``trials`` gallery draws."""
    _, model, device = _checkpoint_model(checkpoint, device)
    out = evaluate_llcm(model.embed, root, spec, device, range(trials), progress, rerank)
    return {d: r["mean"] for d, r in out.items()}
