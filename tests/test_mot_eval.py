"""MOTChallenge I/O, detection P/R/F1 and TrackEval-backed MOTA / IDF1 / HOTA: hand-computed cases,
agreement with TrackEval's own MotChallenge2DBox loader, and the real MOT15 ground truth in ../shared."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cmft.tracking.mot_eval import (
    MotFormatError,
    box_iou,
    build_trackeval_data,
    detection_scores,
    mot_metrics,
    read_mot,
    write_mot,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PETS = DATA / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt"
TUD = DATA / "mot15" / "TUD-Campus" / "gt" / "gt.txt"

# mot_metrics needs TrackEval and detection_scores SciPy (which TrackEval brings): the 'track' extra
needs_track_extra = pytest.mark.skipif(
    importlib.util.find_spec("trackeval") is None or importlib.util.find_spec("scipy") is None,
    reason="TrackEval / SciPy not installed (pip install 'cmft[track]')",
)


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real MOT15 ground truth not found at {path} (it lives in ../shared/data beside the checkout)")
    return path


def box(frame: int, tid: int, x: float, y: float = 0.0, w: float = 10.0, h: float = 20.0, conf: float = 1.0):
    return [frame, tid, x, y, x + w, y + h, conf]


def two_walkers(num_frames: int = 10) -> np.ndarray:
    """Two people far apart (never overlapping), ids 1 and 2, frames 1..num_frames."""
    rows = []
    for f in range(1, num_frames + 1):
        rows.append(box(f, 1, 10.0 + 2 * f, 10.0))
        rows.append(box(f, 2, 200.0 - 2 * f, 50.0))
    return np.array(rows, dtype=float)


# ---------------------------------------------------------------- box_iou


def test_box_iou_hand_values_and_shapes():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 10]], dtype=float)  # second box has zero area
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.5])
    np.testing.assert_array_equal(iou[1], 0.0)
    assert box_iou(np.empty((0, 4)), b).shape == (0, 4)
    assert box_iou(a, np.empty((0, 4))).shape == (2, 0)
    with pytest.raises(ValueError, match=r"\[N,4\]"):
        box_iou(np.zeros((2, 5)), b)


@needs_track_extra
def test_box_iou_matches_trackeval():
    from trackeval.datasets._base_dataset import _BaseDataset

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(60, 2))
    wh = rng.uniform(0, 30, size=(60, 2))
    wh[::7] = 0.0  # degenerate boxes
    boxes = np.hstack([xy, xy + wh])
    ours = box_iou(boxes[:25], boxes[25:])
    theirs = _BaseDataset._calculate_box_ious(boxes[:25], boxes[25:], box_format="x0y0x1y1")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert (ours > 0).any() and (ours == 0).any()


# ---------------------------------------------------------------- MOT metrics, hand-computed


@needs_track_extra
def test_perfect_tracks_score_one_with_renumbered_ids():
    gt = two_walkers(12)
    tracks = gt.copy()
    tracks[:, 1] = np.where(gt[:, 1] == 1, 907, 33)  # same trajectories, unrelated id numbers
    m = mot_metrics(gt, tracks)
    for key in ("mota", "idf1", "hota", "deta", "assa", "loca", "motp", "idp", "idr"):
        assert m[key] == pytest.approx(1.0, abs=1e-12), key
    assert (m["id_switches"], m["fp"], m["fn"], m["tp"]) == (0, 0, 0, 24)
    assert (m["num_gt_ids"], m["num_tracker_ids"], m["num_frames"]) == (2, 2, 12)
    assert m["mostly_tracked"] == 2 and m["mostly_lost"] == 0
    assert all(type(v) in (int, float) for v in m.values())
    d = detection_scores(gt, tracks)
    assert (d["precision"], d["recall"], d["f1"]) == (1.0, 1.0, 1.0)
    assert (d["tp"], d["fp"], d["fn"], d["num_frames"]) == (24, 0, 0, 12)


@needs_track_extra
def test_mota_misses_and_false_positives_hand_computed():
    gt = two_walkers(10)  # 20 GT boxes
    missed = (gt[:, 1] == 2) & np.isin(gt[:, 0], [3, 4, 5])  # object 2 lost in 3 frames
    fps = np.array([box(7, 50, 400.0, 300.0), box(8, 51, 400.0, 300.0)], dtype=float)
    tracks = np.vstack([gt[~missed], fps])
    m = mot_metrics(gt, tracks)
    fn, fp, idsw = 3, 2, 0
    assert (m["fn"], m["fp"], m["id_switches"], m["tp"]) == (fn, fp, idsw, 17)
    assert m["mota"] == pytest.approx(1 - (fn + fp + idsw) / 20, abs=1e-12)  # 0.75
    assert m["fragmentations"] == 1  # object 2 is picked up again after the gap
    # IDF1 = 2 IDTP / (num_gt_dets + num_tracker_dets) = 2*17 / (20 + 19)
    assert m["idf1"] == pytest.approx(34 / 39, abs=1e-12)
    d = detection_scores(gt, tracks)
    assert (d["tp"], d["fp"], d["fn"]) == (17, 2, 3)
    assert d["precision"] == pytest.approx(17 / 19) and d["recall"] == pytest.approx(17 / 20)
    assert d["f1"] == pytest.approx(2 * 17 / (2 * 17 + 2 + 3))


@needs_track_extra
def test_one_identity_switch_halfway_hand_computed():
    gt = two_walkers(10)
    tracks = gt.copy()
    # object 1 is followed by track 5 in frames 1-5, then by a new track 6; object 2 by track 7 throughout
    tracks[:, 1] = np.where(gt[:, 1] == 2, 7, np.where(gt[:, 0] <= 5, 5, 6))
    m = mot_metrics(gt, tracks)
    assert m["id_switches"] == 1
    assert m["mota"] == pytest.approx(1 - 1 / 20, abs=1e-12)
    idtp = 10 + 5  # object 2 fully; object 1 keeps the better of its two tracks (5 frames)
    assert m["idtp"] == idtp
    assert m["idf1"] == pytest.approx(2 * idtp / (20 + 20), abs=1e-12)  # 0.75
    # HOTA (all IoU = 1): DetA = 1; AssA = mean over TPs of |TPA| / (|gt id| + |tr id| - |TPA|)
    #   object 1: 10 TPs worth 5 / (10 + 5 - 5) = 0.5; object 2: 10 TPs worth 10 / (10 + 10 - 10) = 1
    assert m["deta"] == pytest.approx(1.0, abs=1e-12)
    assert m["assa"] == pytest.approx(0.75, abs=1e-12)
    assert m["hota"] == pytest.approx(np.sqrt(0.75), abs=1e-12)


@needs_track_extra
def test_swapping_ids_halfway_lowers_assa_not_deta():
    gt = two_walkers(10)
    swapped = gt.copy()
    late = gt[:, 0] > 5
    swapped[late, 1] = 3 - gt[late, 1]  # ids 1 <-> 2 from frame 6 on
    perfect, m = mot_metrics(gt, gt), mot_metrics(gt, swapped)
    assert m["deta"] == perfect["deta"] == pytest.approx(1.0)
    assert m["assa"] < perfect["assa"]
    # each (gt, track) pair shares 5 of 10 + 10 frames: 5 / (10 + 10 - 5) = 1/3 for every TP
    assert m["assa"] == pytest.approx(1 / 3, abs=1e-12)
    assert m["hota"] == pytest.approx(np.sqrt(1 / 3), abs=1e-12)
    assert m["id_switches"] == 2 and m["mota"] == pytest.approx(1 - 2 / 20)
    assert m["idf1"] == pytest.approx(2 * 10 / 40)  # best one-to-one id map keeps half of each
    assert detection_scores(gt, swapped)["f1"] == 1.0  # detection alone cannot see the swap


@needs_track_extra
def test_localisation_error_hota_between_zero_and_one():
    gt = two_walkers(8)
    shifted = gt.copy()
    shifted[:, [2, 4]] += 2.0  # 10x20 boxes moved 2 px: IoU = 8*20 / (2*200 - 160) = 2/3
    m = mot_metrics(gt, shifted)
    assert 0.0 < m["hota"] < 1.0
    # TrackEval's alphas are 0.05, 0.10, ..., 0.95: matches exist for the 13 alphas <= 2/3, none above
    assert m["deta"] == pytest.approx(13 / 19, abs=1e-12)
    assert m["assa"] == pytest.approx(13 / 19, abs=1e-12)
    assert m["hota"] == pytest.approx(13 / 19, abs=1e-12)
    assert m["motp"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["mota"] == 1.0 and m["idf1"] == 1.0  # IoU 2/3 passes the 0.5 threshold


@needs_track_extra
def test_empty_tracker_scores_zero():
    gt = two_walkers(6)
    m = mot_metrics(gt, np.empty((0, 7)))
    assert m["hota"] == m["deta"] == m["assa"] == m["idf1"] == m["mota"] == 0.0
    assert (m["fn"], m["fp"], m["num_tracker_ids"], m["mostly_lost"]) == (12, 0, 0, 2)
    d = detection_scores(gt, np.empty((0, 6)))
    assert (d["tp"], d["fn"], d["precision"], d["recall"], d["f1"]) == (0, 12, 0.0, 0.0, 0.0)


@needs_track_extra
def test_frames_select_timesteps_and_empty_frames_count():
    gt = two_walkers(20)
    every5 = gt[np.isin(gt[:, 0], np.arange(1, 21, 5))]  # a tracker run on frames 1, 6, 11, 16
    all_frames = mot_metrics(gt, every5)
    assert all_frames["num_frames"] == 20 and all_frames["fn"] == 40 - 8
    sampled = mot_metrics(gt, every5, frames=range(1, 21, 5))
    assert sampled["num_frames"] == 4
    assert sampled["mota"] == sampled["idf1"] == pytest.approx(1.0) and sampled["fn"] == 0
    # frames with neither GT nor tracks are still timesteps
    padded = build_trackeval_data(gt, gt, frames=range(1, 31))
    assert padded["num_timesteps"] == 30 and len(padded["similarity_scores"]) == 30
    assert padded["similarity_scores"][25].shape == (0, 0)
    # default: 1..max frame, even if the data starts later
    late = gt[gt[:, 0] >= 11]
    assert build_trackeval_data(late, late)["num_timesteps"] == 20


def test_trackeval_data_keys_and_relabelled_ids():
    gt = two_walkers(4)
    gt[:, 1] = np.where(gt[:, 1] == 1, 17, 5)  # ids as in a file: neither contiguous nor from 0
    tracks = gt[::-1].copy()
    tracks[:, 1] = np.where(tracks[:, 1] == 17, 1003, 1001)
    data = build_trackeval_data(gt, tracks)
    for key in ("num_timesteps", "num_gt_ids", "num_tracker_ids", "num_gt_dets", "num_tracker_dets",
                "gt_ids", "tracker_ids", "similarity_scores"):
        assert key in data
    assert (data["num_timesteps"], data["num_gt_ids"], data["num_tracker_ids"]) == (4, 2, 2)
    assert (data["num_gt_dets"], data["num_tracker_dets"]) == (8, 8)
    for t in range(4):
        # relabelled in sorted order (5 -> 0, 17 -> 1; 1001 -> 0, 1003 -> 1), rows in file order per frame
        assert data["gt_ids"][t].tolist() == [1, 0] and data["gt_ids"][t].dtype.kind == "i"
        assert data["tracker_ids"][t].tolist() == [0, 1]
        np.testing.assert_array_equal(data["similarity_scores"][t], [[0.0, 1.0], [1.0, 0.0]])


@needs_track_extra
def test_duplicate_id_in_a_frame_is_refused():
    gt = two_walkers(3)
    tracks = np.vstack([gt, box(2, 1, 300.0)])
    with pytest.raises(ValueError, match="id 1 occurs more than once in frame 2"):
        mot_metrics(gt, tracks)
    with pytest.raises(ValueError, match=r"\[M, 7\]"):
        mot_metrics(gt, gt[:, :6])


# ---------------------------------------------------------------- detection P/R/F1


@needs_track_extra
def test_detection_iou_threshold_just_below_and_above():
    gt = np.array([box(1, 1, 0.0, 0.0, 10.0, 10.0), box(2, 1, 0.0, 0.0, 10.0, 10.0)], dtype=float)
    # frame 1: a box of half the GT's height, IoU = 50/100 = 0.5 exactly -> match
    # frame 2: 4.99 of 10 high, IoU = 0.499 -> no match (a false positive and a miss)
    # frame 3: a detection where there is no GT -> false positive
    dets = np.array([[1, 0, 0, 10, 5, 0.9], [2, 0, 0, 10, 4.99, 0.8], [3, 50, 50, 60, 60, 0.7]], dtype=float)
    assert box_iou(gt[:1, 2:6], dets[:1, 1:5])[0, 0] == 0.5
    d = detection_scores(gt, dets)
    assert (d["tp"], d["fp"], d["fn"], d["num_frames"]) == (1, 2, 1, 3)
    assert d["precision"] == pytest.approx(1 / 3) and d["recall"] == pytest.approx(1 / 2)
    assert d["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # a looser threshold accepts frame 2
    assert detection_scores(gt, dets, iou=0.45)["tp"] == 2
    # the 7-column track form gives the same counts as the 6-column detection form
    as_tracks = np.column_stack([dets[:, 0], np.arange(3), dets[:, 1:6]])
    assert detection_scores(gt, as_tracks) == d
    # only the given frames are evaluated
    only1 = detection_scores(gt, dets, frames=[1])
    assert (only1["tp"], only1["fp"], only1["fn"], only1["num_frames"]) == (1, 0, 0, 1)


@needs_track_extra
def test_detection_matching_maximises_the_number_of_matches():
    # Pairing by largest total IoU would pick (g1,d1)=0.47 + (g2,d2)=0.69 and lose g1 (0.47 < 0.5);
    # the crossed pairs (g1,d2)=0.53, (g2,d1)=0.62 are both valid matches.
    g = [[2, 0, 19, 1], [5, 0, 18, 1]]
    d = [[5, 0, 13, 1], [7, 0, 16, 1]]
    gt = np.array([[1, i, *b, 1] for i, b in enumerate(g)], dtype=float)
    dets = np.array([[1, *b, 1] for b in d], dtype=float)
    iou = box_iou(gt[:, 2:6], dets[:, 1:5])
    assert iou[0, 0] < 0.5 <= min(iou[0, 1], iou[1, 0]) and iou[0, 0] + iou[1, 1] > iou[0, 1] + iou[1, 0]
    assert detection_scores(gt, dets)["tp"] == 2


@needs_track_extra
def test_detection_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[K, 6\]"):
        detection_scores(two_walkers(2), np.zeros((3, 5)))


# ---------------------------------------------------------------- agreement with TrackEval's own loader


def _trackeval_reference(tmp_path: Path, gt_file: Path, tracks: np.ndarray, benchmark: str, num_frames: int):
    """Scores from TrackEval's MotChallenge2DBox reading the files itself (its loader, preprocessing and ids)."""
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.metrics import CLEAR, HOTA, Identity

    seq = "seq"
    (tmp_path / "gt" / seq / "gt").mkdir(parents=True)
    (tmp_path / "gt" / seq / "gt" / "gt.txt").write_text(gt_file.read_text())
    write_mot(tmp_path / "trackers" / "ours" / "data" / f"{seq}.txt", tracks)
    dataset = MotChallenge2DBox({
        "GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
        "BENCHMARK": benchmark, "SKIP_SPLIT_FOL": True, "SEQ_INFO": {seq: num_frames},
        "TRACKERS_TO_EVAL": ["ours"], "PRINT_CONFIG": False,
    })
    raw = dataset.get_raw_seq_data("ours", seq)
    data = dataset.get_preprocessed_seq_data(raw, "pedestrian")
    out = {}
    for metric in (HOTA(), CLEAR({"PRINT_CONFIG": False}), Identity({"PRINT_CONFIG": False})):
        out.update(metric.eval_sequence(data))
    return out


