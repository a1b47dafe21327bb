"""k-reciprocal re-ranking: equal to the straightforward dense implementation (cmft.evaluation.reference), in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cmft.evaluation.reranking as rerank_module
from cmft.evaluation import evaluate, rerank
from cmft.evaluation.reference import reference_rerank


def _features(seed: int, nq: int, ng: int, ids: int = 6, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    q = centres[rng.integers(0, ids, nq)] + 0.6 * rng.standard_normal((nq, dim))
    g = centres[rng.integers(0, ids, ng)] + 0.6 * rng.standard_normal((ng, dim))
    return q.astype(np.float32), g.astype(np.float32)


@pytest.mark.parametrize(("seed", "nq", "ng", "k1", "k2", "lam"), [
    (0, 12, 30, 20, 6, 0.3),  # the paper's parameters (k1 larger than some neighbourhoods)
    (1, 25, 40, 5, 3, 0.3),  # k1 / 2 = 2.5 rounds to 2, as NumPy rounds
    (2, 7, 19, 4, 1, 0.0),  # no query expansion, Jaccard only
    (3, 30, 30, 8, 4, 1.0),  # lambda 1: the original distance
])
def test_equals_the_dense_reference(seed: int, nq: int, ng: int, k1: int, k2: int, lam: float) -> None:
    q, g = _features(seed, nq, ng)
    got = rerank(q, g, k1=k1, k2=k2, lambda_value=lam, device="cpu")
    assert got.shape == (nq, ng) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_rerank(q, g, k1, k2, lam), rtol=0, atol=2e-6)


@pytest.mark.parametrize("k1", [1, 2, 3, 7, 12, 40])
@pytest.mark.parametrize("k2", [1, 2, 4, 6, 9, 15, 40])
def test_every_k1_k2_equals_the_dense_reference(k1: int, k2: int) -> None:
    """The grid includes k2 > k1 + 1 (the query expansion needs more neighbours than R(i, k1) reads), k1 >= N
    and k2 > N (N = 3 + 9 = 12 features)."""
    q, g = _features(7 + k1 + 10 * k2, 3, 9, ids=3)
    for lam in (0.0, 0.3):
        np.testing.assert_allclose(rerank(q, g, k1=k1, k2=k2, lambda_value=lam, device="cpu"),
                                   reference_rerank(q, g, k1, k2, lam), rtol=0, atol=2e-6, err_msg=f"{k1=} {k2=} {lam=}")


def test_clustered_features_with_a_wide_expansion() -> None:
    """20 queries x 80 gallery features in clusters, k1 = 3 and k2 = 6: the same matrix and the same top-1 as the
    reference (the case that once differed by 0.40)."""
    q, g = _features(11, 20, 80, ids=8)
    got, want = rerank(q, g, k1=3, k2=6, device="cpu"), reference_rerank(q, g, 3, 6, 0.3)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert (got.argmin(axis=1) == want.argmin(axis=1)).all()


def test_ties_take_the_lower_index_first() -> None:
    """Exact ties at every neighbour cut: 4-hot features in 8 dimensions (normalised entries 0.5, every distance
    a multiple of 0.5, exact in any summation order). Both paths keep the lower index first, as a stable sort
    orders them, so the fast path equals the reference."""
    rng = np.random.default_rng(12)
    feats = np.zeros((24, 8), np.float32)
    for row in feats:
        row[rng.choice(8, 4, replace=False)] = 1
    q, g = feats[:6], feats[6:]
    for k1, k2 in [(1, 2), (2, 3), (3, 5), (4, 8), (5, 2), (9, 13), (20, 6)]:
        np.testing.assert_allclose(rerank(q, g, k1=k1, k2=k2, device="cpu"), reference_rerank(q, g, k1, k2, 0.3),
                                   rtol=0, atol=2e-6, err_msg=f"{k1=} {k2=}")
    d = torch.tensor([[0.5, 0.1, 0.5, 0.1, 0.5, 0.9]])
    assert rerank_module._smallest_stable(d, 3).tolist() == [[1, 3, 0]]
    assert rerank_module._smallest_stable(d, 5).tolist() == [[1, 3, 0, 2, 4]]


def test_small_blocks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every blocked step (distances, expansion, weights, Jaccard) agrees with itself at a tiny budget."""
    q, g = _features(4, 20, 50)
    whole = rerank(q, g, device="cpu")
    monkeypatch.setattr(rerank_module, "_BLOCK_ELEMENTS", 97)
    monkeypatch.setattr(rerank_module, "_TRIPLES", 50)
    np.testing.assert_allclose(rerank(torch.from_numpy(q) * 3, torch.from_numpy(g), device="cpu"), whole, atol=2e-6)


def test_rerank_improves_a_clustered_retrieval() -> None:
    """On clustered features re-ranking does what it is for: mAP does not fall (and usually rises)."""
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 10, 200)
    centres = rng.standard_normal((10, 32))
    feats = (centres[ids] + 0.9 * rng.standard_normal((200, 32))).astype(np.float32)
    q, g, qp, gp = feats[:60], feats[60:], ids[:60], ids[60:]
    cams = np.zeros(60, np.int64), np.ones(140, np.int64)
    plain = evaluate(-(q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T,
                     qp, gp, *cams)
    reranked = evaluate(rerank(q, g, device="cpu"), qp, gp, *cams)
    assert reranked["mAP"] >= plain["mAP"]


def test_errors() -> None:
    q, g = _features(0, 3, 5)
    with pytest.raises(ValueError, match="one width"):
        rerank(q, g[:, :4])
    with pytest.raises(ValueError, match="k1 and k2"):
        rerank(q, g, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        rerank(q, g, lambda_value=1.5)


def test_cmft_eval_rerank(tiny_checkpoint, vcm4) -> None:
    """``cmft eval --rerank`` scores both directions on the re-ranked distances of the same embeddings."""
    import json

    from typer.testing import CliRunner

    from cmft.cli import app
    from cmft.data import load_hitsz_vcm
    from cmft.data.loader import ClipSpec
    from cmft.evaluation.trials import evaluate_checkpoint

    r = CliRunner().invoke(app, ["eval", str(tiny_checkpoint), "--data", str(vcm4), "--workers", "0", "--json",
                                 "--rerank", "--k1", "3", "--k2", "2", "--lambda", "0.5"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    sets = evaluate_checkpoint(tiny_checkpoint, load_hitsz_vcm(vcm4, splits=("test",)),
                               ClipSpec(3, 64, 32, 32, 0)).sets
    for direction, (q, g) in {"ir2rgb": (sets["ir"], sets["rgb"]), "rgb2ir": (sets["rgb"], sets["ir"])}.items():
        want = evaluate(rerank(q.feats, g.feats, 3, 2, 0.5), q.pids, g.pids, q.camids, g.camids)
        assert got[direction]["mAP"] == pytest.approx(want["mAP"], abs=1e-9)
    bad = CliRunner().invoke(app, ["eval", str(tiny_checkpoint), "--data", str(vcm4), "--rerank", "--k1", "0"])
    assert bad.exit_code == 2 and "--k1 >= 1" in bad.output
