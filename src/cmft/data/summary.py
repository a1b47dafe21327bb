"""Dataset summaries: ids, tracklets and frames per modality and split."""

from __future__ import annotations

from collections.abc import Iterable

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


def dataset_summary(ds: VIDataset, direction: Direction = "ir2rgb") -> dict[str, dict[str, int]]:
    """``{"train": ..., "query": ..., "gallery": ...}`` counts for one protocol direction."""
    query, gallery = ds.split(direction)
    return {"train": split_counts(ds.train), "query": split_counts(query), "gallery": split_counts(gallery)}
