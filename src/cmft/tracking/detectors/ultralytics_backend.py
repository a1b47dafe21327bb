"""The ``yolo:WEIGHTS_OR_NAME`` backend: ``UltralyticsDetector`` and the offline-friendly Ultralytics environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .base import DetectorError, _as_bgr, _empty, _finish


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
    ) -> None:
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
        except Exception as e:
            raise DetectorError(f"Ultralytics could not load yolo weights {weights}: {type(e).__name__}: {e}") from e
        self.name = f"yolo:{Path(weights).name}"
        self.conf, self.nms = float(conf), float(nms)
        self.input_size = int(input_size or 640)
        self.device = device
        try:
            if not bare and not is_yaml and p.suffix.lower() != ".pt":
                # other formats (ONNX, TorchScript, ...) load on first use: load now, so that a bad or unsupported
                # file fails here with its name instead of on the first frame of a video
                self.model.predict(np.zeros((32, 32, 3), np.uint8), imgsz=self.input_size, device=device, verbose=False)
            names = getattr(self.model, "names", None) or {}
        except Exception as e:
            raise DetectorError(f"Ultralytics could not load yolo model {weights}: {type(e).__name__}: {e}") from e
        items = names.items() if isinstance(names, dict) else enumerate(names)
        self.person = next((int(k) for k, v in items if str(v).strip().lower() == "person"), 0)

    def __repr__(self) -> str:
        return (
            f"UltralyticsDetector({self.name!r}, person={self.person}, imgsz={self.input_size}, "
            f"device={self.device!r})"
        )

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
