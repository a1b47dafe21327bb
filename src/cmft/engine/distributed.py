"""DistributedDataParallel plumbing for ``torchrun``: NCCL on GPUs, gloo on CPUs; one process per device."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world size 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return DistInfo(rank, world, local)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def ranks_where(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> list[int]:
    """The ranks on which ``flag`` is true, the same list on every rank: one small tensor all-reduce (a sum of
    one-hot rows), cheap enough for every training step, unlike a pickled broadcast of rank 0's value alone."""
    if not info.enabled:
        return [0] if flag else []
    box = torch.zeros(info.world_size, dtype=torch.int32, device=device)
    box[info.rank] = int(flag)
    dist.all_reduce(box)
    return [r for r in range(info.world_size) if box[r]]


def every_rank(obj: object, info: DistInfo) -> list:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(items: list, info: DistInfo) -> list:
    """This rank's share of a list: items ``rank, rank + world, ...``."""
    return items[info.rank :: info.world_size]


def gather_shards(part: torch.Tensor, total: int, info: DistInfo) -> torch.Tensor:
    """Reassemble, in the original order, the rows each rank computed for its :func:`shard`."""
    if not info.enabled:
        return part
    parts: list = [None] * info.world_size
    dist.all_gather_object(parts, part.cpu())
    out = torch.empty((total, *part.shape[1:]), dtype=part.dtype)
    for r, p in enumerate(parts):
        out[r :: info.world_size] = p
    return out


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
