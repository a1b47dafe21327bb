"""`cmft serve` under load: a real server process on 127.0.0.1 over an index of N tracklets, driven by concurrent
clients for a fixed time with a mix of /search, /search/upload, /tracklets pages and thumbnails (plus a few
deliberately bad requests); throughput, p50 / p99 latency per endpoint, unexpected errors, and the server's
resident memory before and after.

    python benchmarks/bench_serve.py                       # 10,000 tracklets, 4 clients, 60 s; writes BENCHMARKS.md
    python benchmarks/bench_serve.py --entries 300 --seconds 5 --clients 2 --no-write   # the short version

The index holds random unit embeddings of the width of a randomly initialised cmft_r18 checkpoint (also written
here), so uploads run the real extractor and searches rank a gallery of the stated size.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def build_index(folder: Path, entries: int, seed: int = 0) -> Path:
    """An index folder of ``entries`` tracklets (random unit embeddings, real thumbnails and frames on disk) and
    the randomly initialised cmft_r18 checkpoint that embeds uploads into the same space."""
    import torch
    from PIL import Image

    from cmft.config import load_config
    from cmft.engine.checkpoint import save_checkpoint
    from cmft.models.registry import create_model
    from cmft.search.store import GalleryStore

    folder.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, ["model.name=cmft_r18", "data.height=64", "data.width=32", "eval.seq_len=3",
                             "model.args.last_stride=2"])
    torch.manual_seed(seed)
    model = create_model("cmft_r18", num_classes=10, **cfg.model.args.overrides())
    ckpt = folder / "model.pt"
    save_checkpoint(ckpt, {"config": cfg.to_dict(), "model_name": "cmft_r18", "model_args": model.args, "num_classes": 10,
                           "epoch": 0, "model": model.state_dict()})
    dim = int(model.neck_rgb.bn.num_features)
    rng = np.random.default_rng(seed)
    thumbs = folder / "index" / "thumbs"  # thumbnails live in the index's own thumbs folder
    thumbs.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(8):  # a few real files the entries point at
        img = Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8))
        img.save(thumbs / f"t{i}.jpg")
        frames.append(str(thumbs / f"t{i}.jpg"))
    emb = rng.standard_normal((entries, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = [{"key": f"bench/{i}", "camera": int(i % 6) + 1, "modality": "rgb" if i % 2 else "ir", "pid": int(i // 4),
             "source": "bench", "frames": frames[:3], "thumbnail": f"thumbs/t{i % 8}.jpg", "time": None}
            for i in range(entries)]
    with GalleryStore.create(folder / "index", dim, meta={"checkpoint": str(ckpt), "model": "cmft_r18"}) as index:
        index.add(emb, rows)
    return folder / "index"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run(index: Path, clients: int, seconds: float, seed: int = 0) -> dict[str, Any]:
    """Start ``cmft serve`` on ``index``, drive it, stop it; returns the measurements."""
    import httpx
    from PIL import Image

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cmft", "serve", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                health = httpx.get(base + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"cmft serve did not start: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        n = health["entries"]
        from cmft.search.store import GalleryStore

        ids = sorted(e["id"] for e in GalleryStore(index, readonly=True).entries())  # ids come from keys
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
        frame = buf.getvalue()
        with httpx.Client(base_url=base, timeout=60) as c:  # warm-up: the extractor loads on the first upload
            c.post("/search/upload", files=[("frames", ("a.png", frame, "image/png"))], data={"modality": "ir"})
            c.post("/search", json={"id": ids[0], "k": 10})
        rss_before = _rss(server.pid)
        lat: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        bad_ok: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        stop = time.time() + seconds

        exceptions: dict[str, int] = defaultdict(int)  # a request that raised in the client (refused, reset, timeout)
        server_errors: dict[str, int] = defaultdict(int)  # answers with a 5xx status

        def client(k: int) -> None:
            rng = random.Random(seed + k)
            with httpx.Client(base_url=base, timeout=60) as c:
                while time.time() < stop:
                    try:
                        one(c, rng)
                    except Exception as e:  # noqa: BLE001 - every failure is counted and the client goes on
                        with lock:
                            exceptions[type(e).__name__] += 1

        def one(c: Any, rng: random.Random) -> None:
            pick = rng.random()
            t0 = time.perf_counter()
            if pick < 0.45:
                name, r = "/search", c.post("/search", json={"id": rng.choice(ids), "k": 10,
                                                              **({"cameras": [1, 2]} if rng.random() < 0.3 else {})})
            elif pick < 0.60:
                name, r = "/search/upload", c.post("/search/upload", data={"modality": rng.choice(["ir", "rgb"]), "k": "10"},
                                                   files=[("frames", (f"f{i}.png", frame, "image/png")) for i in range(3)])
            elif pick < 0.80:
                name, r = "/tracklets", c.get("/tracklets", params={"offset": rng.randrange(n), "limit": 50,
                                                                    "modality": rng.choice(["ir", "rgb"])})
            elif pick < 0.97:
                name, r = "/tracklets/{id}/thumbnail", c.get(f"/tracklets/{rng.choice(ids)}/thumbnail")
            else:  # deliberate bad requests: an unknown id, a text file as a frame
                if rng.random() < 0.5:
                    name, r, want = "bad: unknown id", c.post("/search", json={"id": n + 5}), 404  # ids of a store are >= 2^52
                else:
                    name, r, want = "bad: text upload", c.post("/search/upload", data={"modality": "ir"},
                                                              files=[("frames", ("x.txt", b"hello", "text/plain"))]), 415
                with lock:
                    if r.status_code == want:
                        bad_ok[name] += 1
                    else:
                        errors[name] += 1
                    if r.status_code >= 500:
                        server_errors[name] += 1
                return
            dt = time.perf_counter() - t0
            with lock:
                if r.status_code == 200:
                    lat[name].append(dt)
                else:
                    errors[name] += 1
                if r.status_code >= 500:
                    server_errors[name] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        t_start = time.perf_counter()
        for t in threads:
            t.start()
        rss_curve = []  # (seconds, requests so far, RSS): does memory level off as requests go on?
        while any(t.is_alive() for t in threads):
            time.sleep(min(10.0, max(seconds / 12, 0.5)))
            with lock:
                done = sum(len(v) for v in lat.values())
            rss_curve.append((time.perf_counter() - t_start, done, _rss(server.pid) / 2**20))
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t_start
        rss_after = _rss(server.pid)
        try:  # the server outlived the load: still running and still answering
            alive = server.poll() is None and httpx.get(base + "/health", timeout=10).json()["entries"] == n
        except httpx.HTTPError:
            alive = False
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = sum(len(v) for v in lat.values())
    return {
        "entries": n, "clients": clients, "seconds": elapsed, "requests": total, "throughput": total / elapsed,
        "endpoints": {k: {"count": len(v), "p50_ms": 1e3 * float(np.percentile(v, 50)), "p99_ms": 1e3 * float(np.percentile(v, 99))}
                      for k, v in sorted(lat.items())},
        "unexpected_errors": dict(errors), "deliberate_bad_answered_right": dict(bad_ok),
        "client_exceptions": dict(exceptions), "server_errors_5xx": dict(server_errors), "server_alive_at_end": alive,
        "rss_before_mb": rss_before / 2**20, "rss_after_mb": rss_after / 2**20,
        "rss_curve": [{"s": round(s, 1), "requests": n, "rss_mb": round(m, 1)} for s, n, m in rss_curve],
    }


def markdown(r: dict[str, Any], argv: str) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "cpu")
    lines = [f"`python benchmarks/bench_serve.py {argv}`: `cmft serve` (one uvicorn worker) over {r['entries']:,} tracklets "
             f"on 127.0.0.1, {r['clients']} concurrent clients for {r['seconds']:.0f} s; {cpu}, {os.cpu_count()} cores "
             f"(clients and server share them); {datetime.date.today()}.", "",
             "| endpoint | requests | p50 (ms) | p99 (ms) |", "| --- | ---: | ---: | ---: |"]
    for name, e in r["endpoints"].items():
        lines.append(f"| {name} | {e['count']:,} | {e['p50_ms']:.1f} | {e['p99_ms']:.1f} |")
    lines += ["", f"Throughput {r['throughput']:.1f} requests/s; unexpected errors: {sum(r['unexpected_errors'].values())} "
              f"({sum(r['server_errors_5xx'].values())} of them 5xx), client exceptions: {sum(r['client_exceptions'].values())}, "
              f"server {'alive and answering' if r['server_alive_at_end'] else 'NOT answering'} at the end; "
              f"deliberate bad requests answered with the right 4xx: {sum(r['deliberate_bad_answered_right'].values())}; "
              f"server resident memory {r['rss_before_mb']:.0f} MiB after warm-up, {r['rss_after_mb']:.0f} MiB after the run.", "",
              "Resident memory as the requests go on: " + ", ".join(f"{c['requests']:,} requests: {c['rss_mb']:.0f} MiB"
                                                                    for c in r["rss_curve"]) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", type=Path, default=Path("out/bench_serve"))
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    index = build_index(a.out / f"n{a.entries}", a.entries)
    r = run(index, a.clients, a.seconds)
    print("RESULT " + json.dumps(r))
    md = markdown(r, " ".join(sys.argv[1:]))
    print(md)
    if not a.no_write:
        from markdown_section import write_section  # beside this script

        write_section("bench_serve", "## Search service under load (`benchmarks/bench_serve.py`)\n\n" + md)


if __name__ == "__main__":
    main()
