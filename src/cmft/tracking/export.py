"""Write tracks as a HITSZ-VCM dataset: the second half of paper §3.1's sequence generation.

Tracks are sampled on a fixed frame grid (25 fps -> 5 fps, as HITSZ-VCM), cut into tracklets of at most
``max_len`` frames (balanced, so a 30-frame track gives 15 + 15, not 24 + 6) and tracklets shorter than
``min_len`` are dropped. Crops go to ``<pid:04d>/<rgb|ir>/D<cam>/<n>.jpg``, the five ``info/`` files are
appended to, and ``manifest.json`` records each tracklet's source video, frame indices and boxes.

Writing is all-or-nothing per call: crops are written into a staging folder first, moved into place, then
the info files (appended, each replaced atomically: names, then tracks, then queries) and the manifest.
An export that fails before the move leaves the dataset as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmft.atomic import write_text_atomic
from cmft.data.datasets.hitsz_vcm import COMMITTED, PENDING
from cmft.data.types import Modality
from cmft.tracking.appearance import crop_boxes
from cmft.tracking.video import VideoReader

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "cmft-tracklets/1"
MAX_PID = 9999  # HITSZ-VCM frame names carry the identity as 4 digits
_MOD_CODE = {"ir": 1, "rgb": 2}
_SPLITS = ("train", "test")


class ExportError(ValueError):
    """Nothing can be exported (no tracklet survives, ids collide, a bad dataset folder); nothing was written."""


@dataclass
class PlannedTracklet:
    """One tracklet to write: its source track, the sampled 0-based frame indices and their ``[T, 4]`` boxes."""

    track_id: int
    frames: list[int]
    boxes: np.ndarray
    pid: int | None = None
    label: str = "track"


@dataclass
class SourceExport:
    """The tracklets of one video and where they go."""

    reader: VideoReader
    camera: int
    modality: Modality
    tracklets: list[PlannedTracklet]
    meta: dict = field(default_factory=dict)
    start: str | None = None  # ISO 8601 capture time of the video's first frame


def read_export_manifest(root: str | Path) -> dict | None:
    """The ``manifest.json`` of a ``cmft track`` export (format :data:`MANIFEST_FORMAT`), or ``None`` when the folder
    has none or it is another file of that name; invalid JSON is an :class:`ExportError` naming the file."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest


def capture_iso(start: str | None, frame: int, fps: float | None) -> str | None:
    """The capture time of 0-based ``frame`` of a video whose first frame was captured at ``start`` (ISO 8601):
    ``start + frame / fps``, as ISO 8601 UTC with milliseconds; ``None`` without a start or a frame rate."""
    if start is None or not fps:
        return None
    from datetime import datetime, timedelta, timezone

    t0 = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    if t0.tzinfo is None:
        t0 = t0.replace(tzinfo=timezone.utc)  # no zone: UTC, as cmft.search.gallery.parse_time reads it
    t = (t0 + timedelta(seconds=frame / float(fps))).astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def manifest_tracklets(root: str | Path) -> list[dict]:
    """Every tracklet an export's manifest lists, in order: ``files`` (absolute crop paths), ``camera``,
    ``modality``, ``pid``, and what the manifest says of its source: ``video``, ``video_frames``, ``label``,
    ``seconds`` into the video, ``time`` (``video#frame``) and, when the source had a start time, ``captured``
    (ISO 8601). ``[]`` for a folder without a manifest."""
    manifest = read_export_manifest(root)
    if manifest is None:
        return []
    root = Path(root)
    runs = manifest.get("runs") or []
    out = []
    for r in manifest.get("tracklets") or []:
        if not isinstance(r, dict) or not r.get("files") or not r.get("frames"):
            continue
        rec = {"files": [str(root / f) for f in r["files"]], "camera": r.get("camera"), "modality": r.get("modality"),
               "pid": r.get("pid"), "video": r.get("source"), "video_frames": r.get("frames"), "label": r.get("label")}
        try:
            src = runs[r["run"]]["sources"][r["source_index"]]
        except (KeyError, IndexError, TypeError):
            src = {}
        fps = src.get("fps") if isinstance(src, dict) else None
        if fps:
            rec["seconds"] = round(r["frames"][0] / float(fps), 3)
        rec["time"] = f"{r.get('source')}#{r['frames'][0]}"
        if r.get("captured"):
            rec["captured"] = r["captured"]
        out.append(rec)
    return out


