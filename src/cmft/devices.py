"""Where computation runs: the one device resolver of the package, and the switch to exact, repeatable kernels."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; otherwise the named device, refused with a clear message when it
    is a GPU this machine does not have."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Exact, repeatable kernels while inside (``train.deterministic``): ``torch.use_deterministic_algorithms``,
    cuDNN deterministic and not benchmarking, and cuBLAS's fixed workspace. CPU kernels are deterministic
    already; on CUDA the CCF picks its deterministic pooling and attention paths by this switch. The previous
    settings come back on exit. ``CUBLAS_WORKSPACE_CONFIG`` is read when CUDA starts: it is set here (unless
    the environment sets it) for a process that has not used CUDA yet."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              cudnn.deterministic, cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]
