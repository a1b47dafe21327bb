"""Person detectors on real footage (PETS09-S2L1 with its MOT15 ground truth) and their error messages.

The model files and the video live in ``../shared/data`` beside the checkout; tests that need them skip
with the reason when that folder is absent.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmft.tracking.detectors import (
    SPEC_FORMS,
    Detector,
    DetectorError,
    build_detector,
    decode_yolo_output,
    parse_detector_spec,
    yolo_output_layout,
)

from conftest import BODY, DATA, PETS, YF  # noqa: E402

XL = f"darknet:{YF / 'yolo-fastest-1.1-xl.cfg'}:{YF / 'yolo-fastest-1.1-xl.weights'}"
NANODET_FILE = DATA / "weights" / "nanodet_hpc203" / "nanodet_m.onnx"
NANODET = f"onnx:{NANODET_FILE}"
PETS_FRAMES = (0, 200, 400, 600)
PETS_GT_COUNTS = {0: 3, 200: 7, 400: 3, 600: 6}  # people in the MOT15 ground truth on those frames


def need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"real data not found: {', '.join(missing)} (it lives in ../shared/data beside the checkout)")


# ------------------------------------------------------------------------------------------- helpers


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def matched(dets: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> int:
    """Detections matched one-to-one (Hungarian on IoU) to ground-truth boxes at IoU >= thr."""
    from scipy.optimize import linear_sum_assignment

    if len(dets) == 0 or len(gt) == 0:
        return 0
    m = iou_matrix(dets[:, :4], gt)
    r, c = linear_sum_assignment(-m)
    return int((m[r, c] >= thr).sum())


def check_contract(boxes: np.ndarray, frame: np.ndarray, conf: float, nms: float) -> None:
    """The Detector output contract: float32 [N, 5], in-frame non-empty boxes, scores >= conf, sorted, NMS-ed."""
    h, w = frame.shape[:2]
    assert isinstance(boxes, np.ndarray)
    assert boxes.dtype == np.float32
    assert boxes.ndim == 2 and boxes.shape[1] == 5
    if len(boxes) == 0:
        return
    assert np.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, 4] >= conf - 1e-6).all() and (boxes[:, 4] <= 1 + 1e-6).all()
    assert (np.diff(boxes[:, 4]) <= 1e-7).all(), "not sorted by score"
    if len(boxes) > 1:
        m = iou_matrix(boxes[:, :4], boxes[:, :4])
        np.fill_diagonal(m, 0)
        assert m.max() <= nms + 1e-3, f"two boxes overlap at IoU {m.max():.3f} > nms {nms}"


@pytest.fixture(scope="module")
def pets() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frames 0, 200, 400, 600 of PETS09-S2L1 (BGR 360x480) with their GT boxes (x1, y1, x2, y2, video pixels)."""
    video, gt_file = PETS / "vtest.avi", PETS / "gt" / "gt.txt"
    need(video, gt_file)
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames: dict[int, np.ndarray] = {}
    for i in range(max(PETS_FRAMES) + 1):
        assert cap.grab(), f"{video} ended at frame {i}"
        if i in PETS_FRAMES:
            ok, frame = cap.retrieve()
            assert ok
            frames[i] = frame
    cap.release()
    gt = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    out = {}
    for i, frame in frames.items():
        g = gt[gt[:, 0] == i + 1, 2:6] * 0.625  # MOT frame = index + 1; GT is in 768x576 pixels
        g[:, 2:] += g[:, :2]
        out[i] = (frame, g.astype(np.float32))
    assert {i: len(g) for i, (_, g) in out.items()} == PETS_GT_COUNTS
    assert out[0][0].shape == (360, 480, 3)
    return out


@pytest.fixture(scope="module")
def body() -> Detector:
    need(YF / "yolo-fastest-1.1_body.cfg", YF / "yolo-fastest-1.1_body.weights")
    return build_detector(BODY, conf=0.5, nms=0.45)


@pytest.fixture(scope="module")
def nanodet() -> Detector:
    need(NANODET_FILE)
    return build_detector(NANODET, conf=0.5, nms=0.45)