def _assert_same_as_trackeval(ours: dict, ref: dict) -> None:
    pairs = {"hota": "HOTA", "deta": "DetA", "assa": "AssA", "loca": "LocA", "mota": "MOTA", "motp": "MOTP",
             "idf1": "IDF1", "tp": "CLR_TP", "fp": "CLR_FP", "fn": "CLR_FN", "id_switches": "IDSW",
             "fragmentations": "Frag", "mostly_tracked": "MT", "mostly_lost": "ML", "idtp": "IDTP"}
    for key, field in pairs.items():
        assert ours[key] == pytest.approx(float(np.mean(ref[field])), abs=1e-9), key


def _perturbed(gt: np.ndarray, seed: int) -> np.ndarray:
    """A plausible tracker output: jittered boxes, dropped rows, an id switch, false positives."""
    rng = np.random.default_rng(seed)
    t = gt[rng.random(len(gt)) > 0.1].copy()
    t[:, 2:6] += rng.normal(0, 2.0, size=(len(t), 4))
    t[:, 4:6] = np.maximum(t[:, 4:6], t[:, 2:4] + 1)
    t[:, 1] += 100
    mid = np.median(t[:, 0])
    first = t[:, 1] == t[0, 1]
    t[first & (t[:, 0] > mid), 1] = 999  # one identity switch
    frames = rng.choice(np.unique(gt[:, 0]), size=15)
    fps = np.column_stack([frames, 5000 + np.arange(15), np.full(15, 5.0), np.full(15, 5.0),
                           np.full(15, 40.0), np.full(15, 90.0), np.ones(15)])
    t = np.vstack([t, fps])
    t[:, 6] = 1.0
    return t


