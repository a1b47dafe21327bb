"""Retrieval metrics (CMC, mAP, mINP) over a distance matrix, vectorised and chunked over queries.

What is computed is defined plainly in :mod:`cmft.evaluation.reference` (sort each row, drop what the
protocol removes, read the positives' ranks); this kernel gives the same numbers (the tests hold it to that
reference and to the community reference code's outputs) without sorting any row, which is what makes
it fast on a HITSZ-VCM-sized problem.

Only the ranks of the positives are needed, so no row is fully sorted. For each query, the kept
positives are sorted (a handful of values) and every gallery item is bucketed against them with a
branchless binary search: its bucket is the number of positives ranked before it. A histogram of the
buckets of the kept non-matching items then gives, for the i-th positive, how many items precede it:
rank_i = 1 + i + #(non-matches with bucket <= i). Ties are ordered by gallery index (a stable sort);
the rare items that tie a positive exactly are resolved by an exact comparison on their own.

One module on purpose (about 500 lines, over the package's usual 400): the entry points, the validation of
ids and cameras, the chunking context and the kernel share private invariants (dtypes, block sizes, the
tie rule) that are easier to check side by side than across files.

``chunk_size`` is the number of queries whose distance rows exist at once (memory ~ chunk_size x
num_gallery); the kernel itself works through each block in cache-sized pieces. Results do not
depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cmft.evaluation.protocols import Protocol, get_protocol

ArrayLike = Any  # NumPy array, torch tensor or sequence

# Elements (queries x gallery) the metric kernel handles at once, ~20 bytes of working memory each.
# CPU, measured on 2 cores: 2^19..2^20 are fastest (2^21..2^22: 15-40% slower, out of cache); two
# threads on a busy machine pay per parallel op, which favours fewer, bigger blocks (2^19 vs 2^21: 3x).
# On a GPU bigger blocks mean fewer kernel launches.
_KERNEL_ELEMENTS_CPU = 1 << 20
_KERNEL_ELEMENTS_GPU = 1 << 24
# Default distance block of evaluate_features (128 MiB in float32): every block reads the whole
# gallery once, so blocks of many queries keep the matmul efficient while memory stays bounded.
_FEATURE_BLOCK_ELEMENTS = 1 << 25
_RESULT_DTYPES = {
    "valid": torch.bool, "first_match_rank": torch.int64, "cmc_rank": torch.int64, "last_match_rank": torch.int64,
    "num_positives": torch.int64, "ap": torch.float64, "inp": torch.float64,
}
# Items tying a positive are resolved this many at a time (each costs a row of the positive table).
_TIE_BLOCK = 1 << 16


@dataclass(frozen=True)
class QueryMetrics:
    """Per-query results; invalid queries (no positive left after removal) have rank 0 and NaN AP/INP."""

    valid: np.ndarray  # bool (num_query,)
    first_match_rank: np.ndarray  # int64: 1-based rank of the first positive among the kept items
    cmc_rank: np.ndarray  # int64: the rank CMC uses (identity-deduplicated under "sysu")
    last_match_rank: np.ndarray  # int64: 1-based rank of the last positive
    num_positives: np.ndarray  # int64: positives left after removal
    ap: np.ndarray  # float64: average precision
    inp: np.ndarray  # float64: inverse negative penalty = num_positives / last_match_rank
    protocol: str

    def summary(self, max_rank: int = 20) -> dict[str, Any]:
        """Aggregate over the valid queries: CMC@1..max_rank, mAP, mINP (fractions)."""
        _check_max_rank(max_rank)
        n_valid = int(self.valid.sum())
        if n_valid == 0:
            raise ValueError(
                f"no valid query: none of the {self.valid.size} queries has a positive left in the gallery "
                f"under the {self.protocol!r} protocol"
            )
        ranks = self.cmc_rank[self.valid]
        cmc = (ranks[:, None] <= np.arange(1, max_rank + 1)[None, :]).sum(0) / n_valid
        return {
            "cmc": cmc.astype(np.float64),
            "mAP": float(self.ap[self.valid].mean()),
            "mINP": float(self.inp[self.valid].mean()),
            "num_valid_queries": n_valid,
        }


def evaluate(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None,
    protocol: str = "hitsz_vcm",
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """CMC (length max_rank), mAP, mINP and the valid-query count for a distance matrix (ascending = best)."""
    _check_max_rank(max_rank)
    return per_query_metrics(distmat, q_pids, g_pids, q_camids, g_camids, protocol, chunk_size).summary(max_rank)


def evaluate_features(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None,
    protocol: str = "hitsz_vcm",
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Same as ``evaluate`` with distance = -cosine similarity, computed chunk by chunk on the features' device."""
    _check_max_rank(max_rank)
    return per_query_metrics_features(
        q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, protocol, chunk_size
    ).summary(max_rank)


