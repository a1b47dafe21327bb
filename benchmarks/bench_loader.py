"""Does the loader keep up with the model? Clips/s from real JPEG files beside the training step's clips/s.

On a generated HITSZ-VCM-layout set of JPEG frames (the synthetic generator, at the config's frame size):

1. the training loader (`build_train_loader`: P x K sampler, decode, augment, collate; pinned memory on CUDA)
   with 0, 1, 2 ... worker processes: clips/s over whole batches, and the first batch's latency (worker
   start-up, paid each epoch since workers are fresh each epoch);
2. JPEG decoding alone, frames/s: PIL (what the workers run) against `torchvision.io.decode_jpeg` on the CPU
   and, with a GPU, batched on the device;
3. the model's training step for the same config (benchmarks/bench_train.py's case, random clips).

    python benchmarks/bench_loader.py                   # demo config (T=4, 128x64), this machine's device
    python benchmarks/bench_loader.py --config paper    # T=6, 256x128 frames
    python benchmarks/bench_loader.py --quick           # fewer batches, no model step
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"demo": (4, 128, 64, 8, 2), "paper": (6, 256, 128, 8, 4)}  # T, H, W, P, K


def make_set(out: Path, ids: int, height: int, width: int) -> Path:
    from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic

    generate_synthetic(out, SynthConfig(ids=ids + 2, train_ids=ids, height=height, width=width, min_frames=12,
                                        max_frames=24, seed=3))
    return out


def loader_rate(root: Path, seq_len: int, height: int, width: int, p: int, k: int, workers: int, batches: int) -> dict:
    """Clips/s of the training loader over ``batches`` batches after the first, and the first batch's latency."""
    from cmft.config import DataConfig
    from cmft.data.datasets.registry import load_dataset
    from cmft.data.loader import build_train_loader

    ds = load_dataset("hitsz_vcm", root, splits=("train",))
    loader = build_train_loader(ds, DataConfig(seq_len=seq_len, height=height, width=width, num_ids=p,
                                               num_instances=k, workers=workers))
    loader.sampler.set_epoch(0)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    t1, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            loader.sampler.set_epoch(n + 1)
            it = iter(loader)
            b = next(it)
        n += 2 * len(b["label"])
    dt = time.perf_counter() - t1
    return {"workers": workers, "first_batch_s": first, "clips_per_s": n / dt, "batches": batches,
            "pinned": loader.pin_memory}


def decode_rates(root: Path, height: int, width: int, frames: int) -> list[tuple[str, float]]:
    """Frames/s of decoding (and resizing to the model's size) ``frames`` JPEG files three ways."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from cmft.data.preprocess import read_frames

    paths = sorted(str(p) for p in root.rglob("*.jpg"))[:frames]
    out = []
    t0 = time.perf_counter()
    read_frames(paths, height, width)
    out.append(("PIL (read_frames, what loader workers run), 1 process", len(paths) / (time.perf_counter() - t0)))
    data = [read_file(p) for p in paths]  # file reading is not decoding: done once for the torchvision rows
    t0 = time.perf_counter()
    imgs = decode_jpeg(data, mode=ImageReadMode.RGB)
    [F.interpolate(i[None].float(), size=(height, width), mode="bilinear") for i in imgs]
    out.append(("torchvision.io.decode_jpeg on the CPU, 1 thread batch", len(paths) / (time.perf_counter() - t0)))
    if torch.cuda.is_available():
        decode_jpeg(data[:8], mode=ImageReadMode.RGB, device="cuda")  # warm-up: nvJPEG handle
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
        [F.interpolate(i[None].float(), size=(height, width), mode="bilinear") for i in imgs]
        torch.cuda.synchronize()
        out.append((f"torchvision.io.decode_jpeg on {torch.cuda.get_device_name()} (nvJPEG, batched)",
                    len(paths) / (time.perf_counter() - t0)))
    return out


def model_rate(config: str, device: str) -> dict | None:
    """The training step's clips/s for the same config (bench_train.py's case, in its own process)."""
    case = f"{config}:fp32:{device}" if device == "cpu" else f"{config}:bf16:{device}"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--case", case, "--steps",
                           "2" if device == "cpu" else "10", "--warmup", "1"], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        print(f"model step failed:\n{proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=list(SHAPES), default="demo")
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="default: 0 1 2 ... up to the CPU count")
    ap.add_argument("--batches", type=int, default=None, help="timed batches per worker count (default 12, quick 4)")
    ap.add_argument("--ids", type=int, default=16, help="identities in the generated set")
    ap.add_argument("--quick", action="store_true", help="fewer batches and frames, no model step")
    a = ap.parse_args()

    import torch

    seq_len, height, width, p, k = SHAPES[a.config]
    cpus = os.cpu_count() or 1
    workers = a.workers or sorted({0, 1, 2, min(4, cpus), min(8, cpus), min(14, cpus)})
    batches = a.batches or (4 if a.quick else 12)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        root = make_set(Path(tmp) / "synth", a.ids, height, width)
        n_jpeg = sum(1 for _ in root.rglob("*.jpg"))
        rows = [loader_rate(root, seq_len, height, width, p, k, w, batches) for w in workers]
        decode = decode_rates(root, height, width, 200 if a.quick else 1000)
    model = None if a.quick else model_rate(a.config, device)

    print(f"\nmachine: {torch.cuda.get_device_name() if device == 'cuda' else f'{cpus} CPU cores'}; torch "
          f"{torch.__version__}; {a.config} clips: T={seq_len}, {height}x{width}, batch {p}x{k}+{p}x{k}; "
          f"{n_jpeg} JPEG frames of {a.ids} identities\n")
    print("| loader workers | pinned memory | first batch (s) | clips/s |")
    print("| ---: | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['workers']} | {r['pinned']} | {r['first_batch_s']:.2f} | {r['clips_per_s']:.1f} |")
    print("\n| JPEG decode + resize | frames/s |")
    print("| --- | ---: |")
    for name, rate in decode:
        print(f"| {name} | {rate:.0f} |")
    if model is not None:
        best = max(rows, key=lambda r: r["clips_per_s"])
        print(f"\nmodel training step ({model['precision']}, {device}): {model['clips_per_s']:.1f} clips/s; the best "
              f"loader ({best['workers']} workers) gives {best['clips_per_s']:.1f} clips/s = "
              f"{best['clips_per_s'] / model['clips_per_s']:.2f}x the model's need")


if __name__ == "__main__":
    main()
