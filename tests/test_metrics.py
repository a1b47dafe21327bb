"""Retrieval metrics: golden values from the reference evaluators, hand-made tie cases, invariances, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmft.evaluation import cosine_distance, evaluate, evaluate_features, per_query_metrics
from cmft.evaluation.protocols import PROTOCOLS
from cmft.evaluation.reference import reference_evaluate, reference_per_query

from conftest import GOLDEN  # noqa: E402
CASE = "eval_case1_mixedcams_continuous"


@pytest.fixture(scope="module")
def case() -> tuple[dict[str, np.ndarray], dict]:
    npz, js = GOLDEN / f"{CASE}.npz", GOLDEN / f"{CASE}.json"
    assert npz.is_file() and js.is_file(), f"golden evaluation case missing from the checkout: {npz}"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(js.read_text())["results"]


def assert_matches_reference(res, distmat, q_pids, g_pids, q_camids, g_camids, protocol):
    """The fast kernel's per-query results equal the plain reference evaluator's (cmft.evaluation.reference)."""
    ref = reference_per_query(distmat, q_pids, g_pids, q_camids, g_camids, protocol)
    np.testing.assert_array_equal(res.valid, ref.valid)
    for key in ("first_match_rank", "cmc_rank", "last_match_rank", "num_positives"):
        np.testing.assert_array_equal(getattr(res, key)[ref.valid], getattr(ref, key)[ref.valid], err_msg=key)
    assert (res.first_match_rank[~ref.valid] == 0).all() and np.isnan(res.ap[~ref.valid]).all()
    np.testing.assert_allclose(res.ap[ref.valid], ref.ap[ref.valid], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.inp[ref.valid], ref.inp[ref.valid], rtol=0, atol=1e-12)


def assert_same_summary(a: dict, b: dict, tol: float = 0.0) -> None:
    assert a["num_valid_queries"] == b["num_valid_queries"]
    np.testing.assert_allclose(a["cmc"], b["cmc"], rtol=0, atol=tol)
    assert a["mAP"] == pytest.approx(b["mAP"], abs=tol)
    assert a["mINP"] == pytest.approx(b["mINP"], abs=tol)


# ------------------------------------------------------------------------------------------------
# Golden values from the reference implementations

# (reference function, protocol, evaluated on distmat.T with the id lists swapped, mAP/mINP tolerance)
REFERENCES = [
    ("mitml_evaluate", "hitsz_vcm", False, 1e-9),
    ("m3reid_get_cmc_mAP_mINP", "hitsz_vcm", False, 1e-6),  # float32 reference
    ("agw_eval_sysu", "sysu", False, 1e-9),
    ("agw_eval_regdb_v2t", "regdb", False, 1e-9),
    ("agw_eval_regdb_t2v_transposed", "regdb", True, 1e-9),
]


@pytest.mark.parametrize(("name", "protocol", "transposed", "tol"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_golden_reference(case, name, protocol, transposed, tol):
    a, results = case
    ref = results[f"{name}__stable_argsort"]
    if transposed:
        out = evaluate(a["distmat"].T, a["g_pids"], a["q_pids"], protocol=protocol)
    else:
        out = evaluate(a["distmat"], a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"], protocol=protocol)
    assert out["cmc"].dtype == np.float64 and out["cmc"].shape == (20,)
    np.testing.assert_allclose(out["cmc"], ref["cmc"], rtol=0, atol=1e-6)
    assert out["mAP"] == pytest.approx(ref["mAP"], abs=tol)
    if "mINP" in ref:
        assert out["mINP"] == pytest.approx(ref["mINP"], abs=tol)
    assert isinstance(out["mAP"], float) and isinstance(out["mINP"], float)
    assert isinstance(out["num_valid_queries"], int)


def test_golden_per_query(case):
    a, results = case
    args = (a["distmat"], a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"])
    hitsz = per_query_metrics(*args, protocol="hitsz_vcm")
    sysu = per_query_metrics(*args, protocol="sysu")
    regdb = per_query_metrics(*args, protocol="regdb")
    entries = results["per_query_stable_argsort"]
    assert len(entries) == a["distmat"].shape[0]
    for e in entries:
        q = e["q"]
        assert (e["pid"], e["cam"]) == (a["q_pids"][q], a["q_camids"][q])
        for res, key, rank_key, res_rank in (
            (hitsz, "mitml", "first_match_rank", hitsz.first_match_rank),
            (regdb, "agw_regdb", "first_match_rank", regdb.first_match_rank),
            (sysu, "agw_sysu", "first_match_rank_dedup", sysu.cmc_rank),
        ):
            ref = e[key]
            if isinstance(ref, str):
                assert not res.valid[q], (q, key)
                assert res.num_positives[q] == 0
                if ref == "invalid (no positive)":  # as opposed to positives that the protocol removed
                    assert regdb.num_positives[q] == 0, (q, key)
                continue
            assert res.valid[q], (q, key)
            assert res_rank[q] == ref[rank_key], (q, key)
            assert res.ap[q] == pytest.approx(ref["AP"], abs=1e-12), (q, key)
            if "INP" in ref:
                assert res.inp[q] == pytest.approx(ref["INP"], abs=1e-12), (q, key)
    # the summary counts exactly the queries the references count
    assert hitsz.valid.sum() == sum(not isinstance(e["mitml"], str) for e in entries)
    assert sysu.valid.sum() == sum(not isinstance(e["agw_sysu"], str) for e in entries)


@pytest.mark.parametrize("protocol", ["hitsz_vcm", "sysu", "regdb"])
def test_golden_features_match_distmat(case, protocol):
    a, _ = case
    ids = (a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"])
    from_dist = evaluate(a["distmat"], *ids, protocol=protocol)
    from_feats = evaluate_features(a["q_feat"], a["g_feat"], *ids, protocol=protocol)
    assert_same_summary(from_feats, from_dist, tol=1e-12)
    # unnormalised (scaled) features give the same cosine distances, in chunks, from torch
    scaled = evaluate_features(
        torch.from_numpy(a["q_feat"] * 3.0), torch.from_numpy(a["g_feat"] * 0.5), *ids, protocol=protocol, chunk_size=7
    )
    assert_same_summary(scaled, from_dist, tol=1e-12)


def test_golden_matches_reference_evaluator(case):
    a, _ = case
    ids = (a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"])
    for protocol in ("hitsz_vcm", "sysu", "regdb"):
        res = per_query_metrics(a["distmat"], *ids, protocol=protocol)
        assert_matches_reference(res, a["distmat"], *ids, protocol)


@pytest.mark.parametrize(("name", "protocol", "transposed", "tol"), REFERENCES, ids=[r[0] for r in REFERENCES])
def test_reference_evaluator_reproduces_golden(case, name, protocol, transposed, tol):
    """The plain definition itself gives the community reference code's numbers."""
    a, results = case
    ref = results[f"{name}__stable_argsort"]
    if transposed:
        out = reference_evaluate(a["distmat"].T, a["g_pids"], a["q_pids"], protocol=protocol)
    else:
        out = reference_evaluate(a["distmat"], a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"], protocol=protocol)
    np.testing.assert_allclose(out["cmc"], ref["cmc"], rtol=0, atol=1e-6)
    assert out["mAP"] == pytest.approx(ref["mAP"], abs=tol)
    if "mINP" in ref:
        assert out["mINP"] == pytest.approx(ref["mINP"], abs=tol)


# ------------------------------------------------------------------------------------------------
# Hand-computed cases

# Query 0: pid 1, cam 1. Gallery distances tie at 0.5 for items 0, 1, 2, 4.
# Query 1: pid 5, cam 3 (a SYSU camera-3 query).
TIE_G_PIDS = np.array([2, 1, 2, 3, 1, 1])
TIE_G_CAMS = np.array([2, 2, 2, 2, 2, 1])
TIE_DIST = np.array([[0.5, 0.5, 0.5, 0.2, 0.5, 0.9]])


def test_ties_break_by_gallery_index():
    # HITSZ removes item 5 (pid 1, cam 1). Stable order of the rest: 3 (0.2), then 0, 1, 2, 4 (0.5, by index)
    # -> pids 3, 2, 1, 2, 1: positives at ranks 3 and 5.
    res = per_query_metrics(TIE_DIST, [1], TIE_G_PIDS, [1], TIE_G_CAMS, protocol="hitsz_vcm")
    assert (res.first_match_rank[0], res.last_match_rank[0], res.num_positives[0]) == (3, 5, 2)
    assert res.ap[0] == pytest.approx((1 / 3 + 2 / 5) / 2, abs=1e-15)
    assert res.inp[0] == pytest.approx(2 / 5, abs=1e-15)
    out = evaluate(TIE_DIST, [1], TIE_G_PIDS, [1], TIE_G_CAMS, protocol="hitsz_vcm", max_rank=5)
    np.testing.assert_array_equal(out["cmc"], [0, 0, 1, 1, 1])
    # RegDB keeps item 5 (0.9, last): positives at ranks 3, 5, 6.
    out = evaluate(TIE_DIST, [1], TIE_G_PIDS, protocol="regdb", max_rank=3)
    assert out["mAP"] == pytest.approx((1 / 3 + 2 / 5 + 3 / 6) / 3, abs=1e-15)
    assert out["mINP"] == pytest.approx(3 / 6, abs=1e-15)
    np.testing.assert_array_equal(out["cmc"], [0, 0, 1])


def test_ties_sysu_removal_and_identity_dedup():
    g_pids = np.array([7, 5, 5, 6, 5, 7, 6, 5])
    g_cams = np.array([1, 2, 1, 4, 1, 1, 5, 2])
    dist = np.array([[0.1, 0.0, 0.3, 0.2, 0.3, 0.2, 0.2, 0.05]])
    # SYSU, camera-3 query: items 1 and 7 (camera 2) go. Stable order: 0, 3, 5, 6, 2, 4 -> pids 7, 6, 7, 6, 5, 5.
    # AP/INP use that order (positives at 5, 6); CMC counts identities once: 7, 6, 5 -> rank 3.
    res = per_query_metrics(dist, [5], g_pids, [3], g_cams, protocol="sysu")
    assert (res.first_match_rank[0], res.cmc_rank[0], res.last_match_rank[0]) == (5, 3, 6)
    assert res.ap[0] == pytest.approx((1 / 5 + 2 / 6) / 2, abs=1e-15)
    assert res.inp[0] == pytest.approx(2 / 6, abs=1e-15)
    out = evaluate(dist, [5], g_pids, [3], g_cams, protocol="sysu", max_rank=4)
    np.testing.assert_array_equal(out["cmc"], [0, 0, 1, 1])
    # No removal: order 1, 7, 0, 3, 5, 6, 2, 4 -> pids 5, 5, 7, 6, 7, 6, 5, 5: positives at 1, 2, 7, 8.
    for protocol in ("regdb", "hitsz_vcm"):
        res = per_query_metrics(dist, [5], g_pids, [3], g_cams, protocol=protocol)
        assert res.ap[0] == pytest.approx((1 + 1 + 3 / 7 + 4 / 8) / 4, abs=1e-15)
        assert res.inp[0] == pytest.approx(4 / 8, abs=1e-15)
        assert res.cmc_rank[0] == res.first_match_rank[0] == 1


def test_tiny_ap_inp_and_skipped_query():
    # query 0 (pid 1): ranked pids 1, 9, 1 -> AP = (1/1 + 2/3) / 2, INP = 2/3, rank-1 hit
    # query 1 (pid 4): no positive in the gallery -> skipped, not counted as a miss
    # query 2 (pid 9): ranked pids 1, 1, 9 -> AP = 1/3, INP = 1/3, first hit at rank 3
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.1, 0.3, 0.2]])
    g_pids = np.array([1, 9, 1])
    out = evaluate(dist, [1, 4, 9], g_pids, protocol="regdb", max_rank=5)
    assert out["num_valid_queries"] == 2
    np.testing.assert_allclose(out["cmc"], [0.5, 0.5, 1.0, 1.0, 1.0], rtol=0, atol=0)  # ranks past the gallery saturate
    assert out["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 3) / 2, abs=1e-15)
    assert out["mINP"] == pytest.approx((2 / 3 + 1 / 3) / 2, abs=1e-15)
    res = per_query_metrics(dist, [1, 4, 9], g_pids, protocol="regdb")
    np.testing.assert_array_equal(res.valid, [True, False, True])
    np.testing.assert_array_equal(res.first_match_rank, [1, 0, 3])


def test_hitsz_query_whose_only_positives_share_its_camera_is_skipped():
    dist = np.array([[0.1, 0.2], [0.2, 0.1]])
    out = evaluate(dist, [1, 2], [1, 2], q_camids=[1, 1], g_camids=[1, 2], protocol="hitsz_vcm")
    assert out["num_valid_queries"] == 1  # query 0's only positive is in its own camera
    np.testing.assert_array_equal(out["cmc"], np.ones(20))  # query 1's positive (camera 2) is ranked first


# ------------------------------------------------------------------------------------------------
# Against the plain reference evaluator, invariances


def _random_case(seed: int, nq: int = 23, ng: int = 90, n_ids: int = 6, ties: bool = True):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, n_ids + 1, nq)  # id n_ids never appears in the gallery
    g_pids = rng.integers(0, n_ids, ng)
    q_cams = rng.integers(1, 5, nq)
    g_cams = rng.integers(1, 5, ng)
    dist = rng.integers(0, 5, (nq, ng)).astype(np.float64) if ties else rng.standard_normal((nq, ng))
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_with_heavy_ties(protocol, seed):
    # seed 2 has ~45 positives per query (more than one binary-search table width of 32)
    dist, *ids = _random_case(seed, n_ids=2 if seed == 2 else 6, ties=seed != 1)
    res = per_query_metrics(dist, *ids, protocol=protocol)
    assert_matches_reference(res, dist, *ids, protocol)


