"""Video -> tracklets building blocks: video sources, appearance, trackers, the pipeline, GSI and the HITSZ-VCM export.

Real footage (PETS09-S2L1) and the Yolo-Fastest detector come from ``../shared/data``; tests that need them
skip when it is absent. Small videos for the error cases are written here with OpenCV.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the tracking tests need the 'track' extra (OpenCV, boxmot)")
pytest.importorskip("boxmot", reason="the tracking tests need the 'track' extra (OpenCV, boxmot)")

from cmft.data import load_hitsz_vcm  # noqa: E402
from cmft.tracking.appearance import HistogramEmbedder, build_embedder, crop_boxes  # noqa: E402
from cmft.tracking.export import (  # noqa: E402
    ExportError,
    PlannedTracklet,
    SourceExport,
    export_dataset,
    export_every,
    label_with_ground_truth,
    plan_tracklets,
)
from cmft.tracking.pipeline import smooth_tracks, track_video  # noqa: E402
from cmft.tracking.trackers import build_tracker  # noqa: E402
from cmft.tracking.video import VideoError, open_video  # noqa: E402

from conftest import BODY, DATA, PETS, YF  # noqa: E402



def need_data() -> None:
    if not (PETS / "vtest.avi").is_file() or not (YF / "yolo-fastest-1.1_body.weights").is_file():
        pytest.skip(f"real footage / detector weights not found under {DATA} (they live in ../shared/data beside the checkout)")


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        out.write(f)
    out.release()
    return path


# --- video sources -------------------------------------------------------------------------------------------


def test_video_file_frames_stride_indices(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    reader = open_video(write_video(tmp_path / "v.avi", frames, fps=12.5))
    assert (reader.info.width, reader.info.height, reader.info.num_frames) == (64, 48, 12)
    assert reader.info.fps == pytest.approx(12.5)
    got = list(reader.frames(stride=5))
    assert [i for i, _ in got] == [0, 5, 10]
    assert [int(f.mean().round(-1)) for _, f in got] == [0, 50, 100]  # the right frames, not just the right count
    assert [i for i, _ in reader.frames(indices=[7, 3, 3, 11])] == [3, 7, 11]
    assert [i for i, _ in reader.frames(limit=2)] == [0, 1]
    assert open_video(tmp_path / "v.avi", fps=5).info.fps == 5


def test_frame_folder_natural_order_and_seqinfo(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    (seq / "img1").mkdir(parents=True)
    for i in (1, 2, 10):
        cv2.imwrite(str(seq / "img1" / f"{i:d}.png"), np.full((8, 8, 3), i, np.uint8))
    (seq / "seqinfo.ini").write_text("[Sequence]\nframeRate=7\n")
    reader = open_video(seq / "img1")
    assert reader.info.fps == 7 and reader.info.num_frames == 3
    assert [int(f[0, 0, 0]) for _, f in reader.frames()] == [1, 2, 10]  # 10 sorts after 2


def test_bad_sources_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such video"):
        open_video(tmp_path / "missing.mp4")
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="garbage.mp4"):
        open_video(tmp_path / "garbage.mp4")
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(VideoError, match="empty.avi"):
        open_video(tmp_path / "empty.avi")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(VideoError, match="no frame images"):
        open_video(tmp_path / "nothing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoError, match="1.jpg: not a readable image"):
        open_video(tmp_path / "broken")


# --- appearance and trackers ---------------------------------------------------------------------------------


def test_histogram_embedder_separates_colours() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, :50] = (0, 0, 200)  # red person on the left (BGR)
    frame[:, 50:] = (200, 0, 0)  # blue person on the right
    boxes = np.array([[5, 5, 45, 95], [10, 10, 40, 90], [55, 5, 95, 95]], np.float32)
    for modality in ("rgb", "ir"):
        emb = HistogramEmbedder(modality)(frame, boxes)
        assert emb.shape == (3, 6 * 8 * 4) and emb.dtype == np.float32
        assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    rgb = HistogramEmbedder("rgb")(frame, boxes)
    assert rgb[0] @ rgb[1] > 0.99 and rgb[0] @ rgb[2] < 0.1  # same colour alike, other colour apart
    assert HistogramEmbedder("rgb")(frame, np.zeros((0, 4))).shape == (0, 192)
    crops = crop_boxes(frame, np.array([[-10, -10, 5, 5], [99.5, 99.5, 120, 120]]))
    assert crops[0].shape == (5, 5, 3) and crops[1].shape[:2] == (1, 1)  # clipped, never empty
    with pytest.raises(ValueError, match="histogram' or 'cmft:CHECKPOINT"):
        build_embedder("osnet", "rgb")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_embedder("cmft:nope.pt", "rgb")


def _two_walkers(n: int = 30) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames with a red and a blue box walking towards each other and crossing."""
    out = []
    for t in range(n):
        frame = np.full((120, 200, 3), 90, np.uint8)
        a = np.array([10 + 5 * t, 30, 30 + 5 * t, 90], np.float32)
        b = np.array([170 - 5 * t, 32, 190 - 5 * t, 92], np.float32)
        frame[30:90, int(a[0]):int(a[2])] = (0, 0, 220)
        frame[32:92, int(b[0]):int(b[2])] = (220, 0, 0)
        out.append((frame, np.array([[*a, 0.9], [*b, 0.8]], np.float32)))
    return out


