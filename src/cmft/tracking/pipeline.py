"""Detect and track people through one video: the first half of paper §3.1's sequence generation.

:func:`track_video` decodes every ``stride``-th frame, detects people, embeds them when the tracker wants
appearance, and feeds the tracker; it returns every detection and track box with per-stage timings, so the
same run can be exported (:mod:`cmft.tracking.export`) and scored (:mod:`cmft.tracking.mot_eval`).
Frame numbers are the source's 0-based indices; MOTChallenge files use ``index + 1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cmft.tracking.appearance import AppearanceEmbedder
from cmft.tracking.trackers import Tracker
from cmft.tracking.video import VideoInfo, VideoReader

STAGES = ("decode", "detect", "embed", "track")


@dataclass
class TrackingRun:
    """What one video produced: ``detections`` ``[K, 6]`` (frame, x1, y1, x2, y2, score) and ``tracks``
    ``[M, 7]`` (frame, track id, x1, y1, x2, y2, score), frames as 0-based source indices."""

    source: VideoInfo
    frames: np.ndarray
    detections: np.ndarray
    tracks: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time, all stages together."""
        return len(self.frames) / self.wall_s if self.wall_s > 0 else float("inf")

    def stage_ms(self) -> dict[str, float]:
        """Milliseconds per processed frame of each stage."""
        n = max(len(self.frames), 1)
        return {k: 1000 * v / n for k, v in self.timings.items()}

    def smooth(self, interval: int = 20, tau: float = 10.0) -> None:
        """Apply :func:`smooth_tracks` (GSI) in place, keep only processed frames, and count its time as a stage."""
        t0 = time.perf_counter()
        if len(self.tracks):
            tracks = smooth_tracks(self.tracks, interval, tau)
            self.tracks = tracks[np.isin(np.round(tracks[:, 0]).astype(np.int64), self.frames)]
        spent = time.perf_counter() - t0
        self.timings["gsi"] = self.timings.get("gsi", 0.0) + spent
        self.wall_s += spent

    def mot_rows(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Processed frames, detections and tracks in MOTChallenge numbering (frame = index + 1), float64."""
        dets, tracks = self.detections.astype(np.float64), self.tracks.astype(np.float64)
        dets[:, 0] += 1
        tracks[:, 0] += 1
        return (self.frames + 1).tolist(), dets, tracks


def quiet_boxmot() -> None:
    """boxmot configures its logger at import and logs every tracker's settings at INFO: keep a terminal (or a
    worker's log) for progress and results. Imports boxmot first, or its configuration would reset the level."""
    import logging

    import boxmot.utils  # noqa: F401

    logging.getLogger("boxmot").setLevel(logging.WARNING)


def build_pipeline(
    detector: str | Callable[[np.ndarray], np.ndarray], modality: str, fps: float, *, conf: float = 0.5, nms: float = 0.45,
    input_size: int | None = None, tracker: str = "strongsort", cmc: str = "none", appearance: str = "histogram",
    max_cos_dist: float | None = None, device: str = "cpu",
) -> tuple[Callable[[np.ndarray], np.ndarray], Tracker, AppearanceEmbedder | None]:
    """Detector (a spec, or one already built), tracker and appearance embedder for one video of ``modality`` at
    ``fps``: what ``cmft track`` and ``cmft ingest`` run. Bad specs raise DetectorError / ValueError /
    FileNotFoundError naming what is wrong."""
    from cmft.tracking.appearance import build_embedder
    from cmft.tracking.detectors import build_detector
    from cmft.tracking.trackers import build_tracker

    det = build_detector(detector, conf=conf, nms=nms, input_size=input_size, device=device) if isinstance(detector, str) else detector
    emb = build_embedder(appearance, modality, device) if tracker.lower() == "strongsort" else None
    gate = max_cos_dist if max_cos_dist is not None else getattr(emb, "suggested_max_cos_dist", 0.2)
    trk = build_tracker(tracker, cmc=None if cmc.lower() == "none" else cmc.lower(), fps=fps, max_cos_dist=gate)
    return det, trk, emb


def track_video(
    reader: VideoReader,
    detector: Callable[[np.ndarray], np.ndarray],
    tracker: Tracker,
    embedder: AppearanceEmbedder | None = None,
    stride: int = 1,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrackingRun:
    """Run detection + tracking over a video; ``progress(done, total)`` is called after every frame."""
    if tracker.needs_embeddings and embedder is None:
        raise ValueError(f"the {tracker.name} tracker needs an appearance embedder")
    total = -(-reader.info.num_frames // stride)
    if limit is not None:
        total = min(total, limit)
    timings = dict.fromkeys(STAGES, 0.0)
    frames: list[int] = []
    det_rows: list[np.ndarray] = []
    track_rows: list[np.ndarray] = []
    start = time.perf_counter()
    tick = start
    for index, frame in reader.frames(stride=stride, limit=limit):
        now = time.perf_counter()
        timings["decode"] += now - tick
        dets = np.asarray(detector(frame), dtype=np.float32).reshape(-1, 5)
        t1 = time.perf_counter()
        timings["detect"] += t1 - now
        emb = embedder(frame, dets[:, :4]) if tracker.needs_embeddings else None
        t2 = time.perf_counter()
        timings["embed"] += t2 - t1
        out = tracker.update(frame, dets, emb)
        tick = time.perf_counter()
        timings["track"] += tick - t2
        frames.append(index)
        if len(dets):
            det_rows.append(np.column_stack([np.full(len(dets), index, np.float32), dets]))
        if len(out):
            track_rows.append(np.column_stack([np.full(len(out), index, np.float32), out]))
        if progress is not None:
            progress(len(frames), max(total, len(frames)))
    wall = time.perf_counter() - start
    return TrackingRun(
        source=reader.info,
        frames=np.asarray(frames, dtype=np.int64),
        detections=np.concatenate(det_rows) if det_rows else np.zeros((0, 6), np.float32),
        tracks=np.concatenate(track_rows) if track_rows else np.zeros((0, 7), np.float32),
        timings=timings,
        wall_s=wall,
    )


def smooth_tracks(tracks: np.ndarray, interval: int = 20, tau: float = 10.0) -> np.ndarray:
    """StrongSORT's offline GSI (paper §3.1): fill gaps shorter than ``interval`` frames by linear interpolation,
    then smooth each track's boxes with a Gaussian process (length scale from ``tau``), as boxmot implements it."""
    if len(tracks) == 0:
        return tracks
    from boxmot.postprocessing.gsi import gaussian_smooth, linear_interpolation

    rows = np.asarray(tracks, dtype=np.float64)[:, :7]
    filled = linear_interpolation(rows, interval)
    smoothed = gaussian_smooth(filled, tau)[:, :7]
    order = np.lexsort((smoothed[:, 1], smoothed[:, 0]))
    return smoothed[order].astype(np.float32)
