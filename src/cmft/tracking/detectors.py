"""Person detectors for the video -> tracklets pipeline, built from one spec string.

Every detector is a callable ``detector(frame) -> boxes``:

* ``frame``: an ``H x W x 3`` ``uint8`` image in OpenCV's BGR order, or an ``H x W`` (or ``H x W x 1``)
  grey image such as an infrared frame (``H x W x 4`` BGRA is accepted too, alpha is dropped).
* ``boxes``: a ``float32`` array of shape ``[N, 5]``, one row ``x1, y1, x2, y2, score`` per person, in
  the frame's pixel coordinates, clipped to ``[0, W] x [0, H]``, person class only, ``score >= conf``,
  after non-maximum suppression at IoU ``nms``, sorted by score (highest first). ``N`` may be 0: the
  array is then ``(0, 5)``.

Spec forms accepted by :func:`build_detector` (paths must not contain ``:``):

``darknet:CFG:WEIGHTS``
    A Darknet YOLO (e.g. Yolo-Fastest) through ``cv2.dnn.readNetFromDarknet``. The input size is the
    cfg's ``[net] width/height`` unless ``input_size`` is given (a multiple of 32). The frame is
    stretched to the input size (no letterbox), RGB, scaled to 0..1. Person is class 0, which holds
    for person-only cfgs and for COCO cfgs. Score = objectness x class-0 probability, as OpenCV's
    YOLO layer reports it.
``onnx:FILE``
    An ONNX detector through ``cv2.dnn.readNetFromONNX``; the output layout is found by running the
    net once on a blank image when it is built:

    * NanoDet (v0.x, GFL head), e.g. ``nanodet_m.onnx``: pairs of outputs per stride, class scores
      ``[1, A, C]`` and box distributions ``[1, A, 32]`` (4 sides x 8 bins), ``A = (S / stride)^2``.
      Input: letterboxed (kept aspect ratio, centred, black border), BGR, normalised with
      mean ``(103.53, 116.28, 123.675)`` and std ``(57.375, 57.12, 58.395)``.
    * Ultralytics / YOLOv5-v8-style, one output in input pixels: ``[1, N, 5 + C]`` rows of
      ``cx, cy, w, h, objectness, class scores`` (YOLOv5), ``[1, 4 + C, N]`` columns of
      ``cx, cy, w, h, class scores`` without objectness (YOLOv8/11), or end-to-end ``[1, K, 6]``
      rows of ``x1, y1, x2, y2, score, class`` (YOLO26 / ``nms=True`` exports). Which one is decided
      from ``N`` (the anchor count for the input size). Input: letterboxed with grey (114) border,
      RGB, scaled to 0..1.

    Person is class 0 (COCO order). The input size is read from the ONNX graph's input shape when it
    is fixed (else 640) unless ``input_size`` is given.
``yolo:WEIGHTS_OR_NAME``
    An Ultralytics model (``.pt``, or a model ``.yaml`` such as ``yolov8n.yaml`` for a randomly
    initialised net) through ``ultralytics.YOLO``. Person is the class named ``person`` in
    ``model.names`` (class 0 when there is none). A bare known name such as ``yolov8n.pt`` that is
    not present locally is downloaded by Ultralytics when the machine is online; offline that is a
    :class:`DetectorError`. The image size is ``input_size`` or 640; ``device`` is passed to
    Ultralytics (the other kinds run on the CPU through OpenCV).
``hog``
    OpenCV's HOG + linear SVM people detector (``cv2.HOGDescriptor_getDefaultPeopleDetector``), no
    files needed. Its window is 64 x 128 pixels, so people shorter than about 100 pixels are missed
    unless the frame is enlarged: with ``input_size`` the frame is resized so that its longer side is
    ``input_size`` before detection (boxes are mapped back). Score = ``sigmoid(svm_margin)``, so
    ``conf = 0.5`` keeps every window the SVM calls a person (margin > 0) and higher ``conf`` asks for
    a larger margin (a ``conf`` below 0.5 acts as 0.5: negative-margin windows are never kept). Boxes are shrunk by 15 % of the width and 5 % of the height on each side
    (the window's margin around the body, as in OpenCV's ``peopledetect`` sample).

Nothing here imports OpenCV, torch or Ultralytics when the module is imported: each detector imports
what it needs when it is built. Before Ultralytics is imported the offline-friendly environment
defaults ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``, ``ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS=1``
and a writable ``YOLO_CONFIG_DIR`` are set with ``os.environ.setdefault`` (values already set win).
``YOLO_OFFLINE=1`` only stops Ultralytics' internet probe and retries; it still tries a download when
asked for a missing known model.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "SPEC_FORMS",
    "Detector",
    "DetectorError",
    "build_detector",
    "parse_detector_spec",
]

SPEC_FORMS: tuple[str, ...] = ("darknet:CFG:WEIGHTS", "onnx:FILE", "yolo:WEIGHTS_OR_NAME", "hog")
_ARITY: dict[str, tuple[int, str]] = {
    "darknet": (2, "darknet:CFG:WEIGHTS"),
    "onnx": (1, "onnx:FILE"),
    "yolo": (1, "yolo:WEIGHTS_OR_NAME"),
    "hog": (0, "hog"),
}

_NANODET_MEAN = (103.53, 116.28, 123.675)  # BGR
_NANODET_STD = (57.375, 57.12, 58.395)
_NANODET_BINS = 8  # reg_max + 1


class DetectorError(ValueError):
    """A detector spec, model file or frame that cannot be used; the message names the file and the problem."""


@runtime_checkable
class Detector(Protocol):
    """``frame (H x W x 3 BGR or H x W grey, uint8) -> float32 [N, 5]`` rows ``x1, y1, x2, y2, score``."""

    name: str

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------- specs


def _forms_text() -> str:
    return ", ".join(f"'{f}'" for f in SPEC_FORMS)


def parse_detector_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``kind:arg:...`` into ``(kind, args)`` and check the number of parts for the kind.

    >>> parse_detector_spec("darknet:a.cfg:a.weights")
    ('darknet', ['a.cfg', 'a.weights'])
    >>> parse_detector_spec("hog")
    ('hog', [])
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DetectorError(f"empty detector spec {spec!r}: use one of {_forms_text()}")
    text = spec.strip()
    kind, *args = text.split(":")
    kind = kind.strip().lower()
    args = [a.strip() for a in args]
    if kind not in _ARITY:
        raise DetectorError(f"unknown detector kind {kind!r} in spec {spec!r}: use one of {_forms_text()}")
    n, form = _ARITY[kind]
    if len(args) != n or any(not a for a in args):
        got = f"{len(args)} part{'s' * (len(args) != 1)}" if all(args) else "an empty part"
        raise DetectorError(
            f"detector spec {spec!r} has {got} after '{kind}', the form is '{form}' "
            f"({n} part{'s' * (n != 1)}; paths must not contain ':'); all forms: {_forms_text()}"
        )
    return kind, args


def build_detector(
    spec: str,
    conf: float = 0.5,
    nms: float = 0.45,
    input_size: int | None = None,
    device: str = "cpu",
) -> Detector:
    """Build a person detector from a spec (see the module docstring for the forms).

    ``conf``: minimum score kept; ``nms``: IoU threshold of non-maximum suppression; ``input_size``:
    the network's square input side (a multiple of 32 for ``darknet``/``onnx``; for ``hog`` the longer
    side the frame is resized to); ``device``: Ultralytics device for ``yolo`` (``darknet``, ``onnx``
    and ``hog`` run on the CPU and accept only ``"cpu"``).
    """
    kind, args = parse_detector_spec(spec)
    if not 0.0 <= float(conf) <= 1.0:
        raise DetectorError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 < float(nms) <= 1.0:
        raise DetectorError(f"nms IoU threshold must be in (0, 1], got {nms}")
    if input_size is not None and (int(input_size) != input_size or input_size <= 0):
        raise DetectorError(f"input_size must be a positive integer, got {input_size!r}")
    if kind in ("darknet", "onnx"):
        if input_size is not None and input_size % 32:
            raise DetectorError(f"input_size for '{kind}' must be a multiple of 32, got {input_size}")
    if kind != "yolo" and str(device).lower() != "cpu":
        raise DetectorError(
            f"device {device!r}: '{kind}' detectors run on the CPU through OpenCV (device='cpu'); "
            "only 'yolo:' detectors use another device"
        )
    if kind == "darknet":
        return DarknetDetector(args[0], args[1], conf=conf, nms=nms, input_size=input_size)
    if kind == "onnx":
        return OnnxDetector(args[0], conf=conf, nms=nms, input_size=input_size)
    if kind == "yolo":
        return UltralyticsDetector(args[0], conf=conf, nms=nms, input_size=input_size, device=device)
    return HogDetector(conf=conf, nms=nms, input_size=input_size)


# ----------------------------------------------------------------------------------------- helpers


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


# ----------------------------------------------------------------------------------------- darknet


def _sniff_text(path: Path, limit: int = 65536) -> str | None:
    """The file's head as text when it looks like text (no NUL bytes, decodes), else None."""
    with open(path, "rb") as f:
        head = f.read(limit)
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _darknet_cfg_size(text: str) -> tuple[int, int] | None:
    """``(width, height)`` from the ``[net]`` section of a Darknet cfg, or None."""
    in_net = False
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if in_net:
                break
            in_net = line.lower() in ("[net]", "[network]")
            continue
        if in_net and "=" in line:
            k, v = line.split("=", 1)
            values[k.strip().lower()] = v.strip()
    try:
        return int(values["width"]), int(values["height"])
    except (KeyError, ValueError):
        return None