@needs_track_extra
def test_mot_metrics_equal_trackeval_on_real_mot15_gt(tmp_path):
    gt_file = need(PETS)
    gt = read_mot(gt_file)  # no scaling: TrackEval reads the file as it is
    tracks = _perturbed(gt, seed=1)
    ours = mot_metrics(gt, tracks, frames=range(1, 796))
    ref = _trackeval_reference(tmp_path, gt_file, tracks, "MOT15", 795)
    _assert_same_as_trackeval(ours, ref)
    assert 0.3 < ours["hota"] < 0.95 and ours["id_switches"] >= 1 and ours["fp"] >= 15


@needs_track_extra
def test_mot_metrics_equal_trackeval_on_mot17_layout(tmp_path):
    # MOT17 layout: consider flag, class, visibility. Kept: flag 1 and class 1. Dropped: a flag-0
    # pedestrian and a car (class 3, not a distractor, so TrackEval removes no tracker box for it).
    lines = []
    for f in range(1, 31):
        lines.append(f"{f},1,{10 + f},20,30,60,1,1,0.9")
        lines.append(f"{f},2,{200 - f},40,30,60,1,1,1.0")
        lines.append(f"{f},3,400,40,30,60,0,1,0.1")
        lines.append(f"{f},4,500,100,80,40,0,3,1.0")
    gt_file = tmp_path / "gt17.txt"
    gt_file.write_text("\n".join(lines) + "\n")
    gt = read_mot(gt_file)
    assert set(gt[:, 1].tolist()) == {1, 2} and len(gt) == 60
    tracks = _perturbed(gt, seed=2)
    ours = mot_metrics(gt, tracks, frames=range(1, 31))
    ref = _trackeval_reference(tmp_path / "te", gt_file, tracks, "MOT17", 30)
    _assert_same_as_trackeval(ours, ref)


