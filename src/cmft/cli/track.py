"""``cmft track`` (camera video -> HITSZ-VCM tracklets) and ``cmft track-eval`` (MOTChallenge scores).

Both build the same pipeline (detector -> appearance -> tracker -> optional GSI); everything heavy
(OpenCV, boxmot, Ultralytics, TrackEval) is imported inside the commands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cmft.cli._common import _fail, console, err

DETECTOR_HELP = (
    "person detector: darknet:CFG:WEIGHTS (OpenCV DNN, e.g. Yolo-Fastest, YOLOv7 Darknet release), onnx:FILE "
    "(OpenCV DNN; NanoDet or YOLOv5/v8-style outputs), yolo:WEIGHTS_OR_NAME (Ultralytics; a bare name such as "
    "yolov8n.pt is fetched when online), or hog (OpenCV's HOG people detector, no files)"
)

Detector = Annotated[str, typer.Option("--detector", "-d", help=DETECTOR_HELP)]
Conf = Annotated[float, typer.Option(help="detection confidence threshold")]
Nms = Annotated[float, typer.Option(help="NMS IoU threshold of the detector")]
InputSize = Annotated[Optional[int], typer.Option(help="detector input size in pixels (default: the model's own)")]
TrackerName = Annotated[str, typer.Option(help="strongsort (appearance + motion, paper §3.1) or bytetrack (motion only, faster)")]
Cmc = Annotated[str, typer.Option(help="camera-motion compensation for StrongSORT: none (static cameras), ecc, orb, sof, sift")]
Appearance = Annotated[str, typer.Option(help="StrongSORT appearance: histogram (no weights) or cmft:CHECKPOINT (a trained run's best.pt)")]
Gsi = Annotated[bool, typer.Option(help="StrongSORT's offline GSI: interpolate gaps and smooth boxes (paper §3.1)")]
Stride = Annotated[int, typer.Option(help="process every N-th frame")]
Limit = Annotated[Optional[int], typer.Option(help="stop after this many processed frames")]
Fps = Annotated[Optional[float], typer.Option(help="override the source's frame rate (frame folders default to seqinfo.ini or 25)")]
MaxCosDist = Annotated[Optional[float], typer.Option(help="StrongSORT's appearance gate (cosine distance); default: what suits --appearance")]
Device = Annotated[str, typer.Option(help="device for Ultralytics and cmft models: cpu, cuda, cuda:1")]


@contextmanager
def _frame_progress(description: str) -> Iterator[Any]:
    """A progress bar over frames that shows the processing rate in frames per second."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]}"),
        TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal,
    ) as p:
        task = p.add_task(description, total=None, fps="")
        start = time.perf_counter()

        def update(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - start, 1e-9)
            p.update(task, completed=done, total=total, fps=f"{rate:5.1f} fps")

        yield update


def _pipeline(detector: str, conf: float, nms: float, input_size: int | None, tracker: str, cmc: str,
              appearance: str, max_cos_dist: float | None, modality: str, fps: float, device: str) -> tuple[Any, Any, Any]:
    """Detector, tracker and embedder from the command line, or a clear error exit."""
    from cmft.tracking.detectors import DetectorError
    from cmft.tracking.pipeline import build_pipeline, quiet_boxmot

    quiet_boxmot()
    try:
        return build_pipeline(detector, modality, fps, conf=conf, nms=nms, input_size=input_size, tracker=tracker,
                              cmc=cmc, appearance=appearance, max_cos_dist=max_cos_dist, device=device)
    except (DetectorError, ValueError, FileNotFoundError) as e:
        _fail(str(e))


def _open(video: Path, fps: float | None) -> Any:
    from cmft.tracking.video import VideoError, open_video

    try:
        return open_video(video, fps)
    except VideoError as e:
        _fail(str(e))


def _run(reader: Any, det: Any, trk: Any, emb: Any, stride: int, limit: int | None, gsi: bool) -> Any:
    """Track one video (with a progress bar), then GSI when asked."""
    from cmft.tracking.pipeline import track_video
    from cmft.tracking.video import VideoError

    try:
        with _frame_progress(f"tracking {reader.path.name}") as update:
            run = track_video(reader, det, trk, emb, stride=stride, limit=limit, progress=update)
    except VideoError as e:
        _fail(str(e))
    if gsi:
        run.smooth()
    return run


def _check_start(value: str | None, what: str) -> None:
    """A capture start time must read as ISO 8601 (what the gallery's time filters parse), or a clear exit."""
    if value is None:
        return
    from cmft.search.gallery import IndexFormatError, parse_time

    try:
        parse_time(value, what)
    except IndexFormatError as e:
        _fail(str(e))


