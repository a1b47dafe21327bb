"""Gallery search: an on-disk index of tracklet embeddings (:class:`GalleryIndex`).

``import cmft.search`` imports neither FAISS nor torch: FAISS loads on the first search.
"""

from __future__ import annotations


from cmft.search.index import GalleryIndex, IndexFormatError

__all__ = ["GalleryIndex", "IndexFormatError"]

