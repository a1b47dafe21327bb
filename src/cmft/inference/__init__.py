"""Using a trained model: tracklet embedding (:class:`Extractor`)."""

from cmft.inference.extractor import Extractor, frame_paths

__all__ = ["Extractor", "frame_paths"]
