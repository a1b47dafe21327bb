"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) as the authors' ``re_ranking`` computes it, in bounded memory.

Over the N = queries + gallery L2-normalised features, with d the squared Euclidean distance (2 - 2 cos)
divided by its row's maximum:

1. R(i, k) = the k-reciprocal neighbours of i: j among i's k+1 nearest whose own k+1 nearest hold i;
2. R*(i) = R(i, k1) grown by R(j, round(k1/2)) of each j in R(i, k1) sharing more than 2/3 of it with R(i, k1);
3. V[i, j] = exp(-d[i, j]) normalised over j in R*(i) (0 elsewhere); with k2 > 1, V[i] becomes the mean
   of the rows V[j] of i's k2 nearest (local query expansion);
4. Jaccard distance: J[i, j] = 1 - m / (2 - m) with m = sum_k min(V[i, k], V[j, k]);
5. the result is J (1 - lambda) + d lambda, the query rows and gallery columns.

Neighbour lists are ordered as a stable sort orders them: equal distances lower index first.

Unlike the reference scripts, which hold several dense N x N matrices (about 2 GB at HITSZ-VCM's
5,159 x 5,643), nothing here is N x N: distances are computed in row blocks and only each row's
max(k1 + 1, k2) nearest neighbours are kept, V is a sparse matrix (a few hundred entries per row), and the Jaccard sums
are accumulated through an inverted index (column -> rows), query block by query block. The output is
the only queries x gallery array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cmft.devices import resolve_device

# elements of the largest temporary of a block (distance rows, gathered features): 2^24 floats = 64 MiB
_BLOCK_ELEMENTS = 1 << 24
# (query, gallery row, value) triples of one Jaccard block: ~5 int64/float arrays of this length, ~160 MiB
_TRIPLES = 1 << 22


