"""The ``hog`` backend: OpenCV's HOG + linear SVM people detector, ``HogDetector``."""

from __future__ import annotations

import math

import numpy as np

from .base import _as_bgr, _empty, _finish


class HogDetector:
    """OpenCV's HOG people detector (``hog``); score = sigmoid(SVM margin)."""

    def __init__(self, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None) -> None:
        import cv2

        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.name = "hog"
        self.conf, self.nms = float(conf), float(nms)
        self.input_size = input_size
        # Margin threshold equivalent to conf (sigmoid^-1), so weak windows are dropped inside OpenCV.
        c = min(max(self.conf, 1e-6), 1 - 1e-6)
        self._hit = max(0.0, math.log(c / (1 - c)))

    def __repr__(self) -> str:
        return f"HogDetector(input_size={self.input_size}, conf={self.conf}, nms={self.nms})"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        img = _as_bgr(frame, self.name)
        h, w = img.shape[:2]
        scale = 1.0
        if self.input_size:
            scale = self.input_size / max(h, w)
            if scale != 1.0:
                interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        if img.shape[0] < 128 or img.shape[1] < 64:
            return _empty()
        rects, weights = self.hog.detectMultiScale(
            img, hitThreshold=self._hit, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        if len(rects) == 0:
            return _empty()
        r = np.asarray(rects, dtype=np.float32).reshape(-1, 4) / scale
        margin = np.asarray(weights, dtype=np.float32).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-margin))
        px, py = 0.15 * r[:, 2], 0.05 * r[:, 3]
        xyxy = np.stack([r[:, 0] + px, r[:, 1] + py, r[:, 0] + r[:, 2] - px, r[:, 1] + r[:, 3] - py], axis=1)
        return _finish(xyxy, scores, self.conf, self.nms, w, h)