def _darknet_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip().lower(), {}))
        elif "=" in line and sections:
            k, v = line.split("=", 1)
            sections[-1][1][k.strip().lower()] = v.strip()
    return sections


def _darknet_weight_count(text: str) -> int | None:
    """Number of float32 values a Darknet weights file must hold for this cfg, or None when unsure.

    Counts convolutional layers (biases, batch-norm scale/mean/var, kernels with groups) and follows
    channel counts through route, shortcut, maxpool, upsample, dropout and yolo sections; any other
    section makes the count unknown (no check).
    """
    sections = _darknet_sections(text)
    if not sections or sections[0][0] not in ("net", "network"):
        return None
    try:
        channels = int(sections[0][1].get("channels", 3))
        outs: list[int] = []
        total = 0
        for kind, opt in sections[1:]:
            if kind in ("convolutional", "conv"):
                filters, size = int(opt["filters"]), int(opt.get("size", 1))
                groups = int(opt.get("groups", 1))
                bn = int(opt.get("batch_normalize", 0))
                if channels % groups:
                    return None
                total += filters * (4 if bn else 1) + filters * (channels // groups) * size * size
                channels = filters
            elif kind == "route":
                idx = [int(x) for x in opt["layers"].split(",")]
                picked = [outs[i if i >= 0 else len(outs) + i] for i in idx]
                channels = sum(picked) // int(opt.get("groups", 1))
            elif kind not in ("shortcut", "maxpool", "upsample", "dropout", "yolo", "region"):
                return None
            outs.append(channels)
        return total
    except (KeyError, ValueError, IndexError):
        return None


def _check_darknet_weights_size(cfg: str, cfg_text: str, weights: str, weights_p: Path) -> None:
    """Raise when the weights file does not hold exactly the values the cfg needs (OpenCV does not check)."""
    need = _darknet_weight_count(cfg_text)
    if need is None:
        return
    size = weights_p.stat().st_size
    with open(weights_p, "rb") as f:
        head = np.frombuffer(f.read(12).ljust(12, b"\0"), dtype="<i4")
    major, minor = int(head[0]), int(head[1])
    header = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
    expected = header + 4 * need
    if size != expected:
        raise DetectorError(
            f"darknet weights {weights} has {size} bytes but cfg {cfg} needs {expected} "
            f"({need} float32 values after a {header}-byte header): weights of another cfg, or a corrupt file"
        )


def _looks_like_cfg(text: str | None) -> bool:
    return text is not None and any(
        line.strip().lower() in ("[net]", "[network]") for line in text.splitlines()
    )


class DarknetDetector:
    """A Darknet YOLO through OpenCV DNN (see the module docstring, ``darknet:CFG:WEIGHTS``)."""

    def __init__(self, cfg: str, weights: str, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None):
        cfg_p = _existing_file(cfg, "darknet cfg")
        weights_p = _existing_file(weights, "darknet weights")
        cfg_text = _sniff_text(cfg_p)
        if not _looks_like_cfg(cfg_text):
            if _looks_like_cfg(_sniff_text(weights_p)):
                raise DetectorError(
                    f"darknet cfg and weights look swapped: {cfg} is not a text cfg but {weights} is; "
                    "the form is 'darknet:CFG:WEIGHTS'"
                )
            raise DetectorError(f"darknet cfg {cfg} is not a Darknet cfg (a text file with a [net] section)")
        if _looks_like_cfg(_sniff_text(weights_p, 4096)):
            raise DetectorError(f"darknet weights {weights} is a text cfg, not binary weights")
        assert cfg_text is not None
        _check_darknet_weights_size(cfg, cfg_text, weights, weights_p)
        size = _darknet_cfg_size(cfg_text)
        if input_size is not None:
            self.input_wh = (int(input_size), int(input_size))
        elif size is not None:
            self.input_wh = size
        else:
            raise DetectorError(f"darknet cfg {cfg} has no width/height in its [net] section; pass input_size")

        import cv2

        try:
            net = cv2.dnn.readNetFromDarknet(str(cfg_p), str(weights_p))
        except cv2.error as e:
            raise DetectorError(
                f"OpenCV could not load darknet cfg {cfg} with weights {weights} "
                f"(corrupt file, or weights of another cfg?): {_cv_msg(e)}"
            ) from e
        if net.empty():
            raise DetectorError(f"OpenCV loaded an empty net from darknet cfg {cfg} and weights {weights}")
        self.net = _cv_net_cpu(net)
        self.out_names = list(net.getUnconnectedOutLayersNames())
        self.name = f"darknet:{cfg_p.stem}"
        self.conf, self.nms = float(conf), float(nms)
        self.input_size = self.input_wh[0] if self.input_wh[0] == self.input_wh[1] else None
        self.files = (str(cfg_p), str(weights_p))

    def __repr__(self) -> str:
        return f"DarknetDetector({self.name!r}, input={self.input_wh}, conf={self.conf}, nms={self.nms})"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        img = _as_bgr(frame, self.name)
        h, w = img.shape[:2]
        blob = cv2.dnn.blobFromImage(img, 1 / 255.0, self.input_wh, swapRB=True, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.out_names)
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs], axis=0)
        if rows.shape[1] < 6:
            raise DetectorError(f"{self.name}: unexpected YOLO output width {rows.shape[1]} (< 6) from {self.files[0]}")
        scores = rows[:, 5]  # OpenCV's region layer: objectness * P(class 0)
        keep = scores >= self.conf
        if not keep.any():
            return _empty()
        r = rows[keep]
        cx, cy, bw, bh = r[:, 0] * w, r[:, 1] * h, r[:, 2] * w, r[:, 3] * h
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        return _finish(xyxy, scores[keep], self.conf, self.nms, w, h)


