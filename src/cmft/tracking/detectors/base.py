"""The shared base of the detector backends: the ``Detector`` contract, ``DetectorError`` and frame / box helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


class DetectorError(ValueError):
    """A detector spec, model file or frame that cannot be used; the message names the file and the problem."""


@runtime_checkable
class Detector(Protocol):
    """``frame (H x W x 3 BGR or H x W grey, uint8) -> float32 [N, 5]`` rows ``x1, y1, x2, y2, score``."""

    name: str

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...


def _existing_file(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DetectorError(f"{what} file not found: {path}")
    if not p.is_file():
        raise DetectorError(f"{what} path is not a file: {path}")
    return p


def _as_bgr(frame: Any, name: str) -> np.ndarray:
    """Check a frame and return it as a contiguous H x W x 3 uint8 BGR array (grey is replicated)."""
    import cv2

    if not isinstance(frame, np.ndarray):
        raise DetectorError(f"{name}: frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise DetectorError(f"{name}: frame must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        out = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        out = np.ascontiguousarray(frame)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        out = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    else:
        raise DetectorError(f"{name}: frame must be H x W (grey) or H x W x 3 (BGR), got shape {frame.shape}")
    if out.shape[0] < 1 or out.shape[1] < 1:
        raise DetectorError(f"{name}: empty frame of shape {frame.shape}")
    return out


def _empty() -> np.ndarray:
    return np.zeros((0, 5), dtype=np.float32)


def _finish(xyxy: np.ndarray, scores: np.ndarray, conf: float, nms: float, width: int, height: int) -> np.ndarray:
    """Keep ``score >= conf``, clip to the frame, drop empty boxes, NMS, sort by score: float32 [N, 5]."""
    import cv2

    keep = scores >= conf
    if not keep.any():
        return _empty()
    xyxy = xyxy[keep].astype(np.float32, copy=True)
    scores = scores[keep].astype(np.float32, copy=False)
    np.clip(xyxy[:, 0::2], 0.0, float(width), out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0.0, float(height), out=xyxy[:, 1::2])
    wh = xyxy[:, 2:4] - xyxy[:, 0:2]
    ok = (wh[:, 0] > 0) & (wh[:, 1] > 0)
    if not ok.all():
        xyxy, scores, wh = xyxy[ok], scores[ok], wh[ok]
    if len(scores) == 0:
        return _empty()
    xywh = np.concatenate([xyxy[:, :2], wh], axis=1).astype(np.float64)
    idx = np.asarray(cv2.dnn.NMSBoxes(xywh, scores.astype(np.float64), float(conf), float(nms)), dtype=np.int64)
    idx = idx.reshape(-1)
    if idx.size == 0:
        return _empty()
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return np.concatenate([xyxy[idx], scores[idx, None]], axis=1).astype(np.float32, copy=False)


def _letterbox(img: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping the aspect ratio into a ``size x size`` canvas, centred: (canvas, scale, left, top)."""
    import cv2

    h, w = img.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(img, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else img
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas = cv2.copyMakeBorder(
        resized, top, size - nh - top, left, size - nw - left, cv2.BORDER_CONSTANT, value=(pad, pad, pad)
    )
    return canvas, scale, left, top


def _cv_net_cpu(net: Any) -> Any:
    import cv2

    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def _cv_msg(e: Exception) -> str:
    """The useful line of an OpenCV error."""
    text = " ".join(str(e).split())
    return text[-300:]