def _per_video(values: list[Any], n: int, what: str) -> list[Any]:
    if len(values) == 1:
        return values * n
    if len(values) != n:
        _fail(f"give one {what} for all {n} videos or one per video (got {len(values)})")
    return values


def track(
    videos: Annotated[list[Path], typer.Argument(help="video files or frame folders of one or more cameras")],
    out: Annotated[Path, typer.Option(help="HITSZ-VCM dataset folder to create or append to")],
    camera: Annotated[list[int], typer.Option(help="camera id (HITSZ-VCM D<id>); one for all videos or one per video")],
    modality: Annotated[list[str], typer.Option(help="rgb or ir; one for all videos or one per video")],
    detector: Detector = "yolo:yolov8n.pt",
    conf: Conf = 0.5,
    nms: Nms = 0.45,
    input_size: InputSize = None,
    tracker: TrackerName = "strongsort",
    cmc: Cmc = "none",
    appearance: Appearance = "histogram",
    max_cos_dist: MaxCosDist = None,
    gsi: Gsi = True,
    stride: Stride = 1,
    limit: Limit = None,
    fps: Fps = None,
    export_fps: Annotated[float, typer.Option(help="crops per second of video kept in tracklets (HITSZ-VCM: 5)")] = 5.0,
    max_len: Annotated[int, typer.Option(help="longest tracklet in frames; longer tracks are cut evenly")] = 24,
    min_len: Annotated[int, typer.Option(help="shortest tracklet kept (HITSZ-VCM's reader drops < 12)")] = 12,
    split: Annotated[str, typer.Option(help="test (IR tracklets become queries, RGB the gallery) or train")] = "test",
    label_gt: Annotated[Optional[Path], typer.Option(help="MOTChallenge ground truth: name tracklets by its identities (one video only)")] = None,
    gt_scale: Annotated[float, typer.Option(help="multiply ground-truth boxes by this (PETS09 in a 480x360 video: 0.625)")] = 1.0,
    gt_frame_offset: Annotated[int, typer.Option(help="added to ground-truth frame numbers (MOT frame = video index + 1)")] = 0,
    device: Device = "cpu",
    start_time: Annotated[Optional[list[str]], typer.Option("--start-time", help="ISO 8601 capture time of the first frame (e.g. 2026-12-01T08:00:00Z); one for all videos or one per video: each tracklet's capture time is start + first frame / fps, what `cmft search --since/--until` filter on")] = None,
) -> None:
    """Turn camera footage into tracklets: detect people, track them, and write crops in the HITSZ-VCM layout."""
    from cmft.tracking.export import ExportError, SourceExport, export_dataset, export_every, label_with_ground_truth, plan_tracklets
    from cmft.tracking.mot_eval import MotFormatError, read_mot

    cameras = _per_video(camera, len(videos), "--camera")
    modalities = [m.lower() for m in _per_video(modality, len(videos), "--modality")]
    for m in modalities:
        if m not in ("rgb", "ir"):
            _fail(f"--modality must be rgb or ir, got {m!r}")
    if label_gt is not None and len(videos) != 1:
        _fail("--label-gt names the identities of one video; give exactly one VIDEO")
    starts = _per_video(start_time, len(videos), "--start-time") if start_time else [None] * len(videos)
    for st in starts:
        _check_start(st, "--start-time")
    readers = [_open(v, fps) for v in videos]  # every source is checked before any work
    sources, table_rows = [], []
    for reader, cam, mod, st in zip(readers, cameras, modalities, starts):
        det, trk, emb = _pipeline(detector, conf, nms, input_size, tracker, cmc, appearance, max_cos_dist, mod, reader.info.fps, device)
        run = _run(reader, det, trk, emb, stride, limit, gsi)
        every = export_every(reader.info.fps, export_fps)
        planned = plan_tracklets(run.tracks, every, max_len, min_len)
        if label_gt is not None:
            try:
                gt = read_mot(label_gt, gt_scale, gt_frame_offset - 1)  # MOT frame n is source index n - 1
            except MotFormatError as e:
                _fail(str(e))
            planned = label_with_ground_truth(planned, gt)
        n_tracks = len(set(run.tracks[:, 1].astype(int).tolist())) if len(run.tracks) else 0
        table_rows.append((reader.path.name, str(cam), mod, str(len(run.frames)), str(len(run.detections)), str(n_tracks),
                           str(len(planned)), f"{run.fps:.1f}"))
        meta = {"fps": reader.info.fps, "frames_processed": len(run.frames), "detections": len(run.detections),
                "tracks": n_tracks, "export_every": every}
        sources.append(SourceExport(reader, cam, mod, planned, meta, start=st))
    table = Table(title="tracking")
    for col in ("video", "cam", "mod", "frames", "dets", "tracks", "tracklets", "fps"):
        table.add_column(col, justify="left" if col in ("video", "mod") else "right")
    for row in table_rows:
        table.add_row(*row)
    console.print(table)
    if not any(s.tracklets for s in sources):
        _fail(f"no tracklet of at least {min_len} frames was found (no people tracked long enough); {out} was not changed")
    run_meta = {"detector": detector, "conf": conf, "nms": nms, "tracker": tracker, "cmc": cmc, "appearance": appearance,
                "gsi": gsi, "stride": stride, "export_fps": export_fps, "max_len": max_len, "min_len": min_len,
                "label_gt": str(label_gt) if label_gt else None}
    try:
        with _frame_progress("writing crops") as update:
            summary = export_dataset(out, [s for s in sources if s.tracklets], split=split, run_meta=run_meta, progress=update)
    except ExportError as e:
        _fail(str(e))
    if summary.already:
        console.print(f"this export is already in {summary.root} ({summary.tracklets} tracklets, identities "
                      f"{summary.pids[0]}..{summary.pids[-1]}): nothing written")
        return
    console.print(f"wrote {summary.tracklets} tracklets ({summary.frames} crops, identities {summary.pids[0]}..{summary.pids[-1]}) "
                  f"to the {summary.split} split of {summary.root}")