def test_infinite_distances_and_all_equal_rows():
    dist, *ids = _random_case(5)
    dist[:, ::3] = np.inf
    dist[:, 1::7] = -np.inf
    dist[4] = 0.0  # a whole row of ties
    for protocol in sorted(PROTOCOLS):
        assert_matches_reference(per_query_metrics(dist, *ids, protocol=protocol), dist, *ids, protocol)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_chunk_size_invariance(protocol):
    dist, *ids = _random_case(3)
    results = [per_query_metrics(dist, *ids, protocol=protocol, chunk_size=cs) for cs in (1, 7, None, 10_000)]
    for other in results[1:]:
        for field in ("valid", "first_match_rank", "cmc_rank", "last_match_rank", "num_positives", "ap", "inp"):
            np.testing.assert_array_equal(getattr(other, field), getattr(results[0], field), err_msg=field)
    summaries = [evaluate(dist, *ids, protocol=protocol, chunk_size=cs) for cs in (1, 7, None)]
    for s in summaries[1:]:
        assert_same_summary(s, summaries[0])


def test_torch_numpy_and_dtypes_agree():
    dist, q_pids, g_pids, q_cams, g_cams = _random_case(4)  # small integers: exact in every float dtype
    ref = evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    variants = [
        dist.astype(np.float32),
        torch.from_numpy(dist),
        torch.from_numpy(dist).float(),
        torch.from_numpy(dist).half(),
        torch.from_numpy(dist).bfloat16(),
        np.asfortranarray(dist),
    ]
    for d in variants:
        assert_same_summary(evaluate(d, q_pids, g_pids, q_cams, g_cams), ref)
    t_ids = [torch.from_numpy(x) for x in (q_pids, g_pids, q_cams, g_cams)]
    assert_same_summary(evaluate(torch.from_numpy(dist), *t_ids), ref)
    lists = [x.tolist() for x in (dist, q_pids, g_pids, q_cams, g_cams)]
    assert_same_summary(evaluate(*lists), ref)


