"""The per-step cost of the divergence check under DDP: the tensor all-reduce cmft uses (every rank's flag) against
the pickled broadcast of rank 0's flag it replaced, two gloo processes on this machine, side by side.

    python benchmarks/bench_ddp_flag.py            # 2,000 checks each, 3 rounds; writes the bench_ddp_flag section
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from markdown_section import write_section  # noqa: E402  (beside this script)


def _worker(rank: int, world: int, init: str, n: int, rounds: int, out: dict) -> None:
    from cmft.engine.distributed import DistInfo, ranks_where

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    info = DistInfo(rank, world, rank)
    times: dict[str, list[float]] = {"all_reduce": [], "broadcast_object": []}
    for _ in range(rounds):
        for name in times:
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(n):
                if name == "all_reduce":
                    ranks_where(False, info)
                else:
                    box = [False]
                    dist.broadcast_object_list(box, src=0)
            times[name].append((time.perf_counter() - t0) / n)
    if rank == 0:
        out.update({k: min(v) for k, v in times.items()})
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, os.path.join(tmp, "init"), a.checks, a.rounds, out), nprocs=2, join=True)
        res = dict(out)
    us = {k: 1e6 * v for k, v in res.items()}
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = (f"`python benchmarks/bench_ddp_flag.py` on {cpu}, {os.cpu_count()} cores, 2 gloo processes, torch "
            f"{torch.__version__}, {datetime.date.today()}; best of {a.rounds} rounds of {a.checks} checks.\n\n"
            "| divergence check per training step | µs per step |\n| --- | ---: |\n"
            f"| every rank's flag, one int32 tensor all-reduce (`cmft.engine.distributed.ranks_where`, used now) | {us['all_reduce']:.0f} |\n"
            f"| rank 0's flag, pickled `broadcast_object_list` (before) | {us['broadcast_object']:.0f} |\n\n"
            f"The all-reduce is {us['broadcast_object'] / us['all_reduce']:.1f}x cheaper and also sees a NaN on any rank.")
    print(text)
    if not a.no_write:
        write_section("bench_ddp_flag", "## DDP divergence check (`benchmarks/bench_ddp_flag.py`)\n\n" + text)


if __name__ == "__main__":
    main()
