"""The ingest driver: which videos are left, who processes them (a plain loop, or Ray actors), and the one
commit per video that makes the gallery exactly-once.

A video is done when the gallery holds a tracklet of it (its keys start with its crop folder) or the ledger
(``ingested.jsonl`` in the crops folder, written after each commit) lists it, which also covers videos without
tracklets. The driver alone writes: each video's tracklets go into the store in one commit (a kill leaves all
of them or none), then its ledger line. A kill between the two is harmless: the next run finds the tracklets and
skips the video. Workers only read videos and write crops into the video's own folder, which a new attempt
clears first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cmft.ingest.manifest import VideoRow
from cmft.ingest.worker import (
    IngestSettings,
    VideoProcessor,
    failed_result,
    thread_env,
    video_folder,
)

LEDGER = "ingested.jsonl"
Progress = Callable[[dict[str, Any], int, int, float], None]  # (video result, videos done, total, frames/s so far)


class Ledger:
    """The videos finished without a tracklet to show for it (and every other finished one): one JSON line each,
    appended and flushed to disk after the video's commit; a torn last line (a kill mid-write) is ignored."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LEDGER
        self.done: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "video_id" in rec:
                    self.done[rec["video_id"]] = rec

    def add(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[record["video_id"]] = record


def ingest(rows: Sequence[VideoRow], settings: IngestSettings, store: Any, workers: int = 1, address: str | None = None,
           progress: Progress | None = None, pool: RayWorkers | None = None) -> dict[str, Any]:
    """Process every video of ``rows`` not yet in ``store`` and commit each one's tracklets: on ``pool`` (Ray
    actors started by the caller), else on ``workers`` new Ray actors (``0``: in this process, no Ray). Returns the
    summary of the public interface (``videos``, ``failed``, ``tracklets``, ``frames``, ``seconds``,
    ``per_video``)."""
    from cmft.search.indexing import commit_items

    t0 = time.perf_counter()
    ledger = Ledger(settings.crops)
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for r in rows:
        present = store.count_prefix(str(video_folder(settings, r)) + os.sep)
        if present or r.video_id in ledger.done:
            results[r.row] = {**r.as_dict(), "frames": 0, "tracklets": 0, "seconds": 0.0, "status": "skipped",
                              "video_seconds": 0.0}
        else:
            todo.append(r)
    frames_done = 0

    def finish(res: dict[str, Any]) -> None:
        nonlocal frames_done
        items, emb = res.pop("items"), res.pop("embeddings")
        if res["status"] == "ok":
            try:
                added = commit_items(store, emb, items) if items else []
            except Exception as e:  # noqa: BLE001 - the store refused this video: report it, go on
                res.update(status="failed", error=f"commit to the gallery failed: {e}")
            else:
                res["tracklets"] = len(added)
                ledger.add({"video_id": res["video_id"], "path": res["path"], "camera": res["camera"],
                            "modality": res["modality"], "start": res["start"], "frames": res["frames"],
                            "tracklets": len(items), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        if res["status"] == "failed":
            res["tracklets"] = 0
        frames_done += res["frames"]
        row = next(r.row for r in todo if r.video_id == res["video_id"])
        results[row] = {k: v for k, v in res.items() if k != "video_id"}
        if progress is not None:
            progress(results[row], len(results), len(rows), frames_done / max(time.perf_counter() - t0, 1e-9))

    if pool is not None:
        for res in pool.run(todo):
            finish(res)
    elif workers == 0:
        for res in _plain(todo, settings):
            finish(res)
    elif todo:
        own = RayWorkers(settings, min(workers, len(todo)), address)
        try:
            for res in own.run(todo):
                finish(res)
        finally:
            own.close()
    per_video = [results[r.row] for r in rows]
    failed = [v for v in per_video if v["status"] == "failed"]
    return {
        "videos": len(rows), "failed": len(failed), "failed_videos": [{"path": v["path"], "error": v["error"]} for v in failed],
        "tracklets": sum(v["tracklets"] for v in per_video if v["status"] == "ok"),
        "frames": sum(v["frames"] for v in per_video), "seconds": time.perf_counter() - t0,
        "video_seconds": sum(v.get("video_seconds", 0.0) for v in per_video),
        "workers": len(pool.actors) if pool is not None else workers,
        "per_video": [{k: v.get(k) for k in ("path", "camera", "modality", "frames", "tracklets", "seconds", "status")}
                      | ({"error": v["error"]} if v["status"] == "failed" else {}) for v in per_video],
    }


def _plain(todo: Sequence[VideoRow], settings: IngestSettings) -> Iterator[dict[str, Any]]:
    """The videos one after another in this process."""
    if not todo:
        return
    processor = VideoProcessor(settings)
    for row in todo:
        yield processor.process(row)


class RayWorkers:
    """``workers`` Ray actors, each a :class:`VideoProcessor`. A local Ray is started (and stopped by :meth:`close`)
    unless ``address`` joins a running cluster; each actor asks for ``settings.threads`` CPUs and, on CUDA, its share
    of the GPUs, so the scheduler spreads actors over the nodes that have them. The actors start loading their
    model at once: create this early and the start-up overlaps the driver's own."""

    def __init__(self, settings: IngestSettings, workers: int, address: str | None = None) -> None:
        for var in ("RAY_task_events_report_interval_ms", "RAY_enable_metrics_collection", "RAY_event_stats"):
            os.environ.setdefault(var, "0")  # read by Ray at import: no task history or metrics to collect here
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise RuntimeError("Ray is not installed: pip install 'cmft[ingest]', or run with --workers 0 (no Ray)") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            local = {} if address else {"num_cpus": max(os.cpu_count() or 1, workers * settings.threads)}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, **local)
        try:
            gpus = ray.cluster_resources().get("GPU", 0) if settings.device.startswith("cuda") else 0
            if settings.device.startswith("cuda") and not gpus:
                raise RuntimeError("--device cuda: the Ray cluster has no GPU")
            self.settings = settings
            # the thread caps must be in each actor's environment before it imports anything. A local Ray's workers
            # inherit this process's environment (`cmft ingest` sets them first), so they need no runtime
            # environment, which would keep Ray from reusing its pre-started workers; a cluster's workers get one.
            env = thread_env(settings.threads)
            inherited = not address and all(os.environ.get(k) == v for k, v in env.items())
            self.actor_class = ray.remote(num_cpus=settings.threads, num_gpus=min(1.0, gpus / workers) if gpus else 0,
                                          **({} if inherited else {"runtime_env": {"env_vars": env}}))(_Actor)
            self.actors = [self.actor_class.remote(settings) for _ in range(workers)]
        except BaseException:
            self.close()
            raise

    def run(self, todo: Sequence[VideoRow]) -> Iterator[dict[str, Any]]:
        """The results of ``todo``, as they finish, longest videos first (the last to finish is then a short one).
        A worker that dies (killed, out of memory) fails its video by name and is replaced; the rest carries on."""
        ray = self.ray
        queue = sorted(todo, key=_size, reverse=True)
        idle, running = list(self.actors), {}
        while queue or running:
            while queue and idle:
                actor, row = idle.pop(), queue.pop(0)
                running[actor.process.remote(row)] = (actor, row)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, row = running.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as e:  # the actor is gone: this video fails, a fresh actor takes its place
                self.actors.remove(actor)
                actor = self.actor_class.remote(self.settings)
                self.actors.append(actor)
                yield failed_result(row, f"the worker processing it died: {str(e).strip().splitlines()[0][:300]}")
            idle.append(actor)

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def _size(row: VideoRow) -> int:
    """A video's bytes on disk (a frame folder's files together): the cost estimate that orders the work."""
    try:
        return row.path.stat().st_size if row.path.is_file() else sum(f.stat().st_size for f in row.path.iterdir())
    except OSError:
        return 0


class _Actor:
    """A Ray actor around one :class:`VideoProcessor` (the model and detector load once per actor)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.processor = VideoProcessor(settings)

    def process(self, row: VideoRow) -> dict[str, Any]:
        return self.processor.process(row)
