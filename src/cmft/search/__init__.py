"""Gallery search: an on-disk index of tracklet embeddings (:class:`GalleryIndex`) and the indexing helpers.

``import cmft.search`` imports neither FAISS nor torch: FAISS loads on the first search, the indexing helpers
(which embed with a checkpoint) load when first used.
"""

from __future__ import annotations

from typing import Any

from cmft.search.index import GalleryIndex, IndexFormatError

__all__ = ["GalleryIndex", "IndexFormatError", "index_dataset", "index_folders", "index_tracklets"]


def __getattr__(name: str) -> Any:
    if name in ("index_dataset", "index_folders", "index_tracklets"):
        from cmft.search import indexing

        return getattr(indexing, name)
    raise AttributeError(f"module 'cmft.search' has no attribute {name!r}")