def test_string_pids():
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    a = evaluate(dist, ["bob", "eve"], ["eve", "bob", "bob"], protocol="regdb")
    b = evaluate(dist, [1, 2], [2, 1, 1], protocol="regdb")
    assert_same_summary(a, b)


def test_requires_grad_distmat():
    dist, *ids = _random_case(6)
    t = torch.tensor(dist, requires_grad=True)
    assert_same_summary(evaluate(t, *ids), evaluate(dist, *ids))


def test_features_float32_chunks_and_torch():
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((5, 16))
    q_pids, g_pids = rng.integers(0, 5, 40), rng.integers(0, 5, 70)
    q_cams, g_cams = rng.integers(1, 4, 40), rng.integers(1, 4, 70)
    qf = centres[q_pids] + 0.8 * rng.standard_normal((40, 16))
    gf = centres[g_pids] + 0.8 * rng.standard_normal((70, 16))
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    ids = (q_pids, g_pids, q_cams, g_cams)
    ref = evaluate(-(qn @ gn.T), *ids)
    for cs in (1, 7, None):
        assert_same_summary(evaluate_features(qf, gf, *ids, chunk_size=cs), ref, tol=1e-12)
    out32 = evaluate_features(torch.from_numpy(qf).float(), torch.from_numpy(gf).float(), *ids)
    assert_same_summary(out32, ref, tol=1e-12)  # float32 cosines do not reorder these well-separated items
    dist = cosine_distance(qf, gf)
    assert dist.dtype == torch.float64 and dist.shape == (40, 70)
    np.testing.assert_allclose(dist.numpy(), -(qn @ gn.T), rtol=0, atol=1e-12)
    assert_same_summary(evaluate(dist, *ids), evaluate_features(qf, gf, *ids))  # bit-identical distances


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    dist, *ids = _random_case(8)
    for protocol in ("hitsz_vcm", "sysu", "regdb"):
        cpu = per_query_metrics(dist, *ids, protocol=protocol)
        gpu = per_query_metrics(torch.from_numpy(dist).cuda(), *ids, protocol=protocol)
        for field in ("valid", "first_match_rank", "cmc_rank", "last_match_rank", "num_positives"):
            np.testing.assert_array_equal(getattr(gpu, field), getattr(cpu, field), err_msg=field)
        np.testing.assert_allclose(gpu.ap, cpu.ap, rtol=0, atol=1e-12)
    rng = np.random.default_rng(0)
    qf, gf = rng.standard_normal((23, 32)).astype(np.float32), rng.standard_normal((90, 32)).astype(np.float32)
    cpu_f = evaluate_features(qf, gf, *ids)
    gpu_f = evaluate_features(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda(), *ids)
    assert_same_summary(gpu_f, cpu_f, tol=1e-6)


