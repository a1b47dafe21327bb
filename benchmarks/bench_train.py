"""Training-step throughput and peak memory: the CPU demo config and the paper config, fp32 vs AMP vs compiled.

Each case runs in its own process (so peak memory is that case's alone): build the model of the
config, an optimiser and the objective, then time full training steps (forward, both stages' losses,
backward, optimiser step) on random clips of the config's shape. Data loading is excluded: it is
measured by benchmarks/bench_loader.py. Ratios are against fp32 of the same config.

A case is a precision with optional levers joined by ``+``: ``bf16``, ``bf16+compile`` (torch.compile of the
model, Inductor; its compile time is the first step's excess over a timed step), ``fp32+nofused`` (the
per-tensor optimiser loop instead of the fused kernel, which is the CUDA default), ``bf16+nochannels_last``,
``bf16+deterministic`` (what ``train.deterministic`` costs).

Frames/s counts every frame of both modalities. Achieved TFLOP/s = 3 x the forward FLOPs (forward plus a
backward of twice its cost) x 2 (fvcore counts a multiply-add as one) x clips/s, with the forward counted by
``cmft profile``'s counter on one clip pair; "of peak" divides by the chip's dense tensor peak for the
precision (``--peak-tflops`` overrides it; none on a CPU).

    python benchmarks/bench_train.py                                  # both configs on this machine's device
    python benchmarks/bench_train.py --configs demo                   # the CPU demo config only
    python benchmarks/bench_train.py --cases fp32 bf16 bf16+compile   # choose the cases
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "demo": "package:demo_cpu.yaml",
    "paper": str(ROOT / "configs" / "hitsz_vcm" / "cmft_r50.yaml"),
}


def _config_path(name: str) -> Path:
    spec = CONFIGS[name]
    if spec.startswith("package:"):
        return Path(str(resources.files("cmft") / "configs" / spec.split(":", 1)[1]))
    return Path(spec)


# dense tensor-core peak (TFLOP/s) by precision, from the vendors' data sheets (SXM parts)
PEAKS = {"H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9}, "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
         "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}}


def train_flops_per_pair(cfg, args: dict) -> float:
    """FLOPs of one training step per clip pair: 2 x 3 x fvcore's forward count (multiply-adds) of one pair."""
    import torch

    from cmft.models import create_model
    from cmft.models.profile import count_flops

    model = create_model(cfg.model.name, num_classes=500, **args)
    clip = torch.randn(1, cfg.data.seq_len, 3, cfg.data.height, cfg.data.width)
    return 6.0 * count_flops(model, clip, clip.clone())[""]


