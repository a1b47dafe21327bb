"""Training-step throughput and peak memory: the CPU demo config and the paper config, fp32 vs AMP side by side.

Each case runs in its own process (so peak memory is that case's alone): build the model of the
config, an optimiser and the objective, then time full training steps (forward, both stages' losses,
backward, optimiser step) on random clips of the config's shape. Data loading is excluded: it is
measured by the loader, not here. Ratios are against fp32 of the same config.

    python benchmarks/bench_train.py                 # both configs on this machine's device
    python benchmarks/bench_train.py --configs demo  # the CPU demo config only
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


def run_case(config: str, precision: str, steps: int, warmup: int, device: str, overrides: list[str]) -> dict:
    """Time ``steps`` training steps after ``warmup`` untimed ones; returns one result row."""
    import torch

    from cmft.config import load_config
    from cmft.engine.optim import build_optimizer
    from cmft.engine.trainer import autocast_dtype
    from cmft.losses.objective import Objective
    from cmft.models import create_model

    torch.manual_seed(0)
    cfg = load_config(_config_path(config), [f"train.amp={precision}", *overrides])
    args = {k: v for k, v in cfg.model.args.overrides().items() if k != "pretrained"}  # random init: no download
    dev = torch.device(device)
    model = create_model(cfg.model.name, num_classes=500, **args).to(dev).to(memory_format=torch.channels_last)
    model.train()
    opt = build_optimizer(model, cfg.optim)
    objective = Objective(cfg.loss)
    dtype = autocast_dtype(cfg.train.amp, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    n = cfg.data.num_ids * cfg.data.num_instances
    shape = (n, cfg.data.seq_len, 3, cfg.data.height, cfg.data.width)
    rgb, ir = torch.randn(shape, device=dev), torch.randn(shape, device=dev)
    labels = torch.arange(cfg.data.num_ids, device=dev).repeat_interleave(cfg.data.num_instances)

    def step(stage: int) -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(rgb=rgb, ir=ir)
        loss, _ = objective(out, labels, stage)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for i in range(warmup):
        step(1 + i % 2)
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
    return {
        "config": config, "model": cfg.model.name, "precision": precision, "device": device,
        "clip": f"{cfg.data.seq_len}x{cfg.data.height}x{cfg.data.width}", "batch": f"{n}+{n} clips",
        "step_s": dt, "clips_per_s": 2 * n / dt, "peak_mem_gib": peak / 2**30,
        "peak_kind": "CUDA allocated" if dev.type == "cuda" else "process max RSS",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--precisions", nargs="+", default=None, help="default: fp32 bf16 (+ fp16 on CUDA)")
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
    precisions = a.precisions or (["fp32", "bf16", "fp16"] if device == "cuda" else ["fp32", "bf16"])
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
    print("| config | model | clip (T x H x W) | batch | precision | s/step | clips/s | vs fp32 | peak memory |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        base = next((b for b in rows if b["config"] == r["config"] and b["precision"] == "fp32"), None)
        ratio = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        print(f"| {r['config']} | {r['model']} | {r['clip']} | {r['batch']} | {r['precision']} | {r['step_s']:.3f} | "
              f"{r['clips_per_s']:.1f} | {ratio} | {r['peak_mem_gib']:.2f} GiB ({r['peak_kind']}) |")


if __name__ == "__main__":
    main()