@pytest.mark.parametrize("name", ["strongsort", "bytetrack"])
def test_trackers_keep_identities_through_a_crossing(name: str) -> None:
    trk = build_tracker(name, cmc=None, fps=10, max_cos_dist=0.3)
    emb = HistogramEmbedder("rgb")
    red_ids, blue_ids = set(), set()
    for frame, dets in _two_walkers():
        out = trk.update(frame, dets, emb(frame, dets[:, :4]) if trk.needs_embeddings else None)
        assert out.shape[1] == 6
        red_x, blue_x = dets[0, 0], dets[1, 0]
        if abs(red_x - blue_x) < 25:  # overlapping: which is which is not decidable from the box
            continue
        for tid, x1, *_ in out:
            (red_ids if abs(x1 - red_x) < abs(x1 - blue_x) else blue_ids).add(int(tid))
    assert len(red_ids) == 1 and len(blue_ids) == 1 and red_ids != blue_ids
    assert trk.update(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 5)), np.zeros((0, 192))).shape == (0, 6)


def test_tracker_errors() -> None:
    with pytest.raises(ValueError, match="strongsort, bytetrack"):
        build_tracker("sort")
    with pytest.raises(ValueError, match="ecc, orb"):
        build_tracker("strongsort", cmc="magic")
    trk = build_tracker("strongsort", cmc="ecc")
    frame, dets = _two_walkers(1)[0]
    with pytest.raises(ValueError, match="needs appearance embeddings"):
        trk.update(frame, dets, None)
    assert trk.update(frame, dets, HistogramEmbedder()(frame, dets[:, :4])).shape[1] == 6  # ECC runs


def test_gsi_fills_gaps_and_smooths() -> None:
    f = np.arange(0, 20, dtype=np.float32)
    keep = (f < 8) | (f > 11)  # a 4-frame gap
    rng = np.random.default_rng(0)
    x = 10 + 2 * f + rng.normal(0, 1.0, len(f))
    rows = np.column_stack([f, np.ones_like(f), x, np.full_like(f, 5), x + 20, np.full_like(f, 60), np.full_like(f, 0.9)])[keep]
    out = smooth_tracks(rows, interval=20, tau=10)
    assert out.shape == (20, 7) and out[:, 0].tolist() == list(range(20))
    truth = 10 + 2 * out[:, 0]
    assert np.abs(out[:, 2] - truth).mean() < np.abs(rows[:, 2] - (10 + 2 * rows[:, 0])).mean()  # smoother than input
    assert smooth_tracks(np.zeros((0, 7), np.float32)).shape == (0, 7)