# ---------------------------------------------------------------- read_mot / write_mot


def test_read_mot_pets09_real_gt():
    path = need(PETS)
    raw = read_mot(path, gt=False)
    gt = read_mot(path, scale=0.625)
    assert raw.shape == (4650, 7) and gt.shape[1] == 7 and gt.dtype == np.float64
    assert 4000 < len(gt) < len(raw) and np.all(gt[:, 6] != 0)  # MOT15 rule: conf 0 rows dropped
    assert len(np.unique(gt[:, 1])) == 19
    assert gt[:, 0].min() == 1 and gt[:, 0].max() == 795
    assert np.all(gt[:, 4] > gt[:, 2]) and np.all(gt[:, 5] > gt[:, 3])
    # GT is in 768x576 pixels, the video 480x360: scaled by 0.625 every box lies in the frame (within 1 px)
    assert gt[:, 2].min() >= -1 and gt[:, 3].min() >= -1
    assert gt[:, 4].max() <= 481 and gt[:, 5].max() <= 361
    unscaled = read_mot(path)
    assert unscaled[:, 5].max() > 500  # without scaling they do not
    np.testing.assert_allclose(unscaled[:, 2:6] * 0.625, gt[:, 2:6])
    shifted = read_mot(path, scale=0.625, frame_offset=-1)  # MOT frame number -> 0-based video index
    assert shifted[:, 0].min() == 0 and shifted[:, 0].max() == 794


