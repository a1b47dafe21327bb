"""Benchmark video -> tracklets on PETS09-S2L1 (../shared/data): detector speed, detect + track + GSI speed with
the MOT metrics of each configuration, and the whole video -> HITSZ-VCM export, side by side in one run.

    python benchmarks/bench_track.py            # full video (795 frames); updates BENCHMARKS.md
    python benchmarks/bench_track.py --quick    # first 200 frames, prints only

Speeds are frames per second of wall time on this machine; "x real time" divides by the source's 10 fps.
The reference row (ratio 1.0x) is the default configuration: Yolo-Fastest body + StrongSORT + GSI.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from cmft.tracking.appearance import HistogramEmbedder
from cmft.tracking.detectors import build_detector
from cmft.tracking.export import SourceExport, export_dataset, export_every, plan_tracklets
from cmft.tracking.mot_eval import detection_scores, mot_metrics, read_mot
from cmft.tracking.pipeline import track_video
from cmft.tracking.trackers import build_tracker
from cmft.tracking.video import open_video

from markdown_section import write_section  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PETS = DATA / "mot15" / "PETS09-S2L1"
YF, ND = DATA / "weights" / "yolo_fastest", DATA / "weights" / "nanodet_hpc203"
DETECTORS = {
    "Yolo-Fastest body (Darknet, 320)": f"darknet:{YF / 'yolo-fastest-1.1_body.cfg'}:{YF / 'yolo-fastest-1.1_body.weights'}",
    "Yolo-Fastest XL (Darknet, 320)": f"darknet:{YF / 'yolo-fastest-1.1-xl.cfg'}:{YF / 'yolo-fastest-1.1-xl.weights'}",
    "NanoDet-m (ONNX, 416)": f"onnx:{ND / 'nanodet_m.onnx'}",
}
BODY = next(iter(DETECTORS.values()))
PIPELINES = [  # (label, detector spec, tracker, cmc, gsi)
    ("body + StrongSORT + GSI (default)", BODY, "strongsort", None, True),
    ("body + StrongSORT, no GSI", BODY, "strongsort", None, False),
    ("body + StrongSORT + ECC + GSI", BODY, "strongsort", "ecc", True),
    ("body + ByteTrack + GSI", BODY, "bytetrack", None, True),
    ("XL + StrongSORT + GSI", DETECTORS["Yolo-Fastest XL (Darknet, 320)"], "strongsort", None, True),
]


def bench_detector(spec: str, frames: list[np.ndarray]) -> float:
    """Milliseconds per frame, best of two passes after one warm-up frame."""
    det = build_detector(spec)
    det(frames[0])
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        for f in frames:
            det(f)
        best = min(best, (time.perf_counter() - t0) / len(frames))
    return 1000 * best


def run_pipeline(spec: str, tracker: str, cmc: str | None, gsi: bool, limit: int | None) -> tuple:
    reader = open_video(PETS / "vtest.avi")
    emb = HistogramEmbedder("rgb") if tracker == "strongsort" else None
    trk = build_tracker(tracker, cmc=cmc, fps=reader.info.fps, max_cos_dist=HistogramEmbedder.suggested_max_cos_dist)
    run = track_video(reader, build_detector(spec), trk, emb, limit=limit)
    if gsi:
        run.smooth()
    return reader, run


def scores(run, gt: np.ndarray) -> dict:
    frames, dets, tracks = run.mot_rows()
    return {**detection_scores(gt, dets, frames=frames), **mot_metrics(gt, tracks, frames=frames)}


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    import cv2

    return f"{os.cpu_count()} CPUs ({cpu}), OpenCV {cv2.__version__}, Python {platform.python_version()}, no GPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 200 frames, print only")
    args = ap.parse_args()
    if not (PETS / "vtest.avi").is_file():
        raise SystemExit(f"PETS09-S2L1 not found under {DATA}: this benchmark needs ../shared/data")
    import boxmot.utils  # noqa: F401  (configures its logger; quiet it after)

    logging.getLogger("boxmot").setLevel(logging.WARNING)
    limit = 200 if args.quick else None
    gt = read_mot(PETS / "gt" / "gt.txt", scale=0.625)
    reader = open_video(PETS / "vtest.avi")
    source_fps = reader.info.fps
    sample = [f for _, f in reader.frames(limit=100)]
    load = os.getloadavg()[0]

    lines = [f"Command: `python benchmarks/bench_track.py` (date {time.strftime('%Y-%m-%d')}). Machine: {machine()}; "
             f"1-min load average {load:.1f} at the start. Video: PETS09-S2L1 (`vtest.avi`, 480x360, "
             f"{reader.info.num_frames} frames at {source_fps:g} fps), ground truth scaled by 0.625; metrics by TrackEval.", "",
             "Detectors alone (first 100 frames, best of 2 passes):", "",
             "| detector | ms / frame | fps | x real time |", "|---|---:|---:|---:|"]
    for name, spec in DETECTORS.items():
        ms = bench_detector(spec, sample)
        lines.append(f"| {name} | {ms:.1f} | {1000 / ms:.1f} | {1000 / ms / source_fps:.1f}x |")
        print(lines[-1], flush=True)

    lines += ["", "Detect + track (+ GSI) over the whole video, with the scores of each configuration "
              "(detection P / R / F1 at IoU 0.5, paper Table 1's measures):", "",
              "| pipeline | fps | x real time | speed vs default | det P | det R | det F1 | MOTA | IDF1 | HOTA | ID sw. | ids (gt 19) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base_fps, default_run = None, None
    for label, spec, tracker, cmc, gsi in PIPELINES:
        rd, run = run_pipeline(spec, tracker, cmc, gsi, limit)
        fps = run.fps
        base_fps = base_fps or fps
        default_run = default_run or (rd, run)
        s = scores(run, gt)
        lines.append(f"| {label} | {fps:.1f} | {fps / source_fps:.1f}x | {fps / base_fps:.2f}x | {s['precision']:.3f} | "
                     f"{s['recall']:.3f} | {s['f1']:.3f} | {s['mota']:.3f} | {s['idf1']:.3f} | {s['hota']:.3f} | "
                     f"{s['id_switches']} | {s['num_tracker_ids']} |")
        print(lines[-1], flush=True)
        if label.endswith("(default)"):
            stage = ", ".join(f"{k} {v:.1f}" for k, v in run.stage_ms().items())
            default_stage = f"Default pipeline, ms per frame: {stage}."

    # whole video -> tracklets: the default tracking run above plus planning and writing the crops
    rd, run = default_run
    t0 = time.perf_counter()
    planned = plan_tracklets(run.tracks, export_every(rd.info.fps, 5.0))
    with tempfile.TemporaryDirectory() as tmp:
        summary = export_dataset(Path(tmp) / "ds", [SourceExport(rd, 1, "rgb", planned)])
    export_s = time.perf_counter() - t0
    total = len(run.frames) / base_fps + export_s
    video_s = len(run.frames) / source_fps
    lines += ["", default_stage,
              f"Export: {summary.tracklets} tracklets, {summary.frames} crops written in {export_s:.2f} s (frames decoded again "
              f"for cropping). Whole video -> HITSZ-VCM tracklets: {total:.1f} s for {video_s:.1f} s of video, "
              f"**{video_s / total:.1f}x real time**."]
    print("\n".join(lines[-2:]))
    if args.quick:
        return
    path = write_section("bench_track", "## Video -> tracklets (`benchmarks/bench_track.py`)\n\n" + "\n".join(lines))
    print(f"updated {path}")


if __name__ == "__main__":
    main()