# --- export --------------------------------------------------------------------------------------------------


def test_plan_tracklets_grid_balanced_cuts_and_min_len() -> None:
    assert export_every(25, 5) == 5 and export_every(10, 5) == 2 and export_every(3, 5) == 1
    rows = [[f, 7, 0, 0, 10, 20, 1] for f in range(0, 300)]  # 300 frames -> 60 on the every-5 grid
    rows += [[f, 8, 0, 0, 10, 20, 1] for f in range(3, 53)]  # 50 frames -> 10 on the grid: too short
    plans = plan_tracklets(np.array(rows, np.float32), every=5, max_len=24, min_len=12)
    assert [len(p.frames) for p in plans] == [20, 20, 20]  # 60 cut evenly, not 24 + 24 + 12
    assert all(f % 5 == 0 for p in plans for f in p.frames) and {p.track_id for p in plans} == {7}
    assert plans[0].frames[:3] == [0, 5, 10] and plans[1].frames[0] == 100
    with pytest.raises(ValueError, match="min_len"):
        plan_tracklets(np.array(rows, np.float32), every=5, max_len=10, min_len=12)


def _fake_source(tmp_path: Path, name: str, camera: int, modality: str, track_ids: list[int], n: int = 14) -> SourceExport:
    frames = [np.full((60, 80, 3), 40 + i, np.uint8) for i in range(n)]
    reader = open_video(write_video(tmp_path / f"{name}.avi", frames))
    box = np.tile(np.array([[10, 5, 30, 55]], np.float64), (n, 1))
    plans = [PlannedTracklet(tid, list(range(n)), box.copy()) for tid in track_ids]
    return SourceExport(reader, camera, modality, plans)