def test_read_mot_tud_campus_real_gt():
    gt = read_mot(need(TUD))
    assert len(np.unique(gt[:, 1])) == 8
    assert np.array_equal(np.unique(gt[:, 0]), np.arange(1, 72))
    assert len(gt) == 359  # every row is conf 1 with -1 world coordinates: all kept


def test_read_mot_gt_layout_rules(tmp_path):
    # MOT15 layout with fractional world coordinates in column 8: only conf decides
    mot15 = tmp_path / "mot15.txt"
    mot15.write_text("1,1,10,10,5,5,1,-4.15,-7.35,0\n1,2,30,10,5,5,0,3.0,2.5,0\n2,1,11,10,5,5,1,1.0,2.0,0\n")
    assert read_mot(mot15)[:, 1].tolist() == [1, 1]
    assert len(read_mot(mot15, gt=False)) == 3
    # MOT16+ layout: flag and class 1
    mot17 = tmp_path / "mot17.txt"
    mot17.write_text("1,1,10,10,5,5,1,1,0.8\n1,2,30,10,5,5,0,1,0.0\n1,3,50,10,5,5,1,7,1.0\n1,4,70,10,5,5,1,2,1.0\n")
    assert read_mot(mot17)[:, 1].tolist() == [1]
    assert read_mot(mot17, gt_format="mot15")[:, 1].tolist() == [1, 3, 4]
    with pytest.raises(MotFormatError, match="class column"):
        read_mot(_write(tmp_path / "seven.txt", "1,1,10,10,5,5,1\n"), gt_format="mot16")
    with pytest.raises(ValueError, match="gt_format"):
        read_mot(mot17, gt_format="mot18")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_mot_errors_name_file_and_line(tmp_path):
    missing = tmp_path / "nope" / "gt.txt"
    with pytest.raises(MotFormatError, match="no such MOTChallenge file") as err:
        read_mot(missing)
    assert str(missing) in str(err.value)
    short = _write(tmp_path / "short.txt", "1,1,10,10,5,5,1\n\n2,1,10,10,5\n")
    with pytest.raises(MotFormatError, match=r"short\.txt:3: expected at least 7 fields"):
        read_mot(short)
    text = _write(tmp_path / "text.txt", "1,1,10,10,5,5,1\n2,1,ten,10,5,5,1\n")
    with pytest.raises(MotFormatError, match=r"text\.txt:2: field 'x' is not a number: 'ten'"):
        read_mot(text)
    negative = _write(tmp_path / "neg.txt", "1,1,10,10,-5,5,1\n")
    with pytest.raises(MotFormatError, match=r"neg\.txt:1: negative box size"):
        read_mot(negative)
    nan = _write(tmp_path / "nan.txt", "1,1,nan,10,5,5,1\n")
    with pytest.raises(MotFormatError, match=r"nan\.txt:1: field 'x' is not finite"):
        read_mot(nan)
    frac = _write(tmp_path / "frac.txt", "1.5,1,10,10,5,5,1\n")
    with pytest.raises(MotFormatError, match=r"frac\.txt:1: frame and id must be whole numbers"):
        read_mot(frac)
    assert issubclass(MotFormatError, ValueError)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    n = 50
    xy = rng.uniform(-20, 600, size=(n, 2))
    rows = np.column_stack([rng.integers(1, 30, n), rng.integers(0, 1000, n), xy,
                            xy + rng.uniform(1, 200, size=(n, 2)), rng.uniform(0, 1, n)])
    path = tmp_path / "out" / "seq.txt"
    write_mot(path, rows)
    back = read_mot(path, gt=False)
    np.testing.assert_allclose(back, rows, rtol=0, atol=1e-9)
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 10 and first[-3:] == ["-1", "-1", "-1"] and "." not in first[0] + first[1]
    assert [p.name for p in path.parent.iterdir()] == ["seq.txt"]  # no temporary file left behind
    # scale and frame offset apply on reading
    again = read_mot(path, scale=2.0, frame_offset=10, gt=False)
    np.testing.assert_allclose(again[:, 2:6], rows[:, 2:6] * 2, atol=1e-9)
    np.testing.assert_array_equal(again[:, 0], rows[:, 0] + 10)
    write_mot(path, np.empty((0, 7)))
    assert path.read_text() == "" and read_mot(path, gt=False).shape == (0, 7)
    with pytest.raises(ValueError, match="x2 < x1"):
        write_mot(path, np.array([[1, 1, 10, 10, 5, 20, 1]], dtype=float))


def test_module_import_stays_light():
    code = ("import sys, cmft.tracking.mot_eval; "
            "print(sorted(m for m in ('trackeval', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
