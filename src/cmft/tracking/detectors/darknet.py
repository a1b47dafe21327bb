"""The ``darknet:CFG:WEIGHTS`` backend: Darknet cfg parsing, the weights-size check and ``DarknetDetector``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DetectorError, _as_bgr, _cv_msg, _cv_net_cpu, _empty, _existing_file, _finish


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
    """A Darknet YOLO through OpenCV DNN (see the package docstring, ``darknet:CFG:WEIGHTS``)."""

    def __init__(
        self, cfg: str, weights: str, conf: float = 0.5, nms: float = 0.45, input_size: int | None = None
    ) -> None:
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
