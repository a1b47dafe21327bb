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
    a larger margin (a ``conf`` below 0.5 acts as 0.5: negative-margin windows are never kept). Boxes are
    shrunk by 15 % of the width and 5 % of the height on each side (the window's margin around the body,
    as in OpenCV's ``peopledetect`` sample).

Layout: ``base`` (the ``Detector`` contract, ``DetectorError``, shared frame and box helpers), ``spec``
(the spec prefix -> backend table, :func:`parse_detector_spec`, :func:`build_detector`) and one module a
backend: ``darknet``, ``onnx_backend`` (with ``onnx_graph``, the model's input shape), ``ultralytics_backend``
and ``hog``.

Nothing here imports OpenCV, onnx, torch or Ultralytics when the package is imported: each detector
imports what it needs when it is built. Before Ultralytics is imported the offline-friendly environment
defaults ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``, ``ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS=1``
and a writable ``YOLO_CONFIG_DIR`` are set with ``os.environ.setdefault`` (values already set win).
``YOLO_OFFLINE=1`` only stops Ultralytics' internet probe and retries; it still tries a download when
asked for a missing known model.
"""

from __future__ import annotations

from .base import Detector, DetectorError
from .darknet import DarknetDetector
from .hog import HogDetector
from .onnx_backend import OnnxDetector, decode_yolo_output, yolo_output_layout
from .spec import SPEC_FORMS, build_detector, parse_detector_spec
from .ultralytics_backend import UltralyticsDetector

__all__ = [
    "SPEC_FORMS",
    "DarknetDetector",
    "Detector",
    "DetectorError",
    "HogDetector",
    "OnnxDetector",
    "UltralyticsDetector",
    "build_detector",
    "decode_yolo_output",
    "parse_detector_spec",
    "yolo_output_layout",
]