def manifest_records(root: str | Path) -> dict[str, dict]:
    """What an export's manifest says of each tracklet's source (:func:`manifest_tracklets` less the crops and
    labels), by its first crop's path relative to ``root``; ``{}`` for a folder without a manifest."""
    out = {}
    for t in manifest_tracklets(root):
        out[str(Path(t["files"][0]).relative_to(Path(root)))] = {
            k: v for k, v in t.items() if k not in ("files", "camera", "modality", "pid")}
    return out


def export_every(fps: float, export_fps: float) -> int:
    """The frame step that brings ``fps`` down to about ``export_fps`` (25 -> 5 fps: every 5th frame)."""
    if export_fps <= 0:
        raise ValueError(f"export fps must be positive, got {export_fps}")
    return max(1, round(fps / export_fps))


def _balanced_chunks(n: int, max_len: int) -> list[tuple[int, int]]:
    parts = -(-n // max_len)
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def plan_tracklets(tracks: np.ndarray, every: int, max_len: int = 24, min_len: int = 12) -> list[PlannedTracklet]:
    """Cut ``[M, 7]`` track rows (frame, id, x1, y1, x2, y2, score) into tracklets on the ``frame % every == 0`` grid."""
    if max_len < 1 or min_len < 1 or min_len > max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rows = np.asarray(tracks, dtype=np.float64).reshape(-1, 7)
    rows = rows[np.round(rows[:, 0]).astype(np.int64) % every == 0]
    out: list[PlannedTracklet] = []
    for tid in np.unique(rows[:, 1]):
        mine = rows[rows[:, 1] == tid]
        mine = mine[np.argsort(mine[:, 0], kind="stable")]
        for a, b in _balanced_chunks(len(mine), max_len):
            if b - a >= min_len:
                part = mine[a:b]
                out.append(PlannedTracklet(int(tid), np.round(part[:, 0]).astype(int).tolist(), part[:, 2:6].copy()))
    return out


def label_with_ground_truth(tracklets: list[PlannedTracklet], gt: np.ndarray, iou: float = 0.5, min_share: float = 0.5) -> list[PlannedTracklet]:
    """Give each tracklet the ground-truth identity that its boxes overlap (IoU >= ``iou``) in most frames.

    ``gt`` rows are ``frame, id, x1, y1, x2, y2, ...`` with frames as 0-based source indices. A tracklet whose
    best identity covers less than ``min_share`` of its frames matches no one and is dropped.
    """
    from cmft.tracking.mot_eval import box_iou

    by_frame: dict[int, np.ndarray] = {}
    gt = np.asarray(gt, dtype=np.float64)
    for f in np.unique(gt[:, 0]).astype(int):
        by_frame[int(f)] = gt[gt[:, 0] == f]
    labelled = []
    for t in tracklets:
        votes: dict[int, int] = {}
        for f, box in zip(t.frames, t.boxes):
            rows = by_frame.get(f)
            if rows is None:
                continue
            ious = box_iou(box[None], rows[:, 2:6])[0]
            best = int(np.argmax(ious))
            if ious[best] >= iou:
                votes[int(rows[best, 1])] = votes.get(int(rows[best, 1]), 0) + 1
        if votes:
            pid, n = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))
            if n >= min_share * len(t.frames):
                labelled.append(PlannedTracklet(t.track_id, t.frames, t.boxes, pid, "ground-truth"))
    return labelled


@dataclass
class ExportSummary:
    """What one export call wrote."""

    root: Path
    tracklets: int
    frames: int
    pids: list[int]
    split: str
    already: bool = False  # the same append was found finished in the dataset: nothing new written


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()] if path.is_file() else []


def _finish_commit(root: Path) -> None:
    """Complete an append that committed (``info/.pending/COMMITTED``) and was killed before its files were all
    moved in place, or drop one that never committed (its crops may stay on disk, unreferenced)."""
    pending = root / "info" / PENDING
    if not pending.is_dir():
        return
    if (pending / COMMITTED).is_file():
        for f in sorted(pending.iterdir()):
            if f.name == MANIFEST:
                os.replace(f, root / MANIFEST)
            elif f.name != COMMITTED:
                os.replace(f, root / "info" / f.name)
    shutil.rmtree(pending)


