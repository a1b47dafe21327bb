"""MOTChallenge files and scores: read / write MOT txt files, detection precision / recall / F1, and
MOTA, IDF1 and HOTA computed by TrackEval's own metric classes (paper §3.1, Table 1).

Arrays in this module use one layout, the *track form*: float64 ``[M, 7]`` rows of
``frame, id, x1, y1, x2, y2, conf`` with corner boxes in pixels. Detections without identities may
also use the 6-column *detection form* ``frame, x1, y1, x2, y2, score``.

Ground-truth rows kept by :func:`read_mot` (``gt=True``) follow TrackEval's ``MotChallenge2DBox``:

* MOT15 layout (``frame,id,x,y,w,h,conf,X,Y,Z``; columns 8-10 are world coordinates or -1): keep rows
  whose conf/flag, truncated to an integer, is not 0 (TrackEval's ``zero_marked``). No class filter,
  as TrackEval applies none for ``BENCHMARK='MOT15'``.
* MOT16/17/20 layout (``frame,id,x,y,w,h,consider,class,visibility``): keep rows with a non-zero
  consider flag *and* class 1 (pedestrian). TrackEval additionally drops tracker boxes that match
  (IoU >= 0.5) a GT box of a distractor class (person on vehicle, static person, distractor,
  reflection; MOT20 also non-motorised vehicle) before scoring; that step needs the class column,
  which the track form does not carry, so it is NOT reproduced: on MOT16+ ground truth, FP counts can
  be slightly higher than the official ones. On MOT15 the scores are TrackEval's exactly.
* ``gt_format="auto"`` picks the MOT16+ rule when every row has an 8th column and all its values are
  whole numbers in 1..13 (TrackEval's class ids), otherwise the MOT15 rule. This tells MOT15 files
  apart, whose 8th column is a world x coordinate (fractional, e.g. PETS09-S2L1) or -1 (TUD-Campus).

Heavy imports (SciPy, TrackEval) happen inside the functions that need them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmft.atomic import write_text_atomic

TRACK_COLUMNS = ("frame", "id", "x1", "y1", "x2", "y2", "conf")
DETECTION_COLUMNS = ("frame", "x1", "y1", "x2", "y2", "score")
GT_FORMATS = ("auto", "mot15", "mot16")
# TrackEval's MotChallenge2DBox class ids run 1..13; 1 is pedestrian.
_PEDESTRIAN = 1
_MAX_CLASS_ID = 13
_EPS = np.finfo(float).eps


class MotFormatError(ValueError):
    """A MOTChallenge txt file is missing or malformed; the message names the file (and line) and the fault."""


def read_mot(
    path: str | os.PathLike[str],
    scale: float = 1.0,
    frame_offset: int = 0,
    *,
    gt: bool = True,
    gt_format: str = "auto",
) -> np.ndarray:
    """Read a MOTChallenge txt file into the float64 [M, 7] track form (boxes x ``scale``, frames + ``frame_offset``).

    Lines are ``frame,id,x,y,w,h,conf[,...]`` (commas, or whitespace when a line has no comma); blank
    lines are skipped and rows keep the file's order. With ``gt=True`` only the rows TrackEval scores are
    kept (rule in the module docstring; ``gt_format`` is ``"auto"``, ``"mot15"`` or ``"mot16"`` (MOT16,
    MOT17, MOT20)); with ``gt=False`` every row is kept and column 7 is the tracker's confidence.
    """
    if gt_format not in GT_FORMATS:
        raise ValueError(f"gt_format must be one of {GT_FORMATS}, got {gt_format!r}")
    if not float(scale) > 0 or not np.isfinite(scale):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if int(frame_offset) != frame_offset:
        raise ValueError(f"frame_offset must be an integer, got {frame_offset!r}")
    path = Path(path)
    if not path.is_file():
        raise MotFormatError(f"{path}: no such MOTChallenge file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MotFormatError(f"{path}: cannot read as a UTF-8 text file ({exc})") from exc

    rows: list[list[float]] = []
    num_fields: list[int] = []
    names = ("frame", "id", "x", "y", "w", "h", "conf", "class")
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        while fields and fields[-1] == "":  # tolerate a trailing comma
            fields.pop()
        where = f"{path}:{lineno}"
        if len(fields) < 7:
            raise MotFormatError(
                f"{where}: expected at least 7 fields (frame,id,x,y,w,h,conf), got {len(fields)}: {line[:80]!r}"
            )
        values: list[float] = []
        for name, field in zip(names, fields[:8]):
            try:
                value = float(field)
            except ValueError:
                raise MotFormatError(f"{where}: field {name!r} is not a number: {field!r}") from None
            if not np.isfinite(value):
                raise MotFormatError(f"{where}: field {name!r} is not finite: {field!r}")
            values.append(value)
        if not values[0].is_integer() or not values[1].is_integer():
            raise MotFormatError(f"{where}: frame and id must be whole numbers, got {fields[0]!r}, {fields[1]!r}")
        if values[4] < 0 or values[5] < 0:
            raise MotFormatError(f"{where}: negative box size w={fields[4]}, h={fields[5]}")
        num_fields.append(len(fields))
        rows.append(values if len(values) == 8 else values + [np.nan])

    table = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    if gt and len(table):
        keep = np.trunc(table[:, 6]) != 0  # TrackEval: zero_marked = conf.astype(int) != 0
        if _gt_layout(table, num_fields, gt_format, path) == "mot16":
            keep &= table[:, 7] == _PEDESTRIAN
        table = table[keep]

    out = np.empty((len(table), 7), dtype=np.float64)
    out[:, 0] = table[:, 0] + int(frame_offset)
    out[:, 1] = table[:, 1]
    out[:, 2] = table[:, 2] * scale
    out[:, 3] = table[:, 3] * scale
    out[:, 4] = (table[:, 2] + table[:, 4]) * scale
    out[:, 5] = (table[:, 3] + table[:, 5]) * scale
    out[:, 6] = table[:, 6]
    return out


def _gt_layout(table: np.ndarray, num_fields: list[int], gt_format: str, path: Path) -> str:
    """Decide whether a ground-truth table uses the MOT15 or the MOT16+ (class column) layout."""
    if gt_format == "mot15":
        return "mot15"
    has_class = min(num_fields) >= 8
    if gt_format == "mot16":
        if not has_class:
            raise MotFormatError(f"{path}: gt_format='mot16' needs a class column (8th field) on every line")
        return "mot16"
    if not has_class:
        return "mot15"
    cls = table[:, 7]
    is_class_column = bool(np.all((cls == np.round(cls)) & (cls >= 1) & (cls <= _MAX_CLASS_ID)))
    return "mot16" if is_class_column else "mot15"


def write_mot(path: str | os.PathLike[str], rows: np.ndarray) -> None:
    """Write track-form rows as a MOTChallenge results file (``frame,id,x,y,w,h,conf,-1,-1,-1``), atomically."""
    rows = _as_track_form(rows, "rows")
    if np.any(rows[:, 4] < rows[:, 2]) or np.any(rows[:, 5] < rows[:, 3]):
        bad = int(np.flatnonzero((rows[:, 4] < rows[:, 2]) | (rows[:, 5] < rows[:, 3]))[0])
        raise ValueError(f"rows[{bad}] has x2 < x1 or y2 < y1: {rows[bad].tolist()}")
    lines = []
    for frame, tid, x1, y1, x2, y2, conf in rows.tolist():
        fields = [_fmt(v) for v in (x1, y1, x2 - x1, y2 - y1, conf)]
        lines.append(f"{int(frame)},{int(tid)},{','.join(fields)},-1,-1,-1\n")
    write_text_atomic(path, "".join(lines))


def _fmt(value: float) -> str:
    """Shortest decimal text that reads back to the same float, without exponent or a trailing '.0'."""
    return np.format_float_positional(value, trim="-")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes [N,4] x [M,4] -> [N,M], vectorised; boxes of zero area get IoU 0 (as TrackEval)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a.reshape(0, 4) if a.size == 0 else a
    b = b.reshape(0, 4) if b.size == 0 else b
    if a.ndim != 2 or a.shape[1] != 4 or b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"box_iou expects [N,4] and [M,4] corner boxes, got {a.shape} and {b.shape}")
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(hi - lo, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    inter[area_a <= _EPS, :] = 0.0
    inter[:, area_b <= _EPS] = 0.0
    inter[union <= _EPS] = 0.0
    union[union <= _EPS] = 1.0
    return inter / union


def _as_track_form(rows: np.ndarray, name: str) -> np.ndarray:
    """Check and return a float64 [M, 7] track-form array (empty input -> shape (0, 7))."""
    arr = np.asarray(rows, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 7)
    if arr.ndim != 2 or arr.shape[1] != 7:
        raise ValueError(f"{name} must be [M, 7] rows of {', '.join(TRACK_COLUMNS)}; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(arr[:, :2] != np.round(arr[:, :2])):
        raise ValueError(f"{name}: frame and id columns must hold whole numbers")
    return arr


def _frames_and_boxes(rows: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split 6-column detection form or 7-column track form into (int frames [K], corner boxes [K, 4])."""
    arr = np.asarray(rows, dtype=np.float64)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, 4))
    if arr.ndim != 2 or arr.shape[1] not in (6, 7):
        raise ValueError(
            f"{name} must be [K, 6] ({', '.join(DETECTION_COLUMNS)}) or [K, 7] ({', '.join(TRACK_COLUMNS)}); "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(arr[:, 0] != np.round(arr[:, 0])):
        raise ValueError(f"{name}: the frame column must hold whole numbers")
    first = 1 if arr.shape[1] == 6 else 2
    return arr[:, 0].astype(np.int64), arr[:, first : first + 4]


def _eval_frames(frames: Sequence[int] | None) -> np.ndarray | None:
    """Sorted unique evaluated frame numbers from ``frames`` (None when not given)."""
    if frames is None:
        return None
    arr = np.asarray(list(frames), dtype=np.float64).ravel()
    if np.any(arr != np.round(arr)):
        raise ValueError("frames must be whole frame numbers")
    return np.unique(arr.astype(np.int64))


def _group(frame_idx: np.ndarray, num: int) -> list[np.ndarray]:
    """Row indices for each of ``num`` timesteps, given each row's timestep index."""
    order = np.argsort(frame_idx, kind="stable")
    bounds = np.searchsorted(frame_idx[order], np.arange(num + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(num)]


def detection_scores(
    gt: np.ndarray, dets: np.ndarray, iou: float = 0.5, frames: Sequence[int] | None = None
) -> dict[str, Any]:
    """Detection precision / recall / F1 with one-to-one per-frame matching at IoU >= ``iou`` (Table 1).

    ``gt`` and ``dets`` may each be in the 7-column track form or the 6-column detection form (ids and
    scores are ignored; filter by score before calling). In every frame the matching maximises the number
    of (GT, detection) pairs with IoU >= ``iou`` (ties broken by total IoU), via
    ``scipy.optimize.linear_sum_assignment``. Evaluated frames are ``frames`` when given (rows in other
    frames are ignored), else every frame that has a GT box or a detection; detections in frames without
    GT are false positives. A ratio whose denominator is 0 is reported as 0.0.
    """
    from scipy.optimize import linear_sum_assignment

    g_frames, g_boxes = _frames_and_boxes(gt, "gt")
    d_frames, d_boxes = _frames_and_boxes(dets, "dets")
    chosen = _eval_frames(frames)
    if chosen is None:
        chosen = np.union1d(g_frames, d_frames)
    else:
        g_keep, d_keep = np.isin(g_frames, chosen), np.isin(d_frames, chosen)
        g_frames, g_boxes, d_frames, d_boxes = g_frames[g_keep], g_boxes[g_keep], d_frames[d_keep], d_boxes[d_keep]
    g_groups = _group(np.searchsorted(chosen, g_frames), len(chosen))
    d_groups = _group(np.searchsorted(chosen, d_frames), len(chosen))

    tp = 0
    for gi, di in zip(g_groups, d_groups):
        if len(gi) == 0 or len(di) == 0:
            continue
        ious = box_iou(g_boxes[gi], d_boxes[di])
        valid = ious >= iou - _EPS
        if not valid.any():
            continue
        # A match is worth more than any total of IoUs, so the assignment maximises the number of matches.
        weight = np.where(valid, min(valid.shape) + 1.0 + ious, 0.0)
        r, c = linear_sum_assignment(weight, maximize=True)
        tp += int(valid[r, c].sum())
    fp = len(d_frames) - tp
    fn = len(g_frames) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "num_frames": len(chosen),
    }


def _check_unique_ids(frames: np.ndarray, ids: np.ndarray, name: str) -> None:
    """Raise ValueError when an id occurs twice in one frame (TrackEval refuses such data)."""
    if len(frames) < 2:
        return
    pairs = np.stack([frames, ids], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    if np.any(counts > 1):
        frame, tid = uniq[np.flatnonzero(counts > 1)[0]]
        raise ValueError(f"{name}: id {int(tid)} occurs more than once in frame {int(frame)}")


def build_trackeval_data(
    gt: np.ndarray, tracks: np.ndarray, frames: Sequence[int] | None = None
) -> dict[str, Any]:
    """The per-sequence ``data`` dict TrackEval's metrics expect, built as MotChallenge2DBox builds it.

    One timestep per evaluated frame; gt and tracker ids relabelled to 0..n-1 over the evaluated frames;
    ``similarity_scores[t]`` is the [num_gt_t, num_tracker_t] box IoU.
    """
    gt = _as_track_form(gt, "gt")
    tracks = _as_track_form(tracks, "tracks")
    chosen = _eval_frames(frames)
    if chosen is None:
        all_frames = np.concatenate([gt[:, 0], tracks[:, 0]]).astype(np.int64)
        if len(all_frames) == 0:
            raise ValueError("nothing to evaluate: gt and tracks are empty and no frames were given")
        chosen = np.arange(min(1, int(all_frames.min())), int(all_frames.max()) + 1)
    elif len(chosen) == 0:
        raise ValueError("frames is empty: no timestep to evaluate")
    gt = gt[np.isin(gt[:, 0].astype(np.int64), chosen)]
    tracks = tracks[np.isin(tracks[:, 0].astype(np.int64), chosen)]
    _check_unique_ids(gt[:, 0], gt[:, 1], "gt")
    _check_unique_ids(tracks[:, 0], tracks[:, 1], "tracks")

    gt_uniq, gt_ids = np.unique(gt[:, 1], return_inverse=True)
    tr_uniq, tr_ids = np.unique(tracks[:, 1], return_inverse=True)
    num_t = len(chosen)
    g_groups = _group(np.searchsorted(chosen, gt[:, 0].astype(np.int64)), num_t)
    t_groups = _group(np.searchsorted(chosen, tracks[:, 0].astype(np.int64)), num_t)
    return {
        "num_timesteps": num_t,
        "num_gt_ids": len(gt_uniq),
        "num_tracker_ids": len(tr_uniq),
        "num_gt_dets": len(gt),
        "num_tracker_dets": len(tracks),
        "gt_ids": [gt_ids[g].astype(np.int64) for g in g_groups],
        "tracker_ids": [tr_ids[t].astype(np.int64) for t in t_groups],
        "gt_dets": [gt[g, 2:6] for g in g_groups],
        "tracker_dets": [tracks[t, 2:6] for t in t_groups],
        "tracker_confidences": [tracks[t, 6] for t in t_groups],
        "similarity_scores": [box_iou(gt[g, 2:6], tracks[t, 2:6]) for g, t in zip(g_groups, t_groups)],
        "seq": "sequence",
    }


def mot_metrics(gt: np.ndarray, tracks: np.ndarray, frames: Sequence[int] | None = None) -> dict[str, Any]:
    """MOTA, IDF1, HOTA and their parts for one sequence, computed by TrackEval's HOTA, CLEAR and Identity.

    ``gt`` and ``tracks`` are in the track form (``gt`` as :func:`read_mot` keeps it). ``frames`` are the
    evaluated frame numbers, each one timestep even when empty; rows in other frames are ignored (pass
    the sampled frames when tracking ran on every n-th frame). Default: every frame from 1 (or the
    smallest frame, if lower) to the largest frame in ``gt`` or ``tracks``. Ratios are fractions in
    0..1 (MOTA can be negative); HOTA, DetA, AssA, LocA and their recall/precision parts are TrackEval's
    averages over its 19 alpha thresholds; CLEAR and Identity use IoU >= 0.5.
    """
    from trackeval.metrics import CLEAR, HOTA, Identity

    data = build_trackeval_data(gt, tracks, frames)
    hota = HOTA().eval_sequence(data)
    clear = CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}).eval_sequence(data)
    ident = Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}).eval_sequence(data)

    def mean(field: str) -> float:
        return float(np.mean(hota[field]))

    return {
        "hota": mean("HOTA"),
        "deta": mean("DetA"),
        "assa": mean("AssA"),
        "loca": mean("LocA"),
        "detre": mean("DetRe"),
        "detpr": mean("DetPr"),
        "assre": mean("AssRe"),
        "asspr": mean("AssPr"),
        "mota": float(clear["MOTA"]),
        "motp": float(clear["MOTP"]),
        "idf1": float(ident["IDF1"]),
        "idp": float(ident["IDP"]),
        "idr": float(ident["IDR"]),
        "tp": int(clear["CLR_TP"]),
        "fp": int(clear["CLR_FP"]),
        "fn": int(clear["CLR_FN"]),
        "id_switches": int(clear["IDSW"]),
        "fragmentations": int(clear["Frag"]),
        "mostly_tracked": int(clear["MT"]),
        "partially_tracked": int(clear["PT"]),
        "mostly_lost": int(clear["ML"]),
        "idtp": int(ident["IDTP"]),
        "idfp": int(ident["IDFP"]),
        "idfn": int(ident["IDFN"]),
        "num_gt_ids": int(data["num_gt_ids"]),
        "num_tracker_ids": int(data["num_tracker_ids"]),
        "num_gt_dets": int(data["num_gt_dets"]),
        "num_tracker_dets": int(data["num_tracker_dets"]),
        "num_frames": int(data["num_timesteps"]),
    }