def test_export_writes_hitsz_vcm_and_appends_without_collisions(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    s = export_dataset(root, [_fake_source(tmp_path, "a", 1, "rgb", [3, 5]), _fake_source(tmp_path, "b", 2, "ir", [3])])
    assert s.tracklets == 3 and s.pids == [1, 2, 3]  # track 3 of camera 1 and track 3 of camera 2 are different people
    s2 = export_dataset(root, [_fake_source(tmp_path, "c", 1, "ir", [1])])
    assert s2.pids == [4]
    ds = load_hitsz_vcm(root, splits=("test",))
    assert sorted((t.pid, t.camid, t.modality) for t in ds.test_rgb) == [(1, 1, "rgb"), (2, 1, "rgb")]
    assert sorted((t.pid, t.camid, t.modality) for t in ds.test_ir) == [(3, 2, "ir"), (4, 1, "ir")]
    assert all(len(t.paths) == 14 and all(Path(p).is_file() for p in t.paths) for t in ds.test_rgb + ds.test_ir)
    crop = cv2.imread(ds.test_rgb[0].paths[0])
    assert crop.shape[:2] == (50, 20)  # the box, cut from the frame
    manifest = json.loads((root / "manifest.json").read_text())
    assert len(manifest["runs"]) == 2 and len(manifest["tracklets"]) == 4
    rec = manifest["tracklets"][0]
    assert rec["source"].endswith("a.avi") and rec["frames"] == list(range(14)) and rec["boxes"][0] == [10, 5, 30, 55]
    assert all((root / f).is_file() for r in manifest["tracklets"] for f in r["files"])
    assert not list(root.glob(".staging-*"))
    # train split: appended to the train files, queries untouched
    export_dataset(root, [_fake_source(tmp_path, "d", 3, "rgb", [1]), _fake_source(tmp_path, "e", 3, "ir", [2])], split="train")
    full = load_hitsz_vcm(root)
    assert len(full.train) == 2 and len(full.test_ir) == 2


def test_export_failures_leave_the_dataset_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(ExportError, match="no tracklet"):
        export_dataset(root, [_fake_source(tmp_path, "a", 1, "rgb", [])])
    assert not root.exists()
    export_dataset(root, [_fake_source(tmp_path, "a", 1, "rgb", [1])])
    before = {p: p.read_bytes() for p in (root / "info").iterdir()}
    bad = _fake_source(tmp_path, "b", 1, "rgb", [2])
    bad.tracklets[0].frames[-1] = 500  # beyond the video's end: cannot be cropped
    with pytest.raises(ExportError, match="could not be decoded"):
        export_dataset(root, [bad])
    assert {p: p.read_bytes() for p in (root / "info").iterdir()} == before
    assert not (root / "0002").exists() and not list(root.glob(".staging-*"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a HITSZ-VCM dataset"):
        export_dataset(tmp_path / "other", [_fake_source(tmp_path, "c", 1, "rgb", [1])])
    with pytest.raises(ExportError, match="split"):
        export_dataset(root, [_fake_source(tmp_path, "c", 1, "rgb", [1])], split="val")


def test_ground_truth_labels_and_collisions(tmp_path: Path) -> None:
    box = np.tile(np.array([[10, 5, 30, 55]], np.float64), (14, 1))
    plans = [PlannedTracklet(1, list(range(14)), box.copy()), PlannedTracklet(2, list(range(14)), box + 200)]
    gt = np.array([[f, 42, 11, 5, 31, 56, 1] for f in range(14)], np.float64)
    labelled = label_with_ground_truth(plans, gt)
    assert [(t.track_id, t.pid, t.label) for t in labelled] == [(1, 42, "ground-truth")]  # the stray track matches no one
    root = tmp_path / "ds"
    export_dataset(root, [_fake_source(tmp_path, "a", 1, "rgb", [1, 2, 3])])  # tracker ids 1..3
    src = _fake_source(tmp_path, "b", 2, "ir", [9])
    src.tracklets = [PlannedTracklet(9, t.frames, t.boxes, 2, "ground-truth") for t in src.tracklets]
    with pytest.raises(ExportError, match=r"ground-truth identities \[2\]"):
        export_dataset(root, [src])


# --- the pipeline on real footage ----------------------------------------------------------------------------


def test_pipeline_on_pets_first_frames() -> None:
    need_data()
    from cmft.tracking.detectors import build_detector
    from cmft.tracking.mot_eval import detection_scores, read_mot

    reader = open_video(PETS / "vtest.avi")
    assert (reader.info.width, reader.info.height, reader.info.fps) == (480, 360, 10)
    calls: list[tuple[int, int]] = []
    run = track_video(reader, build_detector(BODY), build_tracker("strongsort", cmc=None, max_cos_dist=0.3),
                      HistogramEmbedder("rgb"), stride=2, limit=60, progress=lambda d, t: calls.append((d, t)))
    assert run.frames.tolist() == list(range(0, 120, 2)) and calls[-1] == (60, 60)
    assert run.detections.shape[1] == 6 and run.tracks.shape[1] == 7
    assert set(run.stage_ms()) == {"decode", "detect", "embed", "track"} and run.fps > 0
    gt = read_mot(PETS / "gt" / "gt.txt", scale=0.625)
    dets = run.detections.astype(np.float64)
    dets[:, 0] += 1
    d = detection_scores(gt, dets, frames=(run.frames + 1).tolist())
    assert d["precision"] > 0.75 and d["recall"] > 0.6  # these 60 frames: 0.79 / 0.69 (whole video: 0.85 / 0.81)
    # about as many simultaneous tracks as people in view (3 to 8 in these frames), not one per detection
    per_frame = [len(run.tracks[run.tracks[:, 0] == f]) for f in run.frames[10:]]
    assert 2 <= np.median(per_frame) <= 8 and len(np.unique(run.tracks[:, 1])) <= 20
