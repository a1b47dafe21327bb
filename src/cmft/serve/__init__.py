"""Gallery search service: a FastAPI app over a gallery store (:class:`cmft.search.store.GalleryStore`) and its web page.

``create_app(index_folder)`` builds the app (``cmft serve INDEX`` runs it with uvicorn). FastAPI is imported
only when the app is built, so ``import cmft.serve`` works without the ``serve`` extra.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from cmft.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'cmft.serve' has no attribute {name!r}")