@dataclass(frozen=True)
class Rerank:
    """Re-ranking as an evaluation option: its parameters, and the distances it gives a query / gallery pair."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def distances(self, q_feats: np.ndarray | torch.Tensor, g_feats: np.ndarray | torch.Tensor) -> np.ndarray:
        return rerank(q_feats, g_feats, self.k1, self.k2, self.lambda_value)


def rerank(
    q_feats: np.ndarray | torch.Tensor,
    g_feats: np.ndarray | torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The re-ranked query x gallery distance matrix (float32 NumPy, ascending = best) of the features,
    which are L2-normalised here. Runs on ``device`` (default: the features' device if a tensor, else the GPU
    when there is one)."""
    q, g = torch.as_tensor(q_feats), torch.as_tensor(g_feats)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be (num, dim) with one width, got {tuple(q.shape)} and {tuple(g.shape)}")
    if not (isinstance(k1, int) and isinstance(k2, int) and k1 >= 1 and k2 >= 1):
        raise ValueError(f"k1 and k2 must be integers >= 1, got k1={k1!r}, k2={k2!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    nq, n = q.shape[0], q.shape[0] + g.shape[0]
    if nq == 0 or n == nq:
        raise ValueError("re-ranking needs at least one query and one gallery feature")
    dev = resolve_device(device) if device is not None else (q.device if isinstance(q_feats, torch.Tensor) else resolve_device("auto"))
    feats = F.normalize(torch.cat([q, g]).to(dev, torch.float32), dim=1)
    # R(i, k) reads i's first k + 1 neighbours, so k >= N means all of them; k1 / 2 is taken before that cap,
    # and the query expansion needs k2 neighbours, which may be more than k1 + 1
    half = min(int(np.around(k1 / 2.0)), n - 1)
    k1, k2 = min(k1, n - 1), min(k2, n)

    rank, row_max = _nearest(feats, max(k1 + 1, k2))
    recip = _reciprocal(rank[:, : k1 + 1])  # R(i, k1), -1 padded
    recip_half = _reciprocal(rank[:, : half + 1])  # R(j, k1/2)
    expansion = _expand(recip, recip_half)
    v = _weights(feats, row_max, expansion, n)
    if k2 != 1:
        v = _query_expansion(v, rank[:, :k2], n)
    jaccard = _jaccard(v, nq, n)
    orig = _distance(feats[:nq], feats[nq:]) / row_max[:nq, None]
    return (jaccard * (1 - lambda_value) + orig * lambda_value).cpu().numpy()


def _blocks(n: int, per_row: int) -> list[slice]:
    """Row blocks whose temporaries (``per_row`` elements a row) stay within the block budget."""
    rows = max(1, _BLOCK_ELEMENTS // max(per_row, 1))
    return [slice(s, min(s + rows, n)) for s in range(0, n, rows)]


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of L2-normalised rows, ``2 - 2 cos`` (never negative)."""
    return (2 - 2 * a @ b.T).clamp_min_(0)


def _nearest(feats: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` nearest indices and its largest distance, in row blocks. The order is a stable sort's:
    ascending distance, and among equal distances the lower index first (also at the cut)."""
    n = feats.shape[0]
    ranks, maxima = [], []
    for rows in _blocks(n, n):
        d = _distance(feats[rows], feats)
        m = d.max(dim=1).values
        maxima.append(m)
        ranks.append(_smallest_stable(d / m[:, None], k))
    return torch.cat(ranks), torch.cat(maxima)


def _smallest_stable(d: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of each row's ``k`` smallest values as ``argsort(kind="stable")[:, :k]`` gives them, at a
    top-k's cost: ``topk`` finds the k-th value, the values equal to it are taken lowest index first."""
    kth = torch.topk(d, k, dim=1, largest=False, sorted=True).values[:, -1:]
    below = d < kth
    tied = d == kth
    need = k - below.sum(dim=1, keepdim=True)
    chosen = below | (tied & (tied.cumsum(dim=1) <= need))
    idx = chosen.nonzero()[:, 1].view(d.shape[0], k)  # ascending index within each row
    order = torch.sort(d.gather(1, idx), dim=1, stable=True).indices
    return idx.gather(1, order)


def _reciprocal(rank: torch.Tensor) -> torch.Tensor:
    """R(i, k-1) of the first ``k`` neighbours ``rank`` (N, k), as an ``(N, k)`` index array padded with -1: the
    forward neighbours j of i whose own first ``k`` neighbours hold i."""
    i = torch.arange(rank.shape[0], device=rank.device)[:, None, None]
    back = rank[rank]  # (N, k, k): the neighbours of each neighbour
    keep = (back == i).any(dim=2)
    return torch.where(keep, rank, torch.full_like(rank, -1))


def _expand(recip: torch.Tensor, recip_half: torch.Tensor) -> torch.Tensor:
    """R*(i): R(i, k1) and each R(j, k1/2), j in R(i, k1), whose overlap with R(i, k1) exceeds 2/3 of its size;
    ``(N, M)`` unique indices padded with -1."""
    n, k = recip.shape
    h = recip_half.shape[1]
    parts = []
    for rows in _blocks(n, k * h * k):
        r = recip[rows]
        cand = recip_half[r.clamp_min(0)]  # (B, k, h): R(j, k1/2) of each candidate j
        cand = torch.where((r >= 0)[:, :, None], cand, torch.full_like(cand, -1))
        size = (cand >= 0).sum(dim=2)
        inside = ((cand[:, :, :, None] == r[:, None, None, :]) & (cand[:, :, :, None] >= 0)).any(dim=3)
        accepted = (inside.sum(dim=2) * 3 > 2 * size) & (size > 0)
        grown = torch.where(accepted[:, :, None], cand, torch.full_like(cand, -1)).reshape(len(r), -1)
        both = torch.cat([r, grown], dim=1).sort(dim=1).values
        dup = torch.zeros_like(both, dtype=torch.bool)
        dup[:, 1:] = both[:, 1:] == both[:, :-1]
        parts.append(torch.where(dup, torch.full_like(both, -1), both))
    return torch.cat(parts)


def _weights(feats: torch.Tensor, row_max: torch.Tensor, expansion: torch.Tensor, n: int) -> torch.Tensor:
    """Sparse ``V`` (N x N, coalesced COO: entries sorted by row): ``exp(-d[i, j])`` normalised over j in R*(i)."""
    valid = expansion >= 0
    cols = expansion.clamp_min(0)
    w = torch.zeros(expansion.shape, dtype=torch.float32, device=feats.device)
    for rows in _blocks(n, expansion.shape[1] * feats.shape[1]):
        cos = torch.einsum("bd,bmd->bm", feats[rows], feats[cols[rows]])
        d = (2 - 2 * cos).clamp_min(0) / row_max[rows, None]
        w[rows] = torch.where(valid[rows], torch.exp(-d), torch.zeros_like(d))
    w = w / w.sum(dim=1, keepdim=True)
    i = torch.arange(n, device=feats.device)[:, None].expand_as(cols)
    return _sparse(torch.stack([i[valid], cols[valid]]), w[valid], n)


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The concatenated index ranges ``starts[e] .. starts[e] + counts[e] - 1`` (a vectorised ragged gather)."""
    offs = torch.arange(int(counts.sum()), device=counts.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return torch.repeat_interleave(starts, counts) + offs


def _row_ptr(rows: torch.Tensor, n: int) -> torch.Tensor:
    """CSR-style pointers of entries sorted by row: row r holds entries ``ptr[r] .. ptr[r + 1] - 1``."""
    ptr = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
    ptr[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    return ptr


def _sparse(indices: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """An N x N sparse matrix, duplicates summed and entries sorted by (row, column)."""
    return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=False).coalesce()


def _query_expansion(v: torch.Tensor, nearest: torch.Tensor, n: int) -> torch.Tensor:
    """``V[i] <- mean of V[j]`` over i's ``k2`` nearest j: the rows gathered, scaled by ``1 / k2`` and summed."""
    dev, k2 = v.device, nearest.shape[1]
    row, col = v.indices()
    val = v.values()
    ptr = _row_ptr(row, n)
    src = nearest.reshape(-1)  # the row gathered for each (i, neighbour) pair
    counts = ptr[src + 1] - ptr[src]
    dst = torch.arange(n, device=dev).repeat_interleave(k2).repeat_interleave(counts)
    pos = _ranges(ptr[src], counts)
    return _sparse(torch.stack([dst, col[pos]]), val[pos] / k2, n)


def _jaccard(v: torch.Tensor, nq: int, n: int) -> torch.Tensor:
    """``1 - m / (2 - m)``, ``m[i, j] = sum_k min(V[i, k], V[j, k])``, queries x gallery, through an inverted index."""
    dev = v.device
    row, col = v.indices()
    val = v.values()
    crow = _row_ptr(row, n)  # coalesced: entries sorted by row
    # inverted index over the gallery rows: column k -> (gallery row, value), as CSR of V_gallery^T
    g_start = int(crow[nq])
    g_rows, g_cols, g_vals = row[g_start:] - nq, col[g_start:], val[g_start:]
    order = torch.argsort(g_cols, stable=True)
    inv_rows, inv_vals = g_rows[order], g_vals[order]
    inv_ptr = _row_ptr(g_cols[order], n)
    ng = n - nq
    out = torch.empty(nq, ng, dtype=torch.float32, device=dev)
    # a query block's triples (query, gallery row, min) are counted first, so the block fits the budget
    q_entries = torch.repeat_interleave(torch.arange(nq, device=dev), crow[1 : nq + 1] - crow[:nq])
    q_col = col[: int(crow[nq])]
    work = inv_ptr[q_col + 1] - inv_ptr[q_col]  # triples per query entry
    per_query = torch.zeros(nq, dtype=torch.long, device=dev).index_add_(0, q_entries, work)
    cum = per_query.cumsum(0)  # triples up to each query
    max_rows = max(1, _BLOCK_ELEMENTS // ng)
    start = 0
    while start < nq:
        base = int(cum[start - 1]) if start else 0
        fits = int(torch.searchsorted(cum, torch.tensor(base + _TRIPLES, device=dev), right=True))
        stop = min(max(fits, start + 1), start + max_rows, nq)
        a, b = int(crow[start]), int(crow[stop])
        e_q, e_col, e_val = q_entries[a:b] - start, col[a:b], val[a:b]
        counts = inv_ptr[e_col + 1] - inv_ptr[e_col]
        src = torch.repeat_interleave(torch.arange(b - a, device=dev), counts)
        pos = _ranges(inv_ptr[e_col], counts)
        m = torch.zeros((stop - start) * ng, dtype=torch.float32, device=dev)
        m.index_add_(0, e_q[src] * ng + inv_rows[pos], torch.minimum(e_val[src], inv_vals[pos]))
        m = m.view(stop - start, ng)
        out[start:stop] = 1 - m / (2 - m)
        start = stop
    return out