@pytest.fixture(scope="module")
def ultra_env(tmp_path_factory: pytest.TempPathFactory):
    """Ultralytics offline: no downloads of fonts or requirements, settings in a temp folder."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (pip install 'cmft[track]')")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_AUTOINSTALL", "false")
        mp.setenv("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")
        mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics_cfg")))
        yield


# -------------------------------------------------------------------------------------------- specs


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, cmft.tracking.detectors as d; "
        "print(sorted(m for m in ('cv2', 'torch', 'ultralytics') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parse_detector_spec_forms() -> None:
    assert parse_detector_spec("darknet:m.cfg:m.weights") == ("darknet", ["m.cfg", "m.weights"])
    assert parse_detector_spec("darknet:/a/b/m.cfg:/a/b/m.weights") == ("darknet", ["/a/b/m.cfg", "/a/b/m.weights"])
    assert parse_detector_spec("onnx:models/nanodet_m.onnx") == ("onnx", ["models/nanodet_m.onnx"])
    assert parse_detector_spec("yolo:yolov8n.pt") == ("yolo", ["yolov8n.pt"])
    assert parse_detector_spec("yolo:yolov8n.yaml") == ("yolo", ["yolov8n.yaml"])
    assert parse_detector_spec("hog") == ("hog", [])
    assert parse_detector_spec("  HOG ") == ("hog", [])
    assert parse_detector_spec("ONNX:x.onnx") == ("onnx", ["x.onnx"])
    assert set(SPEC_FORMS) == {"darknet:CFG:WEIGHTS", "onnx:FILE", "yolo:WEIGHTS_OR_NAME", "hog"}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("darknet:only.cfg", "'darknet:CFG:WEIGHTS'"),
        ("darknet:a.cfg:a.weights:extra", "'darknet:CFG:WEIGHTS'"),
        ("darknet:a.cfg:", "an empty part"),
        ("onnx", "'onnx:FILE'"),
        ("onnx:", "an empty part"),
        ("onnx:a.onnx:b.onnx", "'onnx:FILE'"),
        ("yolo", "'yolo:WEIGHTS_OR_NAME'"),
        ("hog:extra", "'hog'"),
    ],
)
def test_spec_with_wrong_number_of_parts(spec: str, expected: str) -> None:
    with pytest.raises(DetectorError, match="form is") as e:
        parse_detector_spec(spec)
    assert expected in str(e.value) and repr(spec) in str(e.value)


@pytest.mark.parametrize("spec", ["tensorrt:x.engine", "", "   ", "x.onnx"])
def test_unknown_kind_lists_the_forms(spec: str) -> None:
    with pytest.raises(DetectorError) as e:
        build_detector(spec)
    msg = str(e.value)
    for form in SPEC_FORMS:
        assert form in msg, msg
    assert isinstance(e.value, ValueError)


def test_bad_thresholds_and_sizes() -> None:
    with pytest.raises(DetectorError, match="conf"):
        build_detector("hog", conf=1.5)
    with pytest.raises(DetectorError, match="nms"):
        build_detector("hog", nms=0.0)
    with pytest.raises(DetectorError, match="multiple of 32"):
        build_detector("darknet:a.cfg:a.weights", input_size=300)
    with pytest.raises(DetectorError, match="runs on the CPU|run on the CPU"):
        build_detector("hog", device="cuda")


# ------------------------------------------------------------------------------------ file errors


def test_missing_files_are_named(tmp_path: Path) -> None:
    need(YF / "yolo-fastest-1.1_body.cfg")
    absent = tmp_path / "absent.weights"
    with pytest.raises(DetectorError, match="not found") as e:
        build_detector(f"darknet:{YF / 'yolo-fastest-1.1_body.cfg'}:{absent}")
    assert str(absent) in str(e.value)
    with pytest.raises(DetectorError, match="not found") as e:
        build_detector(f"darknet:{tmp_path / 'absent.cfg'}:{YF / 'yolo-fastest-1.1_body.weights'}")
    assert "absent.cfg" in str(e.value)
    with pytest.raises(DetectorError, match="not found") as e:
        build_detector(f"onnx:{tmp_path / 'absent.onnx'}")
    assert str(tmp_path / "absent.onnx") in str(e.value)
    with pytest.raises(DetectorError, match="not a file"):
        build_detector(f"onnx:{tmp_path}")


def test_garbage_weights_and_onnx_are_named(tmp_path: Path) -> None:
    need(YF / "yolo-fastest-1.1_body.cfg")
    rng = np.random.default_rng(0)
    bad_w = tmp_path / "garbage.weights"
    bad_w.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DetectorError) as e:
        build_detector(f"darknet:{YF / 'yolo-fastest-1.1_body.cfg'}:{bad_w}")
    assert str(bad_w) in str(e.value) and "bytes" in str(e.value)

    bad_onnx = tmp_path / "garbage.onnx"
    bad_onnx.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DetectorError, match="could not parse ONNX") as e:
        build_detector(f"onnx:{bad_onnx}")
    assert str(bad_onnx) in str(e.value)

    bad_cfg = tmp_path / "garbage.cfg"
    bad_cfg.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(DetectorError, match="not a Darknet cfg") as e:
        build_detector(f"darknet:{bad_cfg}:{YF / 'yolo-fastest-1.1_body.weights'}")
    assert str(bad_cfg) in str(e.value)


def test_cfg_that_opencv_cannot_parse(tmp_path: Path) -> None:
    need(YF / "yolo-fastest-1.1_body.weights")
    cfg = tmp_path / "odd.cfg"
    cfg.write_text("[net]\nwidth=320\nheight=320\nchannels=3\n\n[no_such_layer]\nsize=3\n")
    with pytest.raises(DetectorError, match="OpenCV could not load") as e:
        build_detector(f"darknet:{cfg}:{YF / 'yolo-fastest-1.1_body.weights'}")
    assert str(cfg) in str(e.value)


def test_swapped_cfg_and_weights(tmp_path: Path) -> None:
    need(YF / "yolo-fastest-1.1_body.cfg", YF / "yolo-fastest-1.1_body.weights")
    with pytest.raises(DetectorError, match="swapped") as e:
        build_detector(f"darknet:{YF / 'yolo-fastest-1.1_body.weights'}:{YF / 'yolo-fastest-1.1_body.cfg'}")
    assert "yolo-fastest-1.1_body.weights" in str(e.value)


def test_weights_of_another_cfg(tmp_path: Path) -> None:
    """OpenCV loads mismatched Darknet weights silently; the size check against the cfg does not."""
    need(YF / "yolo-fastest-1.1-xl.cfg", YF / "yolo-fastest-1.1_body.weights")
    with pytest.raises(DetectorError, match="another cfg") as e:
        build_detector(f"darknet:{YF / 'yolo-fastest-1.1-xl.cfg'}:{YF / 'yolo-fastest-1.1_body.weights'}")
    assert "1177604 bytes" in str(e.value) and "3693964" in str(e.value)


def test_onnx_at_a_size_the_graph_cannot_take() -> None:
    need(NANODET_FILE)
    with pytest.raises(DetectorError, match="fixed at 416x416") as e:
        build_detector(NANODET, input_size=320)
    assert str(NANODET_FILE) in str(e.value)


# ------------------------------------------------------------------------------ real detections


def test_yolo_fastest_body_finds_the_pets_people(pets, body) -> None:
    assert isinstance(body, Detector) and body.name == "darknet:yolo-fastest-1.1_body"
    n_det = n_gt = n_match = 0
    for i, (frame, gt) in pets.items():
        boxes = body(frame)
        check_contract(boxes, frame, 0.5, 0.45)
        assert abs(len(boxes) - len(gt)) <= 1, f"frame {i}: {len(boxes)} detections, {len(gt)} in the ground truth"
        n_det, n_gt, n_match = n_det + len(boxes), n_gt + len(gt), n_match + matched(boxes, gt)
    assert n_match / n_det >= 0.85, f"precision {n_match}/{n_det} at IoU 0.5"
    assert n_match / n_gt >= 0.85, f"recall {n_match}/{n_gt} at IoU 0.5"


def test_yolo_fastest_xl_finds_the_pets_people(pets) -> None:
    need(YF / "yolo-fastest-1.1-xl.cfg", YF / "yolo-fastest-1.1-xl.weights")
    det = build_detector(XL, conf=0.5)
    n_det = n_gt = n_match = 0
    for i, (frame, gt) in pets.items():
        boxes = det(frame)
        check_contract(boxes, frame, 0.5, 0.45)
        assert abs(len(boxes) - len(gt)) <= 1, f"frame {i}: {len(boxes)} detections, {len(gt)} in the ground truth"
        n_det, n_gt, n_match = n_det + len(boxes), n_gt + len(gt), n_match + matched(boxes, gt)
    assert n_match / n_det >= 0.85 and n_match / n_gt >= 0.85, (n_match, n_det, n_gt)


def test_nanodet_finds_the_pets_people(pets, nanodet) -> None:
    assert nanodet.layout == "nanodet" and nanodet.input_size == 416  # read from the ONNX graph
    n_det = n_gt = n_match = 0
    for i, (frame, gt) in pets.items():
        boxes = nanodet(frame)
        check_contract(boxes, frame, 0.5, 0.45)
        assert matched(boxes, gt) >= len(gt) - 1, f"frame {i}: {matched(boxes, gt)} of {len(gt)} matched"
        n_det, n_gt, n_match = n_det + len(boxes), n_gt + len(gt), n_match + matched(boxes, gt)
    assert n_match / n_det >= 0.8 and n_match / n_gt >= 0.8, (n_match, n_det, n_gt)


def test_lower_conf_keeps_more(pets, body) -> None:
    frame, _ = pets[200]
    strict = build_detector(BODY, conf=0.9)(frame)
    loose = build_detector(BODY, conf=0.2)(frame)
    check_contract(strict, frame, 0.9, 0.45)
    check_contract(loose, frame, 0.2, 0.45)
    assert len(strict) < len(body(frame)) <= len(loose)


def test_grey_frames(pets, body, nanodet) -> None:
    import cv2

    frame, gt = pets[200]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    for det in (body, nanodet):
        for g in (grey, grey[:, :, None]):
            boxes = det(g)
            check_contract(boxes, g, 0.5, 0.45)
            assert matched(boxes, gt) >= 4, f"{det.name} on a grey frame: {matched(boxes, gt)} of {len(gt)}"


def test_black_frame_gives_no_boxes(body, nanodet) -> None:
    black = np.zeros((360, 480, 3), np.uint8)
    for det in (body, nanodet, build_detector("hog")):
        boxes = det(black)
        assert boxes.shape == (0, 5) and boxes.dtype == np.float32, det.name
    assert body(np.zeros((50, 70), np.uint8)).shape == (0, 5)


def test_bad_frames_are_refused(body) -> None:
    with pytest.raises(DetectorError, match="uint8"):
        body(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(DetectorError, match="shape"):
        body(np.zeros((64, 64, 2), np.uint8))
    with pytest.raises(DetectorError, match="numpy"):
        body([[0, 1], [2, 3]])


def test_hog_on_enlarged_pets_frame(pets) -> None:
    frame, gt = pets[600]
    hog = build_detector("hog", input_size=960)  # people are ~55 px tall, the HOG window 128
    boxes = hog(frame)
    check_contract(boxes, frame, 0.5, 0.45)
    assert matched(boxes, gt, 0.3) >= 3, f"{matched(boxes, gt, 0.3)} of {len(gt)} matched at IoU 0.3"
    assert hog(cv2_grey(frame)).shape[1] == 5


def cv2_grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


# -------------------------------------------------------------------------- YOLO output layouts


def test_decode_yolov8_and_yolov5_layouts() -> None:
    """Hand-made raw outputs: one person (class 0), one car (class 2), one weak person."""
    n, c = 2100, 80  # anchors at 320 px (8/16/32 strides), COCO
    v8 = np.zeros((1, 4 + c, n), np.float32)
    v8[0, :4, 10] = [100, 80, 40, 100]  # cx, cy, w, h
    v8[0, 4 + 0, 10] = 0.9
    v8[0, :4, 20] = [200, 150, 60, 30]
    v8[0, 4 + 2, 20] = 0.95
    v8[0, :4, 30] = [50, 50, 10, 20]
    v8[0, 4 + 0, 30] = 0.3
    xyxy, scores = decode_yolo_output(v8, "yolov8", conf=0.5)
    np.testing.assert_allclose(xyxy, [[80, 30, 120, 130]])
    np.testing.assert_allclose(scores, [0.9])

    rows = np.ascontiguousarray(v8[0].T)  # [N, 4 + C] rows, no objectness
    xyxy, scores = decode_yolo_output(rows[None], "yolov8-rows", conf=0.2)
    np.testing.assert_allclose(xyxy, [[80, 30, 120, 130], [45, 40, 55, 60]])
    np.testing.assert_allclose(scores, [0.9, 0.3])

    v5 = np.zeros((1, 3 * n, 5 + c), np.float32)
    v5[0, 7, :6] = [100, 80, 40, 100, 0.8, 0.9]  # objectness 0.8 x person 0.9 = 0.72
    v5[0, 8, :5] = [200, 150, 60, 30, 0.99]
    v5[0, 8, 5 + 2] = 0.99  # a car
    xyxy, scores = decode_yolo_output(v5, "yolov5", conf=0.5)
    np.testing.assert_allclose(xyxy, [[80, 30, 120, 130]])
    np.testing.assert_allclose(scores, [0.72], rtol=1e-6)

    e2e = np.zeros((1, 300, 6), np.float32)
    e2e[0, 0] = [10, 20, 50, 120, 0.9, 0]
    e2e[0, 1] = [60, 20, 90, 120, 0.95, 2]
    e2e[0, 2] = [5, 5, 9, 9, 0.1, 0]
    xyxy, scores = decode_yolo_output(e2e, "end2end", conf=0.5)
    np.testing.assert_allclose(xyxy, [[10, 20, 50, 120]])
    np.testing.assert_allclose(scores, [0.9])


@pytest.mark.parametrize(
    "shape, size, layout",
    [
        ((1, 84, 8400), 640, "yolov8"),  # YOLOv8/11 COCO export at 640
        ((1, 84, 2100), 320, "yolov8"),
        ((1, 5, 2100), 320, "yolov8"),  # one class
        ((1, 84, 8500), 640, "yolov8"),  # P6 (strides up to 64)
        ((1, 2100, 84), 320, "yolov8-rows"),
        ((1, 25200, 85), 640, "yolov5"),
        ((1, 6300, 85), 320, "yolov5"),
        ((1, 300, 6), 640, "end2end"),
        ((1, 84, 8400), 320, None),  # exported at 640, run at 320: the anchor count gives it away
        ((1, 84, 999), 640, None),
        ((84, 8400), 640, None),
    ],
)
def test_yolo_output_layout(shape: tuple[int, ...], size: int, layout: str | None) -> None:
    assert yolo_output_layout(shape, size) == layout


def test_ultralytics_onnx_export_through_opencv(ultra_env, pets, tmp_path: Path, monkeypatch) -> None:
    if importlib.util.find_spec("onnx") is None:
        pytest.skip(
            "the 'onnx' package is not installed, so Ultralytics (and torch.onnx) cannot write an ONNX file "
            "here (pip install onnx to run it); the YOLO-style layouts and decode are covered by "
            "test_yolo_output_layout and test_decode_yolov8_and_yolov5_layouts"
        )
    from ultralytics import YOLO

    monkeypatch.chdir(tmp_path)
    model = YOLO("yolov8n.yaml")
    try:
        f = model.export(format="onnx", imgsz=320, opset=12, simplify=False)
    except ImportError as e:
        pytest.skip(f"Ultralytics cannot export ONNX offline here: {e}")
    det = build_detector(f"onnx:{f}", conf=1e-5)
    assert det.layout == "yolov8" and det.input_size == 320
    frame, _ = pets[0]
    check_contract(det(frame), frame, 1e-5, 0.45)


# ------------------------------------------------------------------------------------ ultralytics


def test_yolo_from_yaml_meets_the_contract(ultra_env, pets) -> None:
    det = build_detector("yolo:yolov8n.yaml", conf=1e-5, nms=0.45, input_size=320)  # random weights
    assert det.name == "yolo:yolov8n.yaml" and det.person == 0
    frame, _ = pets[0]
    boxes = det(frame)
    check_contract(boxes, frame, 1e-5, 0.45)
    assert len(boxes) >= 1  # random weights give scores around 1e-4, above this conf
    grey = det(cv2_grey(frame))
    check_contract(grey, frame, 1e-5, 0.45)


def test_yolo_missing_file_is_named(ultra_env, tmp_path: Path) -> None:
    absent = tmp_path / "models" / "absent.pt"
    with pytest.raises(DetectorError, match="not found") as e:
        build_detector(f"yolo:{absent}")
    assert str(absent) in str(e.value)


def _offline() -> bool:
    try:
        socket.getaddrinfo("github.com", 443)
        return False
    except OSError:
        return True


def test_yolo_known_name_offline(ultra_env, tmp_path: Path, monkeypatch) -> None:
    if not _offline():
        pytest.skip("this machine is online: Ultralytics would download yolov8n.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(DetectorError, match="could not be downloaded") as e:
        build_detector("yolo:yolov8n.pt")
    assert "yolov8n.pt" in str(e.value)
    assert not (tmp_path / "yolov8n.pt").exists()