def _commit(root: Path, files: dict[str, str]) -> None:
    """Replace the info files and the manifest together: stage them in ``info/.pending``, mark the commit with one
    atomic write, then move them in place. A kill before the mark leaves the old dataset, after it the new one
    (readers follow the mark; the next append finishes the moves)."""
    pending = root / "info" / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir(parents=True)
    for name, text in files.items():
        write_text_atomic(pending / name, text)
    write_text_atomic(pending / COMMITTED, "")
    _finish_commit(root)


def run_key(sources: Sequence[SourceExport], split: str, run_meta: dict | None) -> str:
    """What identifies an append: the split, each source (path, camera, modality, settings) and the run's options."""
    import hashlib

    what = [split, [[str(s.reader.path), s.camera, s.modality, s.meta, *([s.start] if s.start else [])] for s in sources],
            run_meta or {}]
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _existing(root: Path) -> tuple[dict, dict[str, list[str]], set[int]]:
    """The manifest, the info files' lines and the identities already used by a dataset folder (empty if new)."""
    _finish_commit(root)
    manifest = {"format": MANIFEST_FORMAT, "runs": [], "tracklets": []}
    if (root / MANIFEST).is_file():
        found = read_export_manifest(root)
        if found is None:
            raise ExportError(f"{root / MANIFEST}: not a {MANIFEST_FORMAT!r} manifest; refusing to append to this folder")
        manifest = found
    elif root.is_dir() and any(root.iterdir()) and not (root / "info").is_dir():
        raise ExportError(f"{root}: folder is not empty and is not a HITSZ-VCM dataset (no info/); choose another --out")
    info = {name: _read_lines(root / "info" / name) for name in
            ("train_name.txt", "test_name.txt", "track_train_info.txt", "track_test_info.txt", "query_IDX.txt")}
    used = {int(n[:4]) for s in _SPLITS for n in info[f"{s}_name.txt"] if n[:4].isdigit()}
    return manifest, info, used


def _assign_pids(sources: Sequence[SourceExport], manifest: dict, used: set[int]) -> None:
    """Fresh identities for tracker-labelled tracklets (one per source track, never reused across cameras or
    videos); ground-truth labels keep their id but must not land on a tracker-made identity."""
    auto_used = {t["pid"] for t in manifest["tracklets"] if t.get("label") != "ground-truth"}
    foreign = used - {t["pid"] for t in manifest["tracklets"]}
    planned_gt = {t.pid for s in sources for t in s.tracklets if t.label == "ground-truth"}
    clash = planned_gt & (auto_used | foreign)
    if clash:
        raise ExportError(
            f"ground-truth identities {sorted(clash)[:10]} are already used by other tracklets of this dataset; "
            "export labelled footage into its own folder"
        )
    next_pid = max(used | planned_gt | {0}) + 1
    for s in sources:
        fresh: dict[int, int] = {}
        for t in s.tracklets:
            if t.label == "ground-truth":
                continue
            if t.track_id not in fresh:
                fresh[t.track_id] = next_pid
                next_pid += 1
            t.pid = fresh[t.track_id]
    top = max((t.pid for s in sources for t in s.tracklets), default=0)
    if top > MAX_PID:
        raise ExportError(f"identity {top} exceeds {MAX_PID}: HITSZ-VCM names hold 4 digits; start a new dataset folder")


def _next_frame_number(folder: Path, taken: dict[Path, int]) -> int:
    if folder not in taken:
        nums = [int(p.stem) for p in folder.glob("*.jpg") if p.stem.isdigit()] if folder.is_dir() else []
        taken[folder] = max(nums, default=0)
    taken[folder] += 1
    return taken[folder]


