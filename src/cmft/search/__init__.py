"""Gallery search: one seam (:mod:`cmft.search.gallery`: the :class:`Gallery` protocol and :func:`open_gallery`) over
the LanceDB store (:class:`GalleryStore`) and Milvus; the in-memory FAISS index of the old folder format
(:class:`GalleryIndex`); the indexing helpers.

``import cmft.search`` imports neither LanceDB, FAISS nor torch: they load when a store is opened, a
:class:`GalleryIndex` searches, or the indexing helpers (which embed with a checkpoint) are first used.
"""

from __future__ import annotations

from typing import Any

from cmft.search.gallery import Gallery, IndexFormatError, open_gallery
from cmft.search.index import GalleryIndex
from cmft.search.store import GalleryStore, open_store

__all__ = ["Gallery", "GalleryIndex", "GalleryStore", "IndexFormatError", "index_dataset", "index_folders",
           "index_tracklets", "open_gallery", "open_store"]


def __getattr__(name: str) -> Any:
    if name in ("index_dataset", "index_folders", "index_tracklets"):
        from cmft.search import indexing

        return getattr(indexing, name)
    raise AttributeError(f"module 'cmft.search' has no attribute {name!r}")