def run_case(config: str, case: str, steps: int, warmup: int, device: str, overrides: list[str]) -> dict:
    """Time ``steps`` training steps after ``warmup`` untimed ones; returns one result row."""
    import torch

    from cmft.config import load_config
    from cmft.engine.optim import build_optimizer
    from cmft.engine.trainer import autocast_dtype
    from cmft.losses.objective import Objective
    from cmft.models import create_model

    precision, *levers = case.split("+")
    unknown = set(levers) - {"compile", "nofused", "nochannels_last", "deterministic"}
    if unknown:
        raise SystemExit(f"unknown lever(s) {sorted(unknown)} in case {case!r}: use compile, nofused, nochannels_last, "
                         "deterministic")
    if "deterministic" in levers:  # train.deterministic's kernels, for the whole case (the process ends after it)
        from cmft.devices import deterministic_algorithms

        deterministic_algorithms(True).__enter__()
    torch.manual_seed(0)
    cfg = load_config(_config_path(config), [f"train.amp={precision}", *overrides,
                                             *(["optim.fused=false"] if "nofused" in levers else [])])
    args = {k: v for k, v in cfg.model.args.overrides().items() if k != "pretrained"}  # random init: no download
    dev = torch.device(device)
    model = create_model(cfg.model.name, num_classes=500, **args).to(dev)
    if "nochannels_last" not in levers:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = build_optimizer(model, cfg.optim)
    forward = torch.compile(model) if "compile" in levers else model
    objective = Objective(cfg.loss)
    dtype = autocast_dtype(cfg.train.amp, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    n = cfg.data.num_ids * cfg.data.num_instances
    shape = (n, cfg.data.seq_len, 3, cfg.data.height, cfg.data.width)
    rgb, ir = torch.randn(shape, device=dev), torch.randn(shape, device=dev)
    labels = torch.arange(cfg.data.num_ids, device=dev).repeat_interleave(cfg.data.num_instances)

    def step(stage: int) -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = forward(rgb=rgb, ir=ir)
        loss, _ = objective(out, labels, stage)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    first = time.perf_counter()
    for i in range(max(warmup, 2 if "compile" in levers else 0)):  # both stages' graphs before timing
        step(1 + i % 2)
        sync()
        if i == 0:
            first = time.perf_counter() - first
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        step(1 + i % 2)  # alternate the two stages' objectives
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    flops = train_flops_per_pair(cfg, args) * n / dt
    return {
        "config": config, "model": cfg.model.name, "precision": case, "device": device,
        "clip": f"{cfg.data.seq_len}x{cfg.data.height}x{cfg.data.width}", "batch": f"{n}+{n} clips",
        "step_s": dt, "clips_per_s": 2 * n / dt, "frames_per_s": 2 * n * cfg.data.seq_len / dt,
        "tflops": flops / 1e12, "first_step_s": first, "compile_s": max(first - dt, 0.0) if "compile" in levers else None,
        "peak_mem_gib": peak / 2**30, "peak_kind": "CUDA allocated" if dev.type == "cuda" else "process max RSS",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--cases", "--precisions", nargs="+", default=None,
                    help="precision[+compile][+nofused][+nochannels_last] (default: fp32 bf16, and on CUDA also "
                         "bf16+compile bf16+nofused)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense peak for the share-of-peak column")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 4 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--paper-ids", type=int, default=None,
                    help="identities per batch for the paper config (default: its 8 on CUDA, 2 on CPU, where 8x4x2 clips of 6 frames at 256x128 exceed 24 GiB)")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and print its JSON
    a = ap.parse_args()
    if a.case:
        config, precision, device, *overrides = a.case.split(":")
        print(json.dumps(run_case(config, precision, a.steps, a.warmup, device, overrides)))
        return

    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precisions = a.cases or (["fp32", "bf16", "bf16+compile", "bf16+nofused"] if device == "cuda" else ["fp32", "bf16"])
    steps = a.steps or (20 if device == "cuda" else 4)
    rows = []
    for config in a.configs:
        for precision in precisions:
            paper_ids = a.paper_ids or (8 if device == "cuda" else 2)
            extra = f":data.num_ids={paper_ids}" if config == "paper" else ""
            cmd = [sys.executable, __file__, "--case", f"{config}:{precision}:{device}{extra}", "--steps", str(steps), "--warmup", str(a.warmup)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if proc.returncode != 0:
                print(f"{config} {precision}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{config:>6} {precision:>5}: {rows[-1]['step_s']:.3f} s/step", file=sys.stderr)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), platform.processor())
    where = torch.cuda.get_device_name() if device == "cuda" else f"{cpu}, {os.cpu_count()} cores"
    print(f"\nmachine: {where}; torch {torch.__version__}; {steps} timed steps after {a.warmup} warm-up\n")
    print("| config | model | clip (T x H x W) | batch | case | s/step | clips/s | frames/s | TFLOP/s | of peak | "
          "vs fp32 | compile s | peak memory |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        base = next((b for b in rows if b["config"] == r["config"] and b["precision"] == "fp32"), None)
        ratio = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        peak = a.peak_tflops or _peak(where, r["precision"].split("+")[0]) if device == "cuda" else a.peak_tflops
        share = f"{100 * r['tflops'] / peak:.1f} %" if peak else "-"
        comp = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else "-"
        print(f"| {r['config']} | {r['model']} | {r['clip']} | {r['batch']} | {r['precision']} | {r['step_s']:.3f} | "
              f"{r['clips_per_s']:.1f} | {r['frames_per_s']:.0f} | {r['tflops']:.2f} | {share} | {ratio} | {comp} | "
              f"{r['peak_mem_gib']:.2f} GiB ({r['peak_kind']}) |")


def _peak(device_name: str, precision: str) -> float | None:
    """The dense peak of a known chip for a precision (``None`` when the chip is not in :data:`PEAKS`)."""
    chip = next((c for c in PEAKS if c in device_name), None)
    return PEAKS[chip].get(precision) if chip else None


if __name__ == "__main__":
    main()