def track_eval(
    video: Annotated[Path, typer.Argument(help="video file or frame folder")],
    gt: Annotated[Path, typer.Option(help="MOTChallenge ground truth (gt.txt)")],
    gt_scale: Annotated[float, typer.Option(help="multiply ground-truth boxes by this (PETS09 in a 480x360 video: 0.625)")] = 1.0,
    gt_frame_offset: Annotated[int, typer.Option(help="added to ground-truth frame numbers (MOT frame = video index + 1)")] = 0,
    detector: Detector = "yolo:yolov8n.pt",
    conf: Conf = 0.5,
    nms: Nms = 0.45,
    input_size: InputSize = None,
    tracker: TrackerName = "strongsort",
    cmc: Cmc = "none",
    appearance: Appearance = "histogram",
    max_cos_dist: MaxCosDist = None,
    modality: Annotated[str, typer.Option(help="rgb or ir: which appearance the camera gives")] = "rgb",
    gsi: Gsi = True,
    stride: Stride = 1,
    limit: Limit = None,
    fps: Fps = None,
    iou: Annotated[float, typer.Option(help="IoU for a detection to match a ground-truth box")] = 0.5,
    save_mot: Annotated[Optional[Path], typer.Option(help="also write the tracks as a MOTChallenge results file")] = None,
    device: Device = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Score detection (precision / recall / F1, paper Table 1) and tracking (MOTA, IDF1, HOTA) against MOT ground truth."""
    from cmft.tracking.mot_eval import MotFormatError, detection_scores, mot_metrics, read_mot, write_mot

    try:
        gt_rows = read_mot(gt, gt_scale, gt_frame_offset)
    except MotFormatError as e:
        _fail(str(e))
    reader = _open(video, fps)
    det, trk, emb = _pipeline(detector, conf, nms, input_size, tracker, cmc, appearance, max_cos_dist, modality.lower(), reader.info.fps, device)
    run = _run(reader, det, trk, emb, stride, limit, gsi)
    frames, dets, tracks = run.mot_rows()
    if save_mot is not None:
        write_mot(save_mot, tracks)
    d = detection_scores(gt_rows, dets, iou=iou, frames=frames)
    m = mot_metrics(gt_rows, tracks, frames=frames)
    result = {
        "video": str(video), "frames": len(frames), "detector": detector, "tracker": tracker, "gsi": gsi,
        "appearance": getattr(emb, "name", None),
        "det_precision": d["precision"], "det_recall": d["recall"], "det_f1": d["f1"],
        "mota": m["mota"], "idf1": m["idf1"], "hota": m["hota"], "id_switches": m["id_switches"],
        "num_gt_ids": m["num_gt_ids"], "num_tracker_ids": m["num_tracker_ids"],
        "fps": run.fps,
        "ms_per_frame": {"gsi": 0.0, **run.stage_ms()},
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{video.name}: {det.name} + {tracker}{' + GSI' if gsi else ''}")
    for col in ("det P", "det R", "det F1", "MOTA", "IDF1", "HOTA", "ID sw.", "ids (gt/ours)", "fps"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{100 * result[k]:.1f}" for k in ("det_precision", "det_recall", "det_f1", "mota", "idf1", "hota")),
                  str(result["id_switches"]), f"{result['num_gt_ids']}/{result['num_tracker_ids']}", f"{result['fps']:.1f}")
    console.print(table)
    console.print("ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in result["ms_per_frame"].items()))


def register(app: typer.Typer) -> None:
    """Add ``track`` and ``track-eval`` to ``app``."""
    app.command("track")(track)
    app.command("track-eval")(track_eval)