def per_query_metrics(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None,
    protocol: str = "hitsz_vcm",
    chunk_size: int | None = None,
) -> QueryMetrics:
    """Per-query ranks, AP and INP for a distance matrix, so reports and plots can use single queries."""
    proto = get_protocol(protocol)
    dist = _as_tensor(distmat, "distmat")
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(dist.shape)}")
    if not (dist.is_floating_point() or _is_integer(dist)):
        raise ValueError(f"distmat must hold real numbers, got dtype {dist.dtype}")
    num_q, num_g = dist.shape
    shape = tuple(dist.shape)
    ctx = _Context.build(
        proto, num_q, num_g, dist.device, q_pids, g_pids, q_camids, g_camids,
        q_what=f"distmat has {num_q} rows (shape {shape})", g_what=f"distmat has {num_g} columns (shape {shape})",
    )
    # Row blocks of the distance matrix are views; the kernel converts them piece by piece.
    rows = _check_chunk_size(chunk_size, max(1, num_q))
    return ctx.run((dist[start : start + rows] for start in range(0, num_q, rows)), dist.device)


def per_query_metrics_features(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None,
    protocol: str = "hitsz_vcm",
    chunk_size: int | None = None,
) -> QueryMetrics:
    """Per-query metrics with distance = -cosine similarity; memory bounded by the chunk, not the gallery."""
    proto = get_protocol(protocol)
    q, g = _feature_pair(q_feats, g_feats)
    num_q, num_g = q.shape[0], g.shape[0]
    ctx = _Context.build(
        proto, num_q, num_g, q.device, q_pids, g_pids, q_camids, g_camids,
        q_what=f"q_feats has {num_q} rows (shape {tuple(q.shape)})",
        g_what=f"g_feats has {num_g} rows (shape {tuple(g.shape)})",
    )
    # default: ~128 MiB blocks, a whole number of kernel pieces each
    piece = _kernel_rows(q.device, num_g)
    rows = _check_chunk_size(chunk_size, max(1, _FEATURE_BLOCK_ELEMENTS // max(num_g, 1) // piece) * piece)
    with torch.no_grad():
        inv_g_norm = _inverse_norms(g)
    return ctx.run((_cosine_distance(q[s : s + rows], g, inv_g_norm) for s in range(0, num_q, rows)), q.device)


def cosine_distance(q_feats: ArrayLike, g_feats: ArrayLike) -> Tensor:
    """-cosine similarity (num_query, num_gallery), exactly as evaluate_features ranks by, for plots and checks."""
    q, g = _feature_pair(q_feats, g_feats)
    with torch.no_grad():
        return _cosine_distance(q, g, _inverse_norms(g))


def _feature_pair(q_feats: ArrayLike, g_feats: ArrayLike) -> tuple[Tensor, Tensor]:
    q = _as_tensor(q_feats, "q_feats")
    g = _as_tensor(g_feats, "g_feats")
    for name, t in (("q_feats", q), ("g_feats", g)):
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-D (num_items, dim), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got dtype {t.dtype}")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dims differ: q_feats has shape {tuple(q.shape)}, g_feats has shape {tuple(g.shape)}")
    if q.device != g.device:
        raise ValueError(f"q_feats is on {q.device} but g_feats is on {g.device}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    return q.detach().to(dtype), g.detach().to(dtype)  # no copy unless the two dtypes differ


def _inverse_norms(g: Tensor) -> Tensor:
    # Similarity columns are scaled by 1/|g| instead of normalising a copy of the (possibly huge) gallery.
    return torch.linalg.vector_norm(g, dim=1).clamp_min(1e-12).reciprocal()


def _cosine_distance(q: Tensor, g: Tensor, inv_g_norm: Tensor) -> Tensor:
    return (F.normalize(q, dim=1) @ g.T).mul_(inv_g_norm).neg_()


# ----------------------------------------------------------------------------------------------
# Implementation


@dataclass
class _Context:
    """Validated ids/cameras on the compute device, plus each gallery identity's item list."""

    proto: Protocol
    num_q: int
    num_g: int
    q_uid: Tensor  # (num_q,) row of ``table`` for each query's pid; n_uid when absent from the gallery
    g_uid: Tensor  # (num_g,) index of each gallery item's pid among the gallery's unique pids
    g_uid_i32: Tensor
    n_uid: int
    table: Tensor  # (n_uid + 1, K) gallery indices of each identity, ascending, padded with num_g
    q_cams: Tensor | None
    g_cams: Tensor | None
    g_cams_ext: Tensor | None  # g_cams plus one entry for the padding index
    # The kernel's (rows x gallery) buffers, allocated once per run: allocating them afresh for every
    # piece fragmented the heap enough to grow the process by ~40 MB per 128 MiB feature block.
    _workspace: dict[str, Tensor] = field(default_factory=dict)

    def _buffer(self, name: str, shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
        n = shape[0] * shape[1]
        buf = self._workspace.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            buf = self._workspace[name] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)

    @classmethod
    def build(
        cls,
        proto: Protocol,
        num_q: int,
        num_g: int,
        device: torch.device,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike | None,
        g_camids: ArrayLike | None,
        q_what: str,
        g_what: str,
    ) -> _Context:
        qp, gp = _pid_tensors(q_pids, g_pids)
        _check_len("q_pids", qp, num_q, q_what)
        _check_len("g_pids", gp, num_g, g_what)
        qc = gc = gce = None
        if proto.needs_camids:
            if q_camids is None or g_camids is None:
                missing = " and ".join(n for n, v in (("q_camids", q_camids), ("g_camids", g_camids)) if v is None)
                raise ValueError(
                    f"protocol {proto.name!r} needs q_camids and g_camids ({proto.summary}); missing: {missing}"
                )
            qc = _int_tensor(q_camids, "q_camids")
            gc = _int_tensor(g_camids, "g_camids")
            _check_len("q_camids", qc, num_q, q_what)
            _check_len("g_camids", gc, num_g, g_what)
            qc, gc = qc.to(device), gc.to(device)
            gce = torch.cat([gc, gc.new_full((1,), -1)])
        qp, gp = qp.to(device), gp.to(device)

        uniq, g_uid = torch.unique(gp, return_inverse=True)
        n_uid = int(uniq.numel())
        if n_uid:
            pos = torch.searchsorted(uniq, qp).clamp_max(n_uid - 1)
            q_uid = torch.where(uniq[pos] == qp, pos, torch.full_like(pos, n_uid))
            counts = torch.bincount(g_uid, minlength=n_uid)
            order = torch.argsort(g_uid, stable=True)
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(num_g, device=device) - starts[g_uid[order]]
            table = torch.full((n_uid + 1, int(counts.max())), num_g, dtype=torch.long, device=device)
            table[g_uid[order], slot] = order
        else:
            q_uid = torch.zeros(num_q, dtype=torch.long, device=device)
            table = torch.full((1, 0), num_g, dtype=torch.long, device=device)
        return cls(proto, num_q, num_g, q_uid, g_uid.long(), g_uid.int(), n_uid, table, qc, gc, gce)

    def run(self, blocks: Iterator[Tensor], device: torch.device) -> QueryMetrics:
        """Metrics for consecutive row blocks of the distance matrix, in cache-sized pieces."""
        # Results go straight into preallocated arrays, so no small tensors outlive a piece.
        out = {k: torch.empty(self.num_q, dtype=dt, device=device) for k, dt in _RESULT_DTYPES.items()}
        start = 0
        with torch.no_grad():
            for block in blocks:
                rows = _kernel_rows(block.device, self.num_g)
                for s in range(0, block.shape[0], rows):
                    dist = block[s : s + rows].detach()
                    sl = slice(start, start + dist.shape[0])
                    for k, v in self._chunk(dist, sl).items():
                        out[k][sl] = v
                    start += dist.shape[0]
                del block, dist  # free this block before the next one is computed
        self._workspace.clear()
        return QueryMetrics(**{k: v.cpu().numpy() for k, v in out.items()}, protocol=self.proto.name)

    def _chunk(self, dist: Tensor, sl: slice) -> dict[str, Tensor]:
        """Metrics for the queries ``sl`` given their distance rows ``dist`` (c, num_g)."""
        proto, num_g = self.proto, self.num_g
        if dist.dtype in (torch.float16, torch.bfloat16) or not dist.is_floating_point():
            dist = dist.to(torch.float32 if dist.is_floating_point() else torch.float64)
        dist = dist.contiguous()
        if not bool(torch.isfinite(dist.sum())) and bool(torch.isnan(dist).any()):
            raise ValueError("distmat contains NaN")
        c, dev = dist.shape[0], dist.device
        q_uid = self.q_uid[sl]
        q_cams = self.q_cams[sl] if self.q_cams is not None else None

        # Kept positives of each query: its identity's gallery items minus those the protocol removes.
        own = self.table[q_uid]  # (c, K) gallery indices of the query's identity, padded with num_g
        own_valid = own < num_g
        valid = own_valid.clone()
        if proto.remove is not None:
            assert q_cams is not None and self.g_cams_ext is not None
            valid &= ~proto.remove(True, q_cams[:, None], self.g_cams_ext[own])
        m = valid.sum(1)
        kc = int(m.max()) if c and own.shape[1] else 0
        if kc == 0:
            return _invalid(c, dev, m)

        # Valid candidates first (keeping gallery-index order), then a stable sort by distance, so that
        # sorted positives are ordered by (distance, gallery index) and the first m of each row are real.
        front = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, :kc]
        cand, valid = own.gather(1, front), valid.gather(1, front)
        pos_d = dist.gather(1, cand.clamp_max(num_g - 1)).masked_fill_(~valid, float("inf"))
        pos_d, order = torch.sort(pos_d, dim=1, stable=True)
        pos_idx = torch.where(valid.gather(1, order), cand.gather(1, order), num_g)

        # Threshold table padded with +inf to a power of two > kc, so every bucket 0..kc exists.
        kp = 1 << kc.bit_length()
        thr = dist.new_full((c, kp), float("inf"))
        thr[:, :kc] = pos_d
        thr_flat = thr.view(-1)
        row_off = torch.arange(c, device=dev, dtype=torch.int32).mul_(kp)[:, None]

        # Branchless binary search: idx = row_off + #(thresholds < d). The first probe is one value
        # per row, so it is a broadcast compare; later probes gather thresholds with int32 indices.
        # All (c, num_g) tensors live in reused buffers; masks are cast into ``bump`` before adding
        # because an add with a bool operand allocates a converted copy every time.
        shape = (c, num_g)
        lt = self._buffer("lt", shape, torch.bool, dev)
        bump = self._buffer("bump", shape, torch.int32, dev)
        idx = self._buffer("idx", shape, torch.int32, dev)
        probe = self._buffer("probe", shape, dist.dtype, dev)
        step = kp // 2
        bump.copy_(torch.lt(thr[:, step - 1 : step], dist, out=lt))
        torch.add(row_off, bump, alpha=step, out=idx)
        step //= 2
        while step >= 1:
            torch.index_select(thr_flat[step - 1 :], 0, idx.view(-1), out=probe.view(-1))
            idx.add_(bump.copy_(torch.lt(probe, dist, out=lt)), alpha=step)
            step //= 2

        # Items of the query's identity (kept positives and, under HITSZ, its same-camera items) are not
        # counted; under SYSU neither are the removed items of other identities.
        counted = None
        if proto.removes_non_matches or proto.dedup_identities_in_cmc:
            counted = torch.ne(self.g_uid[None, :], q_uid[:, None], out=self._buffer("counted", shape, torch.bool, dev))
            if proto.removes_non_matches:
                assert q_cams is not None and self.g_cams is not None and proto.remove is not None
                counted &= proto.remove(False, q_cams[:, None], self.g_cams[None, :]).logical_not_()
        # Rows without any own item get a harmless stand-in column: they have no positive, so are invalid.
        own_cols = torch.where(own_valid, own, own[:, :1]).clamp_max_(num_g - 1)

        # An item tying a positive exactly was put before it; it belongs after it when its gallery
        # index is larger (stable order), so those few items are recounted exactly.
        torch.index_select(thr_flat, 0, idx.view(-1), out=probe.view(-1))
        tied = torch.eq(probe, dist, out=lt)
        if counted is not None:
            tied &= counted
        else:
            tied.scatter_(1, own_cols, False)
        if bool(tied.view(torch.uint8).amax()):  # (a uint8 max is much faster than bool any() on CPU)
            _resolve_ties(idx, tied, dist, thr, pos_idx, row_off)

        before_first = None
        if proto.dedup_identities_in_cmc:
            assert counted is not None
            before_first = torch.eq(idx, row_off, out=self._buffer("before_first", shape, torch.bool, dev))
            before_first &= counted
        if counted is None:
            # count every item, then take back the query's own items (a few per row)
            hist = torch.bincount(idx.view(-1), minlength=c * kp)
            own_idx = idx.gather(1, own_cols)[own_valid]
            hist -= torch.bincount(own_idx, minlength=c * kp)
        else:
            # send the items that are not counted to a second, discarded copy of the bins
            idx.add_(bump.copy_(counted).neg_().add_(1), alpha=c * kp)
            hist = torch.bincount(idx.view(-1), minlength=2 * c * kp)[: c * kp]
        hist = hist.view(c, kp)[:, :kc]

        i1 = torch.arange(1, kc + 1, device=dev)
        ranks = hist.cumsum(1) + i1  # 1-based rank of each sorted positive
        is_pos = i1[None, :] <= m[:, None]
        ok = m > 0
        m_safe = m.clamp_min(1)
        # cumsum adds left to right, so AP does not depend on how wide the chunk's table is
        at_last = (m_safe - 1)[:, None]
        precision_sum = (i1.double() / ranks.double()).masked_fill_(~is_pos, 0).cumsum(1).gather(1, at_last)[:, 0]
        ap = precision_sum / m_safe
        last = ranks.gather(1, at_last)[:, 0]
        first = ranks[:, 0]
        if before_first is not None:
            # SYSU CMC: rank among identities = 1 + distinct identities seen before the first positive.
            n = c * self.n_uid
            ids = torch.add(torch.arange(0, n, self.n_uid, device=dev, dtype=torch.int32)[:, None],
                            self.g_uid_i32[None, :], out=idx)  # (idx is free again)
            ids.add_(bump.copy_(before_first).neg_().add_(1), alpha=n)  # items after it go to discarded bins
            seen = torch.bincount(ids.view(-1), minlength=2 * n)[:n]
            cmc_rank = 1 + (seen.view(c, self.n_uid) > 0).sum(1)
        else:
            cmc_rank = first
        zero = torch.zeros_like(first)
        nan = torch.full_like(ap, float("nan"))
        return {
            "valid": ok,
            "first_match_rank": torch.where(ok, first, zero),
            "cmc_rank": torch.where(ok, cmc_rank, zero),
            "last_match_rank": torch.where(ok, last, zero),
            "num_positives": m.long(),
            "ap": torch.where(ok, ap, nan),
            "inp": torch.where(ok, m.double() / last.double(), nan),
        }


def _resolve_ties(idx: Tensor, tied: Tensor, dist: Tensor, thr: Tensor, pos_idx: Tensor, row_off: Tensor) -> None:
    """Recount the bucket of items that tie a positive: equal distance ranks by gallery index."""
    rows, cols = tied.nonzero(as_tuple=True)
    kc = pos_idx.shape[1]
    for s in range(0, rows.numel(), _TIE_BLOCK):
        r, k = rows[s : s + _TIE_BLOCK], cols[s : s + _TIE_BLOCK]
        d = dist[r, k][:, None]
        t = thr[r, :kc]
        before = (t < d) | ((t == d) & (pos_idx[r] < k[:, None]))
        idx[r, k] = row_off[r, 0] + before.sum(1, dtype=torch.int32)


def _invalid(c: int, dev: torch.device, m: Tensor) -> dict[str, Tensor]:
    zi = torch.zeros(c, dtype=torch.long, device=dev)
    nan = torch.full((c,), float("nan"), dtype=torch.float64, device=dev)
    return {"valid": torch.zeros(c, dtype=torch.bool, device=dev), "first_match_rank": zi, "cmc_rank": zi,
            "last_match_rank": zi, "num_positives": m.long(), "ap": nan, "inp": nan}


# ----------------------------------------------------------------------------------------------
# Input checks


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if any(s < 0 for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr)


def _is_integer(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _int_tensor(x: ArrayLike, name: str) -> Tensor:
    t = _as_tensor(x, name)
    if not _is_integer(t):
        raise ValueError(f"{name} must hold integers, got dtype {t.dtype}")
    return t.long()


def _pid_tensors(q_pids: ArrayLike, g_pids: ArrayLike) -> tuple[Tensor, Tensor]:
    """Integer pid tensors; non-numeric labels (e.g. strings) are mapped to integers jointly."""
    if not isinstance(q_pids, Tensor) and not isinstance(g_pids, Tensor):
        qa, ga = np.asarray(q_pids), np.asarray(g_pids)
        if qa.dtype.kind not in "iu" or ga.dtype.kind not in "iu":
            if qa.dtype.kind == "f" or ga.dtype.kind == "f":
                raise ValueError(f"pids must be integers or labels, got dtypes {qa.dtype} and {ga.dtype}")
            codes = np.unique(np.concatenate([qa.ravel().astype(str), ga.ravel().astype(str)]), return_inverse=True)[1]
            return (torch.from_numpy(codes[: qa.size].reshape(qa.shape).astype(np.int64)),
                    torch.from_numpy(codes[qa.size :].reshape(ga.shape).astype(np.int64)))
    return _int_tensor(q_pids, "q_pids"), _int_tensor(g_pids, "g_pids")


def _check_len(name: str, t: Tensor, n: int, what: str) -> None:
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({n},): {what}")


def _kernel_rows(device: torch.device, num_g: int) -> int:
    budget = _KERNEL_ELEMENTS_CPU if device.type == "cpu" else _KERNEL_ELEMENTS_GPU
    return max(1, budget // max(num_g, 1))


def _check_max_rank(max_rank: int) -> None:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")


def _check_chunk_size(chunk_size: int | None, default: int) -> int:
    if chunk_size is None:
        return default
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size)
