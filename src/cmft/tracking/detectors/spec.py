"""Detector spec strings: the table of spec prefixes -> backends, ``parse_detector_spec`` and ``build_detector``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import Detector, DetectorError
from .darknet import DarknetDetector
from .hog import HogDetector
from .onnx_backend import OnnxDetector
from .ultralytics_backend import UltralyticsDetector


@dataclass(frozen=True)
class _Backend:
    """One spec prefix: its form (the parts after the prefix are the class's positional arguments) and its class."""

    form: str
    cls: Callable[..., Detector]
    multiple_of_32: bool = False  # input_size must be a multiple of 32
    takes_device: bool = False  # else it runs on the CPU through OpenCV and accepts only device="cpu"

    @property
    def nargs(self) -> int:
        return self.form.count(":")


_BACKENDS: dict[str, _Backend] = {
    "darknet": _Backend("darknet:CFG:WEIGHTS", DarknetDetector, multiple_of_32=True),
    "onnx": _Backend("onnx:FILE", OnnxDetector, multiple_of_32=True),
    "yolo": _Backend("yolo:WEIGHTS_OR_NAME", UltralyticsDetector, takes_device=True),
    "hog": _Backend("hog", HogDetector),
}

SPEC_FORMS: tuple[str, ...] = tuple(b.form for b in _BACKENDS.values())


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
    if kind not in _BACKENDS:
        raise DetectorError(f"unknown detector kind {kind!r} in spec {spec!r}: use one of {_forms_text()}")
    n, form = _BACKENDS[kind].nargs, _BACKENDS[kind].form
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
    """Build a person detector from a spec (see the ``cmft.tracking.detectors`` docstring for the forms).

    ``conf``: minimum score kept; ``nms``: IoU threshold of non-maximum suppression; ``input_size``:
    the network's square input side (a multiple of 32 for ``darknet``/``onnx``; for ``hog`` the longer
    side the frame is resized to); ``device``: Ultralytics device for ``yolo`` (``darknet``, ``onnx``
    and ``hog`` run on the CPU and accept only ``"cpu"``).
    """
    kind, args = parse_detector_spec(spec)
    backend = _BACKENDS[kind]
    if not 0.0 <= float(conf) <= 1.0:
        raise DetectorError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 < float(nms) <= 1.0:
        raise DetectorError(f"nms IoU threshold must be in (0, 1], got {nms}")
    if input_size is not None and (int(input_size) != input_size or input_size <= 0):
        raise DetectorError(f"input_size must be a positive integer, got {input_size!r}")
    if backend.multiple_of_32 and input_size is not None and input_size % 32:
        raise DetectorError(f"input_size for '{kind}' must be a multiple of 32, got {input_size}")
    if not backend.takes_device and str(device).lower() != "cpu":
        raise DetectorError(
            f"device {device!r}: '{kind}' detectors run on the CPU through OpenCV (device='cpu'); "
            "only 'yolo:' detectors use another device"
        )
    extra = {"device": device} if backend.takes_device else {}
    return backend.cls(*args, conf=conf, nms=nms, input_size=input_size, **extra)