def _cv_msg(e: Exception) -> str:
    """The useful line of an OpenCV error."""
    text = " ".join(str(e).split())
    return text[-300:]


# -------------------------------------------------------------------------------------------- onnx


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _pb_fields(buf: memoryview):
    """Yield ``(field_number, value)`` of one protobuf message (ints for varints, memoryviews for bytes)."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _onnx_input_shape(path: Path) -> list[int] | None:
    """The first graph input's shape (0 for a symbolic dim) read straight from the ONNX protobuf, or None.

    ModelProto.graph = 7; GraphProto.initializer = 5, .input = 11; ValueInfoProto.name = 1, .type = 2;
    TypeProto.tensor_type = 1; Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1.
    """
    try:
        buf = memoryview(path.read_bytes())
        graph = next((v for f, v in _pb_fields(buf) if f == 7 and isinstance(v, memoryview)), None)
        if graph is None:
            return None
        inputs, initializers = [], set()
        for f, v in _pb_fields(graph):
            if f == 11:
                inputs.append(v)
            elif f == 5:
                initializers.update(bytes(x) for g, x in _pb_fields(v) if g == 8)
        for vi in inputs:
            name, shape = b"", None
            for f, v in _pb_fields(vi):
                if f == 1:
                    name = bytes(v)
                elif f == 2:
                    for g, tensor in _pb_fields(v):
                        if g != 1:
                            continue
                        for k, shp in _pb_fields(tensor):
                            if k == 2:
                                shape = []
                                for d, dim in _pb_fields(shp):
                                    if d == 1:
                                        shape.append(next((int(x) for q, x in _pb_fields(dim) if q == 1), 0))
            if name not in initializers and shape is not None:
                return shape
    except (ValueError, IndexError, OSError, TypeError):
        return None
    return None


def _anchor_count(size: int, strides: tuple[int, ...]) -> int:
    return sum(math.ceil(size / s) ** 2 for s in strides)


class OnnxDetector:
    """An ONNX detector through OpenCV DNN: NanoDet or Ultralytics/YOLOv5-v8 layout (``onnx:FILE``)."""

    def __init__(self, path: str, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None):
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
        shape = _onnx_input_shape(p) or []
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


# -------------------------------------------------------------------------------------- ultralytics


def _ultralytics_env_defaults() -> None:
    """Offline-friendly defaults for Ultralytics, set only where the user has not set them."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")
    if "YOLO_CONFIG_DIR" not in os.environ:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        for d in (base, Path(tempfile.gettempdir()) / "cmft-ultralytics"):
            try:
                d.mkdir(parents=True, exist_ok=True)
                if os.access(d, os.W_OK):
                    os.environ["YOLO_CONFIG_DIR"] = str(d)
                    break
            except OSError:
                continue


