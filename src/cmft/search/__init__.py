"""Gallery search: the gallery store of tracklet embeddings (:class:`GalleryStore`, transactional, on disk), the
in-memory index of the old folder format (:class:`GalleryIndex`) and the indexing helpers.

``import cmft.search`` imports neither FAISS nor torch: FAISS loads when a compaction trains the IVF lists (or on
a :class:`GalleryIndex` search), the indexing helpers (which embed with a checkpoint) load when first used.
"""

from __future__ import annotations

from typing import Any

from cmft.search.index import GalleryIndex, IndexFormatError
from cmft.search.store import GalleryStore, open_store

__all__ = ["GalleryIndex", "GalleryStore", "IndexFormatError", "index_dataset", "index_folders", "index_tracklets",
           "open_store"]


def __getattr__(name: str) -> Any:
    if name in ("index_dataset", "index_folders", "index_tracklets"):
        from cmft.search import indexing

        return getattr(indexing, name)
    raise AttributeError(f"module 'cmft.search' has no attribute {name!r}")
