"""``cmft ingest``: a manifest of camera videos -> tracklets with capture times -> one gallery, on Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cmft.cli._common import _fail, console, err
from cmft.cli.track import DETECTOR_HELP, TrackerName


def ingest_cmd(
    manifest: Annotated[Path, typer.Argument(help="YAML or CSV: one video (file or frame folder) per row with path, camera, modality (rgb/ir), start (ISO 8601 capture time of the first frame) and optional fps")],
    checkpoint: Annotated[Path, typer.Option(help="the model that embeds the tracklets (a run's best.pt)")],
    store: Annotated[str, typer.Option(help="gallery store folder (created or appended to) or Milvus URI / Milvus Lite *.db file")],
    detector: Annotated[str, typer.Option("--detector", "-d", help=DETECTOR_HELP)],
    address: Annotated[Optional[str], typer.Option(help="join a running Ray cluster (e.g. ray://head:10001 or auto); default: start a local Ray for this command")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Ray actors, each processing one video at a time (default: CPU cores / --threads, or the GPUs with --device cuda); 0 = a plain loop in this process, no Ray")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where detection and embedding run")] = "auto",
    threads: Annotated[int, typer.Option(help="CPU threads (and Ray CPUs) per worker")] = 1,
    crops: Annotated[Optional[Path], typer.Option(help="folder for the tracklets' crops and the ingest ledger (default: STORE/crops for a store folder; required for URIs); on a cluster, a shared file system")] = None,
    tracker: TrackerName = "strongsort",
    batch_size: Annotated[int, typer.Option(help="tracklets per embedding forward pass")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="print one summary object (videos, failed, tracklets, frames, seconds, per_video)")] = False,
) -> None:
    """Ingest a day of camera videos: decode, detect, track and export each video, embed its tracklets and append
    them to the gallery with their capture times, one commit per video. Re-running skips the videos already in the
    gallery, so a killed ingest is finished by running it again. Exit code 0 only when no video failed."""
    from cmft.ingest.worker import thread_env

    for var, value in thread_env(threads).items():  # before NumPy, torch and OpenCV load: --workers 0 works here
        os.environ.setdefault(var, value)
    from cmft.devices import resolve_device
    from cmft.ingest import IngestManifestError, IngestSettings, read_manifest
    from cmft.search.gallery import IndexFormatError, is_milvus

    try:
        rows = read_manifest(manifest)
    except IngestManifestError as e:
        _fail(str(e))
    if threads < 1:
        _fail(f"--threads must be at least 1, got {threads}")
    if batch_size < 1:
        _fail(f"--batch-size must be at least 1, got {batch_size}")
    if not checkpoint.is_file():
        _fail(f"{checkpoint}: no such checkpoint")
    dev = str(resolve_device(device))
    if workers is None:
        import torch

        workers = torch.cuda.device_count() if dev.startswith("cuda") else max(1, (os.cpu_count() or 1) // threads)
    if workers < 0:
        _fail(f"--workers must be 0 (no Ray) or more, got {workers}")
    if crops is None:
        if is_milvus(store) and not str(store).endswith(".db") or "://" in str(store):
            _fail(f"{store}: give --crops, a folder for the tracklets' crops (a shared file system on a cluster)")
        crops = Path(f"{store}.crops") if is_milvus(store) else Path(store) / "crops"
    settings = IngestSettings(str(checkpoint.resolve()), detector, str(crops.resolve()), device=dev, threads=threads,
                              batch_size=batch_size, tracker=tracker)
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # the driver's own start (detector check, model fingerprint, opening the gallery: mostly imports and loading)
    # runs in a thread while Ray starts and its actors load their models: the two waits overlap. The gallery (LanceDB,
    # whose runtime does not survive a fork) is opened only once Ray has forked its processes.
    ray_started, ray_failed = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as ex:
        opening = ex.submit(_prepare, settings, store, ray_started, ray_failed)
        pool = None
        try:
            if workers > 0:
                from cmft.ingest.runner import RayWorkers

                try:
                    pool = RayWorkers(settings, min(workers, len(rows)), address)
                except (RuntimeError, ConnectionError, ValueError) as e:
                    ray_failed.set()  # the gallery is then left alone
                    _fail(f"Ray: {e}")
                finally:
                    ray_started.set()
            ray_started.set()
            gallery = opening.result()
            if isinstance(gallery, str):
                _fail(gallery)
            try:
                summary = _run(rows, settings, gallery, pool, as_json)
            except (IndexFormatError, ValueError, RuntimeError) as e:
                _fail(str(e))
            finally:
                gallery.close()
        finally:
            if pool is not None:
                pool.close()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        console.print(_table(summary))
        rate = summary["video_seconds"] / max(summary["seconds"], 1e-9)
        console.print(f"{summary['videos']} videos ({summary['failed']} failed), {summary['tracklets']} tracklets added, "
                      f"{summary['frames']} frames in {summary['seconds']:.1f} s: {summary['frames'] / max(summary['seconds'], 1e-9):.1f} "
                      f"frames/s, {rate:.1f}x real time, {workers or 'no'} Ray worker{'s' if workers != 1 else ''}")
        for f in summary["failed_videos"]:
            err.print(f"failed: {f['path']}: {f['error']}")
    if summary["failed"]:
        raise typer.Exit(code=1)


def _prepare(settings: Any, store: str, ray_started: Any, ray_failed: Any) -> Any:
    """The gallery (created for this model if new, opened once ``ray_started`` is set) after building the detector
    once, so that a bad spec or missing weights stop the command before any work; or the error message."""
    from cmft.inference import Extractor
    from cmft.search.gallery import IndexFormatError
    from cmft.search.indexing import open_index
    from cmft.tracking.detectors import DetectorError, build_detector

    try:
        build_detector(settings.detector, conf=settings.conf, nms=settings.nms, device=settings.device)
        ex = Extractor(settings.checkpoint, device="cpu", batch_size=1)
        ray_started.wait()
        if ray_failed.is_set():
            return "Ray did not start"
        return open_index(store, ex, "flat", {"checkpoint": settings.checkpoint})
    except (DetectorError, IndexFormatError, FileNotFoundError, ValueError, RuntimeError) as e:
        return str(e)


def _run(rows: list, settings: Any, gallery: Any, pool: Any, quiet: bool) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from cmft.ingest import ingest

    with Progress(TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as p:
        task = p.add_task("videos", total=len(rows), rate="")

        def update(res: dict, done: int, total: int, fps: float) -> None:
            p.update(task, completed=done, rate=f"{fps:6.1f} frames/s across workers")

        return ingest(rows, settings, gallery, workers=0, progress=update, pool=pool)


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title="ingest")
    for col in ("video", "cam", "mod", "frames", "tracklets", "seconds", "status"):
        table.add_column(col, justify="left" if col in ("video", "mod", "status") else "right")
    for v in summary["per_video"]:
        table.add_row(Path(v["path"]).name, str(v["camera"]), v["modality"], str(v["frames"]), str(v["tracklets"]),
                      f"{v['seconds']:.1f}", v["status"] if v["status"] != "failed" else f"failed: {v['error']}")
    table.add_section()
    table.add_row("total", "", "", str(summary["frames"]), str(summary["tracklets"]), f"{summary['seconds']:.1f}",
                  f"{summary['video_seconds'] / max(summary['seconds'], 1e-9):.1f}x real time")
    return table


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to ``app``."""
    app.command("ingest")(ingest_cmd)
