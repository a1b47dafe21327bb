"""The ``onnx:FILE`` backend: ``OnnxDetector`` (OpenCV DNN) with NanoDet and YOLO-style output decoding."""

from __future__ import annotations

import math

import numpy as np

from .base import DetectorError, _as_bgr, _cv_msg, _cv_net_cpu, _existing_file, _finish, _letterbox
from .onnx_graph import onnx_input_shape

_NANODET_MEAN = (103.53, 116.28, 123.675)  # BGR
_NANODET_STD = (57.375, 57.12, 58.395)
_NANODET_BINS = 8  # reg_max + 1


def _anchor_count(size: int, strides: tuple[int, ...]) -> int:
    return sum(math.ceil(size / s) ** 2 for s in strides)


class OnnxDetector:
    """An ONNX detector through OpenCV DNN: NanoDet or Ultralytics/YOLOv5-v8 layout (``onnx:FILE``)."""

    def __init__(self, path: str, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None) -> None:
        p = _existing_file(path, "onnx model")
        import cv2

        try:
            net = cv2.dnn.readNetFromONNX(str(p))
        except cv2.error as e:
            raise DetectorError(f"OpenCV could not parse ONNX model {path}: {_cv_msg(e)}") from e
        if net.empty():
            raise DetectorError(f"OpenCV loaded an empty net from ONNX model {path}")
        self.net = _cv_net_cpu(net)
        self.out_names = list(net.getUnconnectedOutLayersNames())
        self.file = str(p)
        self.name = f"onnx:{p.stem}"
        self.conf, self.nms = float(conf), float(nms)
        shape = onnx_input_shape(p) or []
        fixed_side = shape[2] if len(shape) == 4 and shape[2] > 0 and shape[2] == shape[3] else None
        self.input_size = int(input_size or fixed_side or 640)
        # Find the layout from one run on a blank input of the right size.
        blank = np.zeros((1, 3, self.input_size, self.input_size), dtype=np.float32)
        try:
            self.net.setInput(blank)
            outs = self.net.forward(self.out_names)
        except cv2.error as e:
            fixed = fixed_side is not None and fixed_side != self.input_size
            hint = f" (the model's input is fixed at {fixed_side}x{fixed_side})" if fixed else ""
            raise DetectorError(
                f"OpenCV could not run ONNX model {path} at input {self.input_size}x{self.input_size}{hint}: "
                f"{_cv_msg(e)}"
            ) from e
        self.layout = self._find_layout([o.shape for o in outs], outs)

    def __repr__(self) -> str:
        return (
            f"OnnxDetector({self.name!r}, layout={self.layout!r}, input={self.input_size}, "
            f"conf={self.conf}, nms={self.nms})"
        )

    # -- layout detection

    def _find_layout(self, shapes: list[tuple[int, ...]], outs: list[np.ndarray]) -> str:
        s = self.input_size
        shapes = [tuple(int(x) for x in sh) for sh in shapes]
        if len(shapes) >= 2 and len(shapes) % 2 == 0 and all(len(sh) == 3 and sh[0] == 1 for sh in shapes):
            layout = self._nanodet_layout(shapes, outs)
            if layout:
                return layout
        if len(shapes) == 1:
            layout = yolo_output_layout(shapes[0], s)
            if layout:
                return layout
        raise DetectorError(
            f"ONNX model {self.file}: unrecognised output layout {[tuple(x) for x in shapes]} at input "
            f"{s}x{s}; supported: NanoDet (pairs [1, A, C] + [1, A, 32] per stride), YOLOv5 [1, N, 5+C], "
            "YOLOv8 [1, 4+C, N], end-to-end [1, K, 6] (N = anchors for the input size; is input_size right?)"
        )

    def _nanodet_layout(self, shapes: list[tuple[int, ...]], outs: list[np.ndarray]) -> str | None:
        s = self.input_size
        by_a: dict[int, list[int]] = {}
        for i, sh in enumerate(shapes):
            by_a.setdefault(sh[1], []).append(i)
        levels = []
        for a, idx in by_a.items():
            if len(idx) != 2:
                return None
            i, j = idx
            reg_first = shapes[i][2] == 4 * _NANODET_BINS and shapes[j][2] != 4 * _NANODET_BINS
            cls_i, reg_i = (j, i) if reg_first else (i, j)
            if shapes[reg_i][2] != 4 * _NANODET_BINS:
                return None
            n = math.isqrt(a)
            if n * n != a or s % n:
                return None
            levels.append((s // n, n, cls_i, reg_i))
        levels.sort()
        ncls = {shapes[c][2] for _, _, c, _ in levels}
        if len(ncls) != 1:
            return None
        self._levels = levels
        self._centres = []
        for stride, n, _, _ in levels:
            c = np.arange(n, dtype=np.float32) * stride + 0.5 * (stride - 1)
            xs, ys = np.meshgrid(c, c)
            self._centres.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        # Scores already sigmoid-ed in the graph (as in nanodet_m.onnx) stay as they are, logits get a sigmoid.
        cls_vals = np.concatenate([outs[c].ravel() for _, _, c, _ in levels])
        self._nanodet_sigmoid = bool(cls_vals.min() < 0 or cls_vals.max() > 1)
        self._bins = np.arange(_NANODET_BINS, dtype=np.float32)
        return "nanodet"

    # -- inference

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        img = _as_bgr(frame, self.name)
        h, w = img.shape[:2]
        s = self.input_size
        if self.layout == "nanodet":
            canvas, scale, left, top = _letterbox(img, s, 0)
            blob = cv2.dnn.blobFromImage(canvas, 1.0, (s, s), _NANODET_MEAN, swapRB=False, crop=False)
            blob /= np.asarray(_NANODET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
        else:
            canvas, scale, left, top = _letterbox(img, s, 114)
            blob = cv2.dnn.blobFromImage(canvas, 1 / 255.0, (s, s), swapRB=True, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.out_names)
        xyxy, scores = self.decode(outs)
        if len(scores):
            xyxy[:, 0::2] = (xyxy[:, 0::2] - left) / scale
            xyxy[:, 1::2] = (xyxy[:, 1::2] - top) / scale
        return _finish(xyxy, scores, self.conf, self.nms, w, h)

    def decode(self, outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw net outputs -> person boxes (x1, y1, x2, y2 in input pixels) and scores with score >= conf."""
        if self.layout == "nanodet":
            return self._decode_nanodet(outs)
        return decode_yolo_output(outs[0], self.layout, self.conf)

    def _decode_nanodet(self, outs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = [], []
        for (stride, _, ci, ri), centres in zip(self._levels, self._centres):
            sc = outs[ci].reshape(-1, outs[ci].shape[-1])[:, 0]
            if self._nanodet_sigmoid:
                sc = 1.0 / (1.0 + np.exp(-sc))
            keep = np.flatnonzero(sc >= self.conf)
            if keep.size == 0:
                continue
            reg = outs[ri].reshape(-1, 4, _NANODET_BINS)[keep]
            reg = np.exp(reg - reg.max(axis=2, keepdims=True))
            dist = (reg @ self._bins) / reg.sum(axis=2) * stride  # expected distance per side, [k, 4]
            c = centres[keep]
            boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
            scores.append(sc[keep])
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        return np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)


def yolo_output_layout(shape: tuple[int, ...], input_size: int) -> str | None:
    """Name the layout of a single YOLO-style output of ``shape`` at a square ``input_size``, or None.

    ``N`` must be the anchor count of the input size (strides 8/16/32, or 8/16/32/64 for P6 models;
    three anchors per cell for YOLOv5): ``[1, 4 + C, N]`` -> ``"yolov8"``, ``[1, N, 4 + C]`` ->
    ``"yolov8-rows"``, ``[1, 3N, 5 + C]`` -> ``"yolov5"``; ``[1, K, 6]`` with ``K`` below the anchor
    count -> ``"end2end"``.
    """
    if len(shape) != 3 or shape[0] != 1:
        return None
    _, a, b = (int(x) for x in shape)
    n3 = _anchor_count(input_size, (8, 16, 32))
    n4 = _anchor_count(input_size, (8, 16, 32, 64))
    if b in (n3, n4) and a > 4:
        return "yolov8"
    if a in (n3, n4) and b > 4:
        return "yolov8-rows"
    if a in (3 * n3, 3 * n4) and b > 5:
        return "yolov5"
    if b == 6 and 0 < a < n3:
        return "end2end"
    return None


def decode_yolo_output(out: np.ndarray, layout: str, conf: float, person: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decode one Ultralytics/YOLOv5-style output to class-``person`` boxes (x1, y1, x2, y2) and scores >= conf.

    ``layout``: ``"yolov5"`` ``[1, N, 5 + C]`` (cx, cy, w, h, objectness, class scores; score =
    objectness x class score), ``"yolov8"`` ``[1, 4 + C, N]``, ``"yolov8-rows"`` ``[1, N, 4 + C]``
    (cx, cy, w, h, class scores) or ``"end2end"`` ``[1, K, 6]`` (x1, y1, x2, y2, score, class).
    Coordinates stay in the network's input pixels.
    """
    a = np.asarray(out, dtype=np.float32)
    a = a.reshape(a.shape[-2], a.shape[-1])
    empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
    if layout == "end2end":
        keep = (a[:, 5].round() == person) & (a[:, 4] >= conf)
        return a[keep, :4].copy(), a[keep, 4].copy()
    if layout == "yolov8":
        a = a.T
    if layout == "yolov5":
        scores = a[:, 4] * a[:, 5 + person]
    elif layout in ("yolov8", "yolov8-rows"):
        scores = a[:, 4 + person]
    else:
        raise DetectorError(f"unknown YOLO output layout {layout!r}")
    keep = scores >= conf
    if not keep.any():
        return empty
    r = a[keep]
    half = r[:, 2:4] / 2
    return np.concatenate([r[:, :2] - half, r[:, :2] + half], axis=1), scores[keep]