# ------------------------------------------------------------------------------------------------
# Bad input


def test_errors_shapes():
    dist = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"distmat must be 2-D .* got shape \(12,\)"):
        evaluate(dist.ravel(), [0, 1, 2], [0, 1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match=r"q_pids has shape \(2,\), expected \(3,\): distmat has 3 rows"):
        evaluate(dist, [0, 1], [0, 1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match=r"g_pids has shape \(3,\), expected \(4,\): distmat has 4 columns"):
        evaluate(dist, [0, 1, 2], [0, 1, 2], protocol="regdb")
    with pytest.raises(ValueError, match=r"g_camids has shape \(5,\), expected \(4,\)"):
        evaluate(dist, [0, 1, 2], [0, 1, 2, 3], [1, 1, 1], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match=r"q_camids has shape \(3, 1\)"):
        evaluate(dist, [0, 1, 2], [0, 1, 2, 3], [[1], [1], [1]], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"feature dims differ: q_feats has shape \(3, 8\), g_feats has shape \(4, 9"):
        evaluate_features(np.ones((3, 8)), np.ones((4, 9)), [0, 1, 2], [0, 1, 2, 3], protocol="regdb")
    with pytest.raises(ValueError, match=r"g_pids has shape \(3,\), expected \(4,\): g_feats has 4 rows"):
        evaluate_features(np.ones((3, 8)), np.ones((4, 8)), [0, 1, 2], [0, 1, 2], protocol="regdb")


def test_errors_protocol_and_camids():
    dist = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"unknown protocol 'market'; valid protocols: 'hitsz_vcm', 'sysu', 'regdb'"):
        evaluate(dist, [0, 1], [0, 1], [1, 1], [2, 2], protocol="market")
    for protocol in ("hitsz_vcm", "sysu"):
        with pytest.raises(ValueError, match=rf"protocol '{protocol}' needs q_camids and g_camids.*missing: g_camids"):
            evaluate(dist, [0, 1], [0, 1], [1, 1], None, protocol=protocol)
    assert evaluate(dist, [0, 1], [0, 1], protocol="regdb")["num_valid_queries"] == 2


def test_errors_values():
    dist = np.array([[0.1, 0.2], [0.2, 0.1]])
    with pytest.raises(ValueError, match=r"no valid query: none of the 2 queries .* 'hitsz_vcm'"):
        evaluate(dist, [0, 1], [0, 1], [1, 2], [1, 2])  # every positive shares the query's camera
    with pytest.raises(ValueError, match="no valid query"):
        evaluate(np.zeros((2, 0)), [0, 1], np.zeros(0, dtype=int), protocol="regdb")
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.array([[0.1, np.nan], [0.2, 0.1]]), [0, 1], [0, 1], protocol="regdb")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_rank must be a positive integer"):
            evaluate(dist, [0, 1], [0, 1], protocol="regdb", max_rank=bad)
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            evaluate(dist, [0, 1], [0, 1], protocol="regdb", chunk_size=bad)
    with pytest.raises(ValueError, match="q_camids must hold integers"):
        evaluate(dist, [0, 1], [0, 1], [1.5, 2.0], [1, 2])
    with pytest.raises(ValueError, match="pids must be integers or labels"):
        evaluate(dist, [0.5, 1.0], [0, 1], protocol="regdb")
