"""Embedding a split and scoring both directions: one extraction per set, directions are each other's swap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cmft.data import load_hitsz_vcm
from cmft.evaluation import evaluate_features
from cmft.evaluation.retrieval import ClipSpec, evaluate_directions, extract_embeddings, score_directions
from cmft.models import GreyMotionDescriptor


def test_extract_embeddings_order_labels_and_flip(tiny_vcm: Path) -> None:
    ds = load_hitsz_vcm(tiny_vcm)
    spec = ClipSpec(seq_len=4, height=32, width=16, batch_size=1, workers=0)
    calls: list[tuple[int, int]] = []
    e = extract_embeddings(GreyMotionDescriptor((4, 2)), ds.test_rgb, spec, progress=lambda d, t: calls.append((d, t)))
    assert e.feats.shape == (2, 16)
    assert e.pids.tolist() == [t.pid for t in ds.test_rgb] and e.camids.tolist() == [t.camid for t in ds.test_rgb]
    assert calls == [(1, 2), (2, 2)]
    # flip averages each clip's embedding with its mirror image's: an embedding that mirroring negates (left
    # half minus right half) averages to zero, one that mirroring keeps (the clip mean) stays as it was
    def left_minus_right(clips: torch.Tensor, modality: str) -> torch.Tensor:
        w = clips.shape[-1] // 2
        return (clips[..., :w] - clips[..., -w:].flip(-1)).mean(dim=(1, 3, 4))

    def mean(clips: torch.Tensor, modality: str) -> torch.Tensor:
        return clips.mean(dim=(1, 3, 4))

    flip = ClipSpec(4, 32, 16, 1, 0, flip=True)
    plain = extract_embeddings(left_minus_right, ds.test_rgb, spec).feats
    assert plain.abs().max() > 1e-3  # the frames are not mirror-symmetric, so the test can tell
    assert torch.allclose(extract_embeddings(left_minus_right, ds.test_rgb, flip).feats, torch.zeros_like(plain), atol=1e-6)
    assert torch.allclose(extract_embeddings(mean, ds.test_rgb, flip).feats, extract_embeddings(mean, ds.test_rgb, spec).feats,
                          atol=1e-6)


def test_directions_swap_query_and_gallery(tiny_vcm: Path) -> None:
    ds = load_hitsz_vcm(tiny_vcm)
    spec = ClipSpec(seq_len=4, height=32, width=16, workers=0)
    seen: list[str] = []

    def embed(clips: torch.Tensor, modality: str) -> torch.Tensor:
        seen.append(modality)
        return GreyMotionDescriptor((4, 2))(clips)

    res = evaluate_directions(embed, ds, spec)
    assert set(res) == {"ir2rgb", "rgb2ir"} and seen == ["ir", "rgb"]  # each set embedded once
    ir = extract_embeddings(GreyMotionDescriptor((4, 2)), ds.test_ir, spec)
    rgb = extract_embeddings(GreyMotionDescriptor((4, 2)), ds.test_rgb, spec)
    expect = evaluate_features(rgb.feats, ir.feats, rgb.pids, ir.pids, rgb.camids, ir.camids, protocol="hitsz_vcm")
    np.testing.assert_allclose(res["rgb2ir"]["cmc"], expect["cmc"])
    assert res["rgb2ir"]["mAP"] == expect["mAP"]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.mark.parametrize("device", DEVICES)
def test_scoring_on_a_device_gives_the_host_metrics(tiny_vcm: Path, device: str) -> None:
    """``score_directions(..., device=)`` computes distances and the metric kernel on that device (the GPU path of
    ``cmft eval`` and in-training evaluation) and gives the metrics of the features where they are."""
    ds = load_hitsz_vcm(tiny_vcm)
    spec = ClipSpec(seq_len=4, height=32, width=16, workers=0)
    sets = {"ir": extract_embeddings(GreyMotionDescriptor((4, 2)), ds.test_ir, spec),
            "rgb": extract_embeddings(GreyMotionDescriptor((4, 2)), ds.test_rgb, spec)}
    host = score_directions(sets, protocol="hitsz_vcm")
    there = score_directions(sets, protocol="hitsz_vcm", device=device)
    for d in ("ir2rgb", "rgb2ir"):
        np.testing.assert_allclose(there[d]["cmc"], host[d]["cmc"], atol=1e-6)
        assert there[d]["mAP"] == pytest.approx(host[d]["mAP"], abs=1e-6) and there[d]["num_valid_queries"] == host[d]["num_valid_queries"]
