"""Dataset summaries: ids, tracklets and frames per modality and split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cmft.data.types import Direction, Tracklet, VIDataset


def split_counts(tracklets: Iterable[Tracklet]) -> dict[str, int]:
    """Counts of one split: distinct ids, and tracklets and frames of each modality."""
    items = list(tracklets)
    out = {"ids": len({t.pid for t in items})}
    for mod in ("rgb", "ir"):
        of_mod = [t for t in items if t.modality == mod]
        out[f"{mod}_tracklets"] = len(of_mod)
        out[f"{mod}_frames"] = sum(len(t) for t in of_mod)
    return out


def dataset_summary(ds: VIDataset, direction: Direction = "ir2rgb") -> dict[str, Any]:
    """``{"dataset", "train", "query", "gallery"}`` counts: for one protocol direction, or, where query and
    gallery are sets of their own that mix modalities (BUPTCampus), those sets whole, with ``"auxiliary"``."""
    if ds.num_query is None:
        query, gallery = ds.split(direction)
    else:
        nq = ds.num_query
        query = ds.test_ir[: nq["ir"]] + ds.test_rgb[: nq["rgb"]]
        gallery = ds.test_ir[nq["ir"]:] + ds.test_rgb[nq["rgb"]:]
    out: dict[str, Any] = {"dataset": ds.name, "train": split_counts(ds.train), "query": split_counts(query),
                           "gallery": split_counts(gallery)}
    if ds.auxiliary:
        out["auxiliary"] = split_counts(ds.auxiliary)
    return out