class UltralyticsDetector:
    """An Ultralytics YOLO model (``yolo:WEIGHTS_OR_NAME``)."""

    def __init__(
        self, weights: str, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None, device: str = "cpu"
    ):
        p = Path(weights).expanduser()
        is_yaml = p.suffix.lower() in (".yaml", ".yml")
        bare = p.name == weights and not p.exists()
        if not p.exists() and not bare:
            raise DetectorError(f"yolo weights file not found: {weights}")
        if p.exists() and not p.is_file():
            raise DetectorError(f"yolo weights path is not a file: {weights}")
        _ultralytics_env_defaults()
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(p) if p.exists() else weights)
        except (ConnectionError, FileNotFoundError) as e:
            what = "model yaml" if is_yaml else "weights"
            raise DetectorError(
                f"yolo {what} {weights} not found locally and could not be downloaded "
                f"(offline, or not an Ultralytics asset name?): {e}"
            ) from e
        except Exception as e:  # noqa: BLE001 - Ultralytics raises many kinds for a bad file
            raise DetectorError(f"Ultralytics could not load yolo weights {weights}: {type(e).__name__}: {e}") from e
        names = getattr(self.model, "names", None) or {}
        items = names.items() if isinstance(names, dict) else enumerate(names)
        self.person = next((int(k) for k, v in items if str(v).strip().lower() == "person"), 0)
        self.name = f"yolo:{Path(weights).name}"
        self.conf, self.nms = float(conf), float(nms)
        self.input_size = int(input_size or 640)
        self.device = device

    def __repr__(self) -> str:
        return f"UltralyticsDetector({self.name!r}, person={self.person}, imgsz={self.input_size}, device={self.device!r})"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        img = _as_bgr(frame, self.name)  # Ultralytics reads numpy frames as BGR
        h, w = img.shape[:2]
        results = self.model.predict(
            img, conf=self.conf, iou=self.nms, classes=[self.person], verbose=False,
            imgsz=self.input_size, device=self.device,
        )
        if not results or results[0].boxes is None or len(results[0].boxes) == 0:
            return _empty()
        b = results[0].boxes
        xyxy = b.xyxy.detach().cpu().numpy().astype(np.float32)
        scores = b.conf.detach().cpu().numpy().astype(np.float32)
        cls = b.cls.detach().cpu().numpy()
        keep = cls.round() == self.person
        # Ultralytics already applied conf and NMS; _finish clips, re-checks conf and sorts.
        return _finish(xyxy[keep], scores[keep], self.conf, self.nms, w, h)


# --------------------------------------------------------------------------------------------- hog


class HogDetector:
    """OpenCV's HOG people detector (``hog``); score = sigmoid(SVM margin)."""

    def __init__(self, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None):
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
