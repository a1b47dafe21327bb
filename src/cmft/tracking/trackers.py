"""Multi-object trackers from boxmot behind one small interface: StrongSORT (paper §3.1) and ByteTrack.

StrongSORT is fed the project's own appearance embeddings (:mod:`cmft.tracking.appearance`), so boxmot
never builds (or downloads) a re-ID model of its own. Camera-motion compensation is StrongSORT's ECC by
default; pass ``cmc=None`` for static cameras, where it only costs time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TRACKERS = ("strongsort", "bytetrack")
CMC_METHODS = ("ecc", "orb", "sof", "sift")


class Tracker:
    """One sequence's tracker: ``update(frame, dets, embeddings)`` -> ``[M, 6]`` rows ``track_id, x1, y1, x2, y2, score``.

    ``dets`` are ``[N, 5]`` rows ``x1, y1, x2, y2, score``; ``embeddings`` ``[N, D]`` (L2-normalised) are required
    when :attr:`needs_embeddings` is true. Only tracks confirmed and matched in this frame are returned.
    """

    def __init__(self, name: str, impl: Any, needs_embeddings: bool) -> None:
        self.name, self._impl, self.needs_embeddings = name, impl, needs_embeddings
        self._step = 0

    def update(self, frame: np.ndarray, dets: np.ndarray, embeddings: np.ndarray | None = None) -> np.ndarray:
        import torch
        from boxmot.structures.detections import Detections
        from boxmot.structures.geometry import Boxes

        dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
        valid = (dets[:, 2] > dets[:, 0]) & (dets[:, 3] > dets[:, 1])
        dets = dets[valid]
        emb = None
        if self.needs_embeddings:
            if embeddings is None:
                raise ValueError(f"the {self.name} tracker needs appearance embeddings for every detection")
            emb = torch.from_numpy(np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32)[valid]))
            if len(dets) == 0:
                emb = torch.zeros((0, max(emb.shape[1], 1)), dtype=torch.float32)
        detections = Detections(
            geometry=Boxes(torch.from_numpy(np.ascontiguousarray(dets[:, :4]))),
            scores=torch.from_numpy(np.ascontiguousarray(dets[:, 4].clip(0.0, 1.0))),
            class_ids=torch.zeros(len(dets), dtype=torch.int64),
            sample_id=f"frame-{self._step}",
            embeddings=emb,
        )
        self._step += 1
        tracks = self._impl.update(detections, frame)
        if len(tracks) == 0:
            return np.zeros((0, 6), np.float32)
        return np.column_stack(
            [tracks.track_ids.numpy().astype(np.float32), tracks.geometry.values.numpy(), tracks.scores.numpy()]
        ).astype(np.float32)


def build_tracker(
    name: str = "strongsort",
    *,
    cmc: str | None = "ecc",
    fps: float = 10.0,
    max_age_s: float = 3.0,
    min_hits: int = 3,
    max_cos_dist: float = 0.2,
    max_iou_dist: float = 0.7,
    mc_lambda: float = 0.98,
    track_thresh: float = 0.45,
    match_thresh: float = 0.8,
) -> Tracker:
    """A fresh tracker for one sequence; ``max_age_s`` is how long a lost track may be re-found (in seconds of video)."""
    name = name.lower()
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; choose one of: {', '.join(TRACKERS)}")
    if cmc is not None and cmc not in CMC_METHODS:
        raise ValueError(f"unknown camera-motion compensation {cmc!r}; choose one of: {', '.join(CMC_METHODS)} or none")
    max_age = max(1, round(max_age_s * fps))
    if name == "strongsort":
        from boxmot import StrongSort
        from boxmot.motion.cmc import create_cmc

        impl = StrongSort(
            min_conf=0.0, max_cos_dist=max_cos_dist, max_iou_dist=max_iou_dist, n_init=min_hits, mc_lambda=mc_lambda,
            max_age=max_age, min_hits=min_hits,
        )
        # StrongSort builds ECC unconditionally; its tracks skip compensation when the estimator is None.
        impl.cmc = None if cmc is None else create_cmc(cmc)
        return Tracker("strongsort", impl, needs_embeddings=True)
    from boxmot import ByteTrack

    impl = ByteTrack(
        min_conf=0.1, track_thresh=track_thresh, match_thresh=match_thresh, track_buffer=max_age,
        frame_rate=30, min_hits=min_hits, max_age=max_age,
    )
    return Tracker("bytetrack", impl, needs_embeddings=False)
