"""The cross-modality cross-scale fusion block (CCF, paper §3.3.2, eq. 4-6) and the CMFT cascade.

Levels: paper "Conv2".."Conv5" are the streams' four stages (spatio-temporal tokens T x h x w,
average-pooled to at most ``pool_grid`` per frame); "Conv6" is the clip level (one token per frame,
the last stage pooled over space and reduced by a pair of FC layers). ``CMFT_Sk`` runs CCFs at levels
k..6, each recalibrated by the previous level's fused tokens.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = (2, 3, 4, 5, 6)


class CrossAttention(nn.Module):
    """``z_ij = LN(MHA(Q = z_i, K = V = z_j) + z_i)`` (eq. 5), stacked ``layers`` times on the query side."""

    def __init__(self, dim: int, heads: int = 8, layers: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion width {dim} is not divisible by {heads} attention heads")
        self.attn = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=True) for _ in range(layers))
        self.norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))

    def forward(self, q: torch.Tensor, kv: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        weights = None
        with _exact_attention(q):
            for attn, norm in zip(self.attn, self.norm):
                a, weights = attn(q, kv, kv, need_weights=need_weights)
                q = norm(a + q)
        return q, weights


def _exact_attention(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Under ``torch.use_deterministic_algorithms`` on CUDA, the math attention kernel (the fused kernels'
    backward accumulates with atomics); otherwise whatever PyTorch picks."""
    if x.device.type == "cuda" and torch.are_deterministic_algorithms_enabled():
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def pool_matrix(size_in: int, size_out: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(size_out, size_in)`` averaging weights of adaptive average pooling along one axis: output ``i`` is the
    mean of inputs ``floor(i * n / m)`` to ``ceil((i + 1) * n / m) - 1``, as ``adaptive_avg_pool2d`` defines it."""
    i = torch.arange(size_out)
    start, end = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
    j = torch.arange(size_in)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return (inside.double() / (end - start)[:, None]).to(dtype=dtype, device=device)


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``adaptive_avg_pool2d`` over the last two axes. Under ``torch.use_deterministic_algorithms`` on CUDA, the
    same averages as two matrix products, whose backward is deterministic (the pool's CUDA backward is not)."""
    if not (x.device.type == "cuda" and torch.are_deterministic_algorithms_enabled()):
        return F.adaptive_avg_pool2d(x, size)
    return exact_adaptive_avg_pool(x, size)


def exact_adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling as ``P_h @ x @ P_w^T`` with :func:`pool_matrix` weights (any device)."""
    ph = pool_matrix(x.shape[-2], size[0], x.dtype, x.device)
    pw = pool_matrix(x.shape[-1], size[1], x.dtype, x.device)
    return ph @ x @ pw.T


class CCF(nn.Module):
    """One CCF level: project both streams to width ``dim``, gate them by the previous level's fused
    tokens (eq. 6), cross-attend (eq. 5) in one or both directions, and fuse with FC + residual + LN (eq. 4).

    The gate is ``2 * sigmoid(W z_fusion^{s-1} + b)`` with ``W, b`` zero-initialised, so it starts as
    the identity. Output width: ``2 * dim`` dual-branch, ``dim`` single-branch.
    """

    def __init__(self, in_dim: int, dim: int, prev_dim: int | None = None, branches: int = 2, heads: int = 8, layers: int = 1) -> None:
        super().__init__()
        if branches not in (1, 2):
            raise ValueError(f"a CCF has 1 or 2 branches, got {branches}")
        self.proj_rgb = nn.Linear(in_dim, dim)
        self.proj_ir = nn.Linear(in_dim, dim)
        self.gate = None
        if prev_dim is not None:
            self.gate = nn.Linear(prev_dim, dim)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self.rgb_to_ir = CrossAttention(dim, heads, layers)  # RGB queries, IR keys/values: z_{rgb,ir}
        self.ir_to_rgb = CrossAttention(dim, heads, layers) if branches == 2 else None
        self.out_dim = dim * branches
        self.fc = nn.Linear(self.out_dim, self.out_dim)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(
        self, z_rgb: torch.Tensor, z_ir: torch.Tensor, prev: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, N, in_dim)`` tokens of each stream (+ previous fused tokens on this grid) -> ``(B, N, out_dim)``
        fused tokens, and the head-averaged RGB->IR attention ``(B, N, N)`` when ``need_weights`` (else ``None``)."""
        zr, zi = self.proj_rgb(z_rgb), self.proj_ir(z_ir)
        if self.gate is not None:
            if prev is None:
                raise ValueError("this CCF follows another level: pass the previous level's fused tokens")
            g = 2 * torch.sigmoid(self.gate(prev))
            zr, zi = zr * g, zi * g
        z_ri, weights = self.rgb_to_ir(zr, zi, need_weights=need_weights)
        z = z_ri if self.ir_to_rgb is None else torch.cat([z_ri, self.ir_to_rgb(zi, zr)[0]], dim=-1)
        return self.norm(self.fc(z) + z), weights


def spatial_tokens(x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, T, C, h, w)`` -> tokens ``(B, T*h'*w', C)`` average-pooled to at most ``grid`` per frame."""
    b, t, c, h, w = x.shape
    size = (min(h, grid[0]), min(w, grid[1]))
    y = adaptive_avg_pool(x.flatten(0, 1), size) if size != (h, w) else x.flatten(0, 1)
    return y.view(b, t, c, -1).transpose(2, 3).reshape(b, t * size[0] * size[1], c), size


def resample_tokens(z: torch.Tensor, t: int, src: tuple[int, int] | None, dst: tuple[int, int] | None) -> torch.Tensor:
    """Move fused tokens ``(B, T*h*w, D)`` from grid ``src`` to grid ``dst`` (``None`` = one token per frame)."""
    b, _, d = z.shape
    if src is None:
        return z
    frames = z.view(b, t, src[0], src[1], d)
    if dst is None:
        return frames.mean(dim=(2, 3))
    if src == dst:
        return z
    y = adaptive_avg_pool(frames.permute(0, 1, 4, 2, 3).flatten(0, 1), dst)  # (B*T, D, h', w')
    return y.view(b, t, d, -1).transpose(2, 3).reshape(b, -1, d)


class CMFTCascade(nn.Module):
    """CCFs at levels ``start``..6; returns the fused clip embedding (temporal mean of the Conv6 tokens).

    Pass a dict as ``attention`` to receive each level's RGB->IR attention (``{"conv5": (B, N, N), ...}``);
    the weights are returned, never kept on the module, so no graph outlives a training step."""

    def __init__(
        self,
        channels: tuple[int, int, int, int],
        start: int = 5,
        branches: int = 2,
        layers: int = 1,
        heads: int = 8,
        fusion_dim: int = 512,
        reduce_dim: int = 1024,
        pool_grid: tuple[int, int] = (16, 8),
    ) -> None:
        super().__init__()
        if start not in LEVELS:
            raise ValueError(f"fusion start level must be one of {LEVELS} (paper Conv2..Conv6), got {start}")
        self.start, self.pool_grid = start, pool_grid
        blocks: dict[str, CCF] = {}
        prev = None
        for level in range(start, 7):
            in_dim, dim = (channels[level - 2], fusion_dim) if level < 6 else (channels[-1], reduce_dim)
            blocks[f"conv{level}"] = CCF(in_dim, dim, prev, branches, heads, layers)
            prev = blocks[f"conv{level}"].out_dim
        self.blocks = nn.ModuleDict(blocks)
        self.out_dim = prev

    def forward(
        self, levels_rgb: list[torch.Tensor], levels_ir: list[torch.Tensor], attention: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        t = levels_rgb[-1].shape[1]
        fused, grid = None, None
        for level in range(self.start, 7):
            block = self.blocks[f"conv{level}"]
            if level < 6:
                zr, new_grid = spatial_tokens(levels_rgb[level - 2], self.pool_grid)
                zi, _ = spatial_tokens(levels_ir[level - 2], self.pool_grid)
                if levels_rgb[level - 2].shape[1] != t:
                    raise ValueError("all levels must keep the clip length for the cascade")
            else:
                zr, zi, new_grid = levels_rgb[-1].mean(dim=(3, 4)), levels_ir[-1].mean(dim=(3, 4)), None
            prev = None if fused is None else resample_tokens(fused, t, grid, new_grid)
            fused, weights = block(zr, zi, prev, need_weights=attention is not None)
            grid = new_grid
            if attention is not None:
                attention[f"conv{level}"] = weights
        return fused.mean(dim=1)