def export_dataset(
    root: str | Path,
    sources: Sequence[SourceExport],
    split: str = "test",
    run_meta: dict | None = None,
    jpeg_quality: int = 95,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Append the planned tracklets of ``sources`` to the HITSZ-VCM dataset at ``root`` (created if new).

    In the test split, infrared tracklets become queries (``query_IDX.txt``) and RGB ones the gallery.
    """
    if split not in _SPLITS:
        raise ExportError(f"unknown split {split!r}; choose train or test")
    root = Path(root)
    n_total = sum(len(s.tracklets) for s in sources)
    if n_total == 0:
        raise ExportError("no tracklet to export (none long enough); nothing was written")
    manifest, info, used = _existing(root)
    key = run_key(sources, split, run_meta)
    done = [i for i, r in enumerate(manifest["runs"]) if r.get("key") == key]
    if done:  # the same append, finished before (e.g. re-run after a kill that came after its commit)
        recs = [t for t in manifest["tracklets"] if t.get("run") == done[-1]]
        return ExportSummary(root, len(recs), sum(len(t["frames"]) for t in recs), sorted({t["pid"] for t in recs}), split,
                             already=True)
    _assign_pids(sources, manifest, used)
    created = not root.exists()
    try:
        return _write(root, sources, split, manifest, info, run_meta, jpeg_quality, progress, n_total)
    except BaseException:
        if created:  # a new dataset that failed half-way is removed whole
            shutil.rmtree(root, ignore_errors=True)
        raise


def _write(root: Path, sources: Sequence[SourceExport], split: str, manifest: dict, info: dict[str, list[str]],
           run_meta: dict | None, jpeg_quality: int, progress: Callable[[int, int], None] | None, n_total: int) -> ExportSummary:
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    (root / "info").mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    names, rows, queries, records = list(info[f"{split}_name.txt"]), list(info[f"track_{split}_info.txt"]), list(info["query_IDX.txt"]), []
    taken: dict[Path, int] = {}
    moves: list[tuple[Path, Path]] = []
    done = 0
    try:
        for s_index, s in enumerate(sources):
            need: dict[int, list[tuple[int, int]]] = {}
            for k, t in enumerate(s.tracklets):
                for j, f in enumerate(t.frames):
                    need.setdefault(f, []).append((k, j))
            files: list[list[str]] = [[""] * len(t.frames) for t in s.tracklets]
            for f, frame in s.reader.frames(indices=need):
                for k, j in need.pop(f):
                    t = s.tracklets[k]
                    (crop,) = crop_boxes(frame, t.boxes[j][None])
                    rel = Path(f"{t.pid:04d}") / s.modality / f"D{s.camera}"
                    n = _next_frame_number(root / rel, taken)
                    dest = staging / rel / f"{n}.jpg"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if not cv2.imwrite(str(dest), crop, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                        raise ExportError(f"{dest}: could not be written")
                    files[k][j] = str(rel / f"{n}.jpg")
                    moves.append((dest, root / rel / f"{n}.jpg"))
            if need:
                raise ExportError(f"{s.reader.path}: frames {sorted(need)[:5]} could not be decoded again for cropping")
            for k, t in enumerate(s.tracklets):
                start = len(names) + 1
                mod = _MOD_CODE[s.modality]
                names += [f"{t.pid:04d}M{mod}D{s.camera}T{len(rows) + 1}F{Path(p).name}" for p in files[k]]
                rows.append(f"{mod} {start} {len(names)} {t.pid} {s.camera}")
                if split == "test" and s.modality == "ir":
                    queries.append(str(len(rows)))
                records.append({
                    "split": split, "row": len(rows), "pid": t.pid, "camera": s.camera, "modality": s.modality,
                    "label": t.label, "source": str(s.reader.path), "track_id": t.track_id, "frames": t.frames,
                    "boxes": np.round(t.boxes, 2).tolist(), "files": files[k], "source_index": s_index,
                    **({"captured": capture_iso(s.start, t.frames[0], s.reader.info.fps)} if s.start else {}),
                })
                done += 1
                if progress is not None:
                    progress(done, n_total)
        for src, dest in moves:  # same file system: renames, no copies
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    files: dict[str, str] = {}
    for name in ("train_name.txt", "test_name.txt", "track_train_info.txt", "track_test_info.txt", "query_IDX.txt"):
        lines = {f"{split}_name.txt": names, f"track_{split}_info.txt": rows, "query_IDX.txt": queries}.get(name, info[name])
        files[name] = "".join(f"{ln}\n" for ln in lines)
    manifest["runs"].append({**(run_meta or {}), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "split": split,
                             "key": run_key(sources, split, run_meta),
                             "sources": [{"path": str(s.reader.path), "camera": s.camera, "modality": s.modality, **s.meta,
                                          **({"start": s.start} if s.start else {})} for s in sources]})
    run_index = len(manifest["runs"]) - 1
    manifest["tracklets"] += [{**r, "run": run_index} for r in records]
    files[MANIFEST] = json.dumps(manifest, indent=1)
    _commit(root, files)
    pids = sorted({r["pid"] for r in records})
    return ExportSummary(root, len(records), sum(len(r["frames"]) for r in records), pids, split)
