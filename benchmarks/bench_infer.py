"""Benchmark the embedding in eager PyTorch against its ONNX export in ONNX Runtime, on the same inputs.

    python benchmarks/bench_infer.py            # cmft_r18 at 128x64, T=4 and cmft_r50 at 256x128, T=6; updates BENCHMARKS.md
    python benchmarks/bench_infer.py --quick    # cmft_r18 only, fewer repeats, prints only

Random-init weights (``create_model(..., pretrained=None)``: no download); the RGB stream's embedding, which
costs the same as the IR one. Eager is what the Extractor runs: ``model.embed`` then L2 normalisation, under
``torch.inference_mode``. ONNX Runtime runs the file ``cmft export`` writes (dynamo exporter, opset 18).
Each measurement: warm-up runs, then the best of N runs of one batch; clips/s = batch / best time.
On a CUDA machine it adds eager fp32, eager bf16 autocast and, when this onnxruntime has it, the CUDA provider
(``session.run`` with NumPy arrays, so host <-> device copies are included there).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from cmft.inference.export import export_onnx, random_clips
from cmft.models.registry import create_model

from markdown_section import write_section  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[1]
CASES = [("cmft_r18", 128, 64, 4), ("cmft_r50", 256, 128, 6)]  # (model, H, W, T)


def best_of(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Best and median seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (f"{os.cpu_count()} CPUs ({cpu}){gpu}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"onnxruntime {ort.__version__} (providers {', '.join(ort.get_available_providers())}), "
            f"Python {platform.python_version()}")


def row(name: str, h: int, w: int, t: int, b: int, runtime: str, best: float, median: float, base: float | None,
        diff: float | None) -> str:
    ratio = "1.00x" if base is None else f"**{base / best:.2f}x**"
    return (f"| {name} | {t}x{h}x{w} | {b} | {runtime} | {b / best:.2f} | {1000 * best:.1f} | {1000 * median:.1f} | "
            f"{ratio} | {'-' if diff is None else f'{diff:.1e}'} |")


def bench_case(name: str, h: int, w: int, t: int, batches: list[int], repeats: int, warmup: int,
               tmp: Path) -> tuple[list[str], str]:
    torch.manual_seed(0)
    model = create_model(name, pretrained=None).eval()
    t0 = time.perf_counter()
    path = tmp / f"{name}.onnx"
    export_onnx(model, path, "rgb", height=h, width=w, seq_len=t)
    export_s = time.perf_counter() - t0
    cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cuda = None
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        cuda = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    rows = []
    for b in batches:
        clips = random_clips(b, t, h, w, seed=b)
        x = clips.numpy()

        def eager(m: torch.nn.Module = model, c: torch.Tensor = clips, amp: bool = False) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=amp):
                return F.normalize(m.embed(c, "rgb").float(), dim=1)

        ref = eager().numpy()
        e = best_of(eager, repeats, warmup)
        o = best_of(lambda: cpu.run(None, {"clips": x}), repeats, warmup)
        rows.append(row(name, h, w, t, b, "eager PyTorch fp32, CPU", *e, None, None))
        rows.append(row(name, h, w, t, b, "ONNX Runtime, CPU", *o, e[0], float(np.abs(cpu.run(None, {"clips": x})[0] - ref).max())))
        print(*rows[-2:], sep="\n", flush=True)
        if torch.cuda.is_available():
            gpu, gclips, sync = model.to("cuda"), clips.to("cuda"), torch.cuda.synchronize
            f = best_of(lambda: eager(gpu, gclips), repeats, warmup, sync)
            bf = best_of(lambda: eager(gpu, gclips, True), repeats, warmup, sync)
            rows.append(row(name, h, w, t, b, "eager PyTorch fp32, CUDA", *f, None,
                            float(np.abs(eager(gpu, gclips).cpu().numpy() - ref).max())))
            rows.append(row(name, h, w, t, b, "eager PyTorch bf16 autocast, CUDA", *bf, f[0],
                            float(np.abs(eager(gpu, gclips, True).cpu().numpy() - ref).max())))
            n = 2
            if cuda is not None:  # NumPy in and out: the host <-> device copies are in the time
                c = best_of(lambda: cuda.run(None, {"clips": x}), repeats, warmup)
                rows.append(row(name, h, w, t, b, "ONNX Runtime, CUDA provider", *c, f[0],
                                float(np.abs(cuda.run(None, {"clips": x})[0] - ref).max())))
                n = 3
            model.to("cpu")
            print(*rows[-n:], sep="\n", flush=True)
    return rows, f"{name} {export_s:.1f} s ({path.stat().st_size / 2**20:.0f} MB file)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="cmft_r18 only, fewer repeats, print only")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (the best is reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    args = ap.parse_args()
    cases = CASES[:1] if args.quick else CASES
    repeats = 2 if args.quick else args.repeats
    load_before = os.getloadavg()[0]
    header = ["| model | clip (T x H x W) | batch | runtime | clips/s | best ms | median ms | speed vs eager fp32 "
              "(same device) | max abs diff vs eager CPU |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    print("\n".join(header), flush=True)
    rows, exports = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, h, w, t in cases:
            r, e = bench_case(name, h, w, t, [8, 1], repeats, args.warmup, Path(tmp))
            rows += r
            exports.append(e)
    load_after = os.getloadavg()[0]
    lines = [f"Command: `python benchmarks/bench_infer.py` (date {time.strftime('%Y-%m-%d')}). Machine: {machine()}. "
             f"1-min load average {load_before:.1f} at the start and {load_after:.1f} at the end (other jobs may share "
             "the CPUs; the best of several runs is the least disturbed).", "",
             "RGB-stream embedding of random-init models (`create_model(name, pretrained=None)`), the same random "
             f"normalised clips for every runtime; {args.warmup} warm-up runs, then the best of {repeats} runs of one batch "
             "(clips/s = batch / best time). Eager: `model.embed` + L2 normalisation under `torch.inference_mode` "
             "(what the Extractor runs); ORT: the ONNX file `cmft export` writes (dynamo exporter, opset 18, dynamic "
             "batch and clip length), default session options.", "", *header, *rows, "",
             "ONNX export time (dynamo exporter, `export_onnx`): " + "; ".join(exports) + "."]
    if not torch.cuda.is_available():
        lines += ["", "No GPU on this machine: the CUDA rows (eager fp32, eager bf16 autocast, ONNX Runtime's CUDA "
                  "provider when installed) appear when the same command runs on a CUDA machine."]
    print("\n".join(lines[-3:]))
    if args.quick:
        return
    path = write_section("bench_infer", "## Embedding inference: eager PyTorch vs ONNX Runtime (`benchmarks/bench_infer.py`)\n\n" + "\n".join(lines))
    print(f"updated {path}")


if __name__ == "__main__":
    main()
