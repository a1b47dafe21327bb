"""The definition of the retrieval metrics, written plainly: one query at a time, one stable sort per query.

This is what :mod:`cmft.evaluation.metrics` computes (the tests use it as the oracle of that fast kernel),
with the reference scripts' rules: the gallery is sorted by ascending distance (ties in gallery order), the
protocol's removal rule drops items (:mod:`cmft.evaluation.protocols`), and over what is left

* the i-th positive's rank r_i (1-based); a query with no positive left is invalid and not averaged;
* AP = mean over positives of i / r_i; INP = (number of positives) / r_last (mINP, Ye et al. 2021);
* CMC counts the first positive's rank, under SYSU-MM01 after keeping each gallery identity once.

:func:`reference_rerank` is likewise the plain form of k-reciprocal re-ranking.
"""

from __future__ import annotations

import numpy as np
import torch

from cmft.evaluation.metrics import ArrayLike, QueryMetrics
from cmft.evaluation.protocols import get_protocol


def reference_per_query(
    distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None, protocol: str = "hitsz_vcm",
) -> QueryMetrics:
    """Per-query ranks, AP and INP by sorting each row (slow, obviously right)."""
    proto = get_protocol(protocol)
    dist = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    nq, ng = dist.shape
    q_cams = np.zeros(nq, np.int64) if q_camids is None else np.asarray(q_camids)
    g_cams = np.zeros(ng, np.int64) if g_camids is None else np.asarray(g_camids)
    out = {k: np.zeros(nq, np.int64) for k in ("first_match_rank", "cmc_rank", "last_match_rank", "num_positives")}
    valid, ap, inp = np.zeros(nq, bool), np.full(nq, np.nan), np.full(nq, np.nan)
    for i in range(nq):
        order = np.argsort(dist[i], kind="stable")
        removed = np.zeros(ng, bool)
        if proto.remove is not None:
            same_pid = torch.from_numpy(g_pids[order] == q_pids[i])
            removed = proto.remove(same_pid, torch.tensor(int(q_cams[i])), torch.from_numpy(g_cams[order])).numpy()
        ranked = g_pids[order[~removed]]
        ranks = np.flatnonzero(ranked == q_pids[i]) + 1
        if ranks.size == 0:
            continue
        valid[i] = True
        ap[i] = np.mean(np.arange(1, ranks.size + 1) / ranks)
        inp[i] = ranks.size / ranks[-1]
        cmc_rank = ranks[0]
        if proto.dedup_identities_in_cmc:
            _, first_seen = np.unique(ranked, return_index=True)
            cmc_rank = int(np.flatnonzero(ranked[np.sort(first_seen)] == q_pids[i])[0]) + 1
        for key, v in (("first_match_rank", ranks[0]), ("cmc_rank", cmc_rank), ("last_match_rank", ranks[-1]),
                       ("num_positives", ranks.size)):
            out[key][i] = v
    return QueryMetrics(valid=valid, ap=ap, inp=inp, protocol=protocol, **out)


def reference_evaluate(
    distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None, protocol: str = "hitsz_vcm", max_rank: int = 20,
) -> dict:
    """CMC@1..max_rank, mAP, mINP and the valid-query count, as :func:`cmft.evaluation.evaluate` returns them."""
    return reference_per_query(distmat, q_pids, g_pids, q_camids, g_camids, protocol).summary(max_rank)


def reference_rerank(q: np.ndarray, g: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al. 2017) as the reference scripts write it: dense N x N matrices, one
    row at a time, NumPy; the definition :func:`cmft.evaluation.rerank` computes in bounded memory."""
    f = np.concatenate([q, g]).astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    f = f.astype(np.float32)
    dist = np.maximum(2 - 2 * f @ f.T, 0).astype(np.float32)
    dist = dist / dist.max(axis=1, keepdims=True)
    n, nq = len(f), len(q)
    rank = np.argsort(dist, axis=1, kind="stable")
    v = np.zeros((n, n), np.float32)

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[np.where(backward == i)[0]]

    half = int(np.around(k1 / 2.0))
    for i in range(n):
        r = reciprocal(i, k1)
        expansion = r
        for j in r:
            rj = reciprocal(j, half)
            if len(np.intersect1d(rj, r)) > 2.0 / 3 * len(rj):
                expansion = np.append(expansion, rj)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        v[i, expansion] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((nq, n), np.float32)
    for i in range(nq):
        m = np.minimum(v[i][None, :], v).sum(axis=1)
        jaccard[i] = 1 - m / (2 - m)
    return (jaccard * (1 - lam) + dist[:nq] * lam)[:, nq:]
