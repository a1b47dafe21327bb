"""One video's work, the same in the plain loop and in a Ray actor: decode, detect, track, export the tracklets
(the library code of ``cmft track``), then embed them (the library code of ``cmft index``).

A :class:`VideoProcessor` holds what is costly to build (the embedding model, the detector) and processes videos
one after another. It never writes to the gallery: the driver commits each video's result in one transaction,
so a killed ingest leaves whole videos or none.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmft.ingest.manifest import VideoRow


@dataclass(frozen=True)
class IngestSettings:
    """How every video is processed (the same for all workers)."""

    checkpoint: str
    detector: str
    crops: str  # folder of every video's crops (a shared file system on a cluster)
    device: str = "cpu"
    threads: int = 1  # torch / OpenCV threads per worker
    batch_size: int = 32  # tracklets per embedding forward pass
    tracker: str = "strongsort"
    appearance: str = "histogram"
    conf: float = 0.5
    nms: float = 0.45
    gsi: bool = True
    export_fps: float = 5.0
    max_len: int = 24
    min_len: int = 12

    def run_meta(self) -> dict[str, Any]:
        """What ``cmft track``'s manifest records of the settings."""
        return {"detector": self.detector, "conf": self.conf, "nms": self.nms, "tracker": self.tracker,
                "appearance": self.appearance, "gsi": self.gsi, "export_fps": self.export_fps, "max_len": self.max_len,
                "min_len": self.min_len, "ingest": True}


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # read when those libraries load


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps every BLAS/OpenMP pool of a worker process at ``threads``."""
    return {var: str(max(1, threads)) for var in THREAD_VARS}


def video_folder(settings: IngestSettings, row: VideoRow) -> Path:
    """Where a video's crops go; every tracklet key of the video starts with this folder's path and a slash."""
    return Path(settings.crops).resolve() / row.folder_name


class VideoProcessor:
    """Builds the model and the detector once; :meth:`process` turns one video into embedded tracklets."""

    def __init__(self, settings: IngestSettings) -> None:
        import cv2
        import torch

        from cmft.inference import Extractor
        from cmft.tracking.detectors import build_detector
        from cmft.tracking.pipeline import quiet_boxmot

        self.settings = settings
        torch.set_num_threads(max(1, settings.threads))
        cv2.setNumThreads(max(1, settings.threads))
        # BLAS and OpenMP pools (NumPy, SciPy, GSI's scikit-learn) at the worker's CPUs: loaded first, then limited.
        # Unlimited, their spinning threads cost two workers on two cores 2.6x each (measured); :data:`THREAD_VARS`
        # in the environment before any import (what `cmft ingest` and its Ray actors do) is the sure way.
        import boxmot.postprocessing.gsi  # noqa: F401
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(max(1, settings.threads))
        quiet_boxmot()
        self.extractor = Extractor(settings.checkpoint, device=settings.device, batch_size=settings.batch_size)
        self.detector = build_detector(settings.detector, conf=settings.conf, nms=settings.nms, device=settings.device)

    def process(self, row: VideoRow) -> dict[str, Any]:
        """The video's result: ``status`` ``ok`` with its ``items`` (entries) and ``embeddings``, or ``failed`` with
        the ``error``; ``frames`` processed, ``video_seconds`` of footage, ``seconds`` of work."""
        t0 = time.perf_counter()
        try:
            out = {**failed_result(row, ""), **self._process(row), "status": "ok"}
            out.pop("error")
        except Exception as e:  # noqa: BLE001 - one bad video is reported by name and the rest carries on
            out = failed_result(row, _reason(e))
        out["seconds"] = time.perf_counter() - t0
        return out

    def _process(self, row: VideoRow) -> dict[str, Any]:
        import numpy as np

        from cmft.search.indexing import embed_items
        from cmft.tracking.export import (
            SourceExport,
            export_dataset,
            export_every,
            manifest_tracklets,
            plan_tracklets,
        )
        from cmft.tracking.pipeline import build_pipeline, track_video
        from cmft.tracking.video import open_video

        s = self.settings
        folder = video_folder(s, row)
        shutil.rmtree(folder, ignore_errors=True)  # an attempt that was never committed (the driver checked)
        reader = open_video(row.path, row.fps)
        fps = reader.info.fps
        det, trk, emb = build_pipeline(self.detector, row.modality, fps, tracker=s.tracker, appearance=s.appearance,
                                       device=s.device)
        run = track_video(reader, det, trk, emb)
        if s.gsi and s.tracker.lower() == "strongsort":
            run.smooth()
        every = export_every(fps, s.export_fps)
        planned = plan_tracklets(run.tracks, every, s.max_len, s.min_len)
        result: dict[str, Any] = {"frames": len(run.frames), "video_seconds": len(run.frames) / fps, "fps": fps}
        if not planned:
            return {**result, "tracklets": 0, "items": [], "embeddings": np.zeros((0, int(self.extractor.dim)), np.float32)}
        meta = {"fps": fps, "frames_processed": len(run.frames), "detections": len(run.detections), "export_every": every}
        export_dataset(folder, [SourceExport(reader, row.camera, row.modality, planned, meta, start=row.start)],
                       split="test", run_meta=s.run_meta())
        items = []
        for t in manifest_tracklets(folder):  # the tracker's identity is this video's own: none across videos is known
            frames = t.pop("files")
            items.append({**t, "key": frames[0], "frames": frames, "source": frames[0], "pid": None, "track": t["pid"],
                          "dataset": "ingest", "video_id": row.video_id})
        return {**result, "tracklets": len(items), "items": items, "embeddings": embed_items(self.extractor, items)}


def failed_result(row: VideoRow, error: str) -> dict[str, Any]:
    """The result of a video that gave nothing: ``status`` ``failed`` with the ``error``."""
    return {**row.as_dict(), "video_id": row.video_id, "frames": 0, "video_seconds": 0.0, "tracklets": 0, "items": [],
            "embeddings": None, "seconds": 0.0, "status": "failed", "error": error}


def _reason(e: BaseException) -> str:
    """One line that says what went wrong and where (the library's errors name the file already)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, (ValueError, OSError, RuntimeError)):
        return text
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    return f"{type(e).__name__}: {text}" + (f" ({Path(frame.filename).name}:{frame.lineno})" if frame else "")
