"""Clip transforms and loaders: shared random parameters per clip, shapes, modalities, workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cmft.config import DataConfig
from cmft.data.loader import ClipSpec
from cmft.data import ClipAugment, build_clip_transform, build_test_loader, build_train_loader, load_hitsz_vcm, read_frames


def _clip(t: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (1, 3, 40, 20), dtype=torch.uint8)
    return frame.repeat(t, 1, 1, 1)


@pytest.mark.parametrize("modality", ["rgb", "ir"])
def test_train_transform_shares_random_parameters_across_frames(modality: str) -> None:
    tf = build_clip_transform(modality, True, 32, 16, ClipAugment(erase_p=1.0, ir_blur_p=1.0))
    changed = 0
    for seed in range(10):
        torch.manual_seed(seed)
        out = tf(_clip())
        assert out.shape == (5, 3, 32, 16) and out.dtype == torch.float32
        assert torch.equal(out, out[:1].expand_as(out))  # identical input frames stay identical
        changed += int(not torch.equal(out[0], build_clip_transform(modality, False, 32, 16)(_clip(1))[0]))
    assert changed == 10  # and the augmentation really did something


def test_eval_transform_is_deterministic_and_normalised() -> None:
    tf = build_clip_transform("ir", False, 32, 16)
    a, b = tf(_clip()), tf(_clip())
    assert torch.equal(a, b)
    white = tf(torch.full((1, 3, 8, 4), 255, dtype=torch.uint8))
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_bad_modality() -> None:
    with pytest.raises(ValueError, match="unknown modality"):
        build_clip_transform("thermal", True, 8, 4)  # type: ignore[arg-type]


def test_read_frames_makes_ir_three_channel(tiny_vcm: Path) -> None:
    ds = load_hitsz_vcm(tiny_vcm)
    ir = ds.train_of("ir")[0]
    x = read_frames(ir.paths[:3], 24, 12)
    assert x.shape == (3, 3, 24, 12) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_unreadable_frame_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "1.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match=r"1\.jpg: cannot decode"):
        read_frames([str(bad)], 8, 4)


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_batches(tiny_vcm: Path, workers: int) -> None:
    ds = load_hitsz_vcm(tiny_vcm)
    loader = build_train_loader(ds, DataConfig(seq_len=4, height=32, width=16, num_ids=3, num_instances=1, workers=workers))
    loader.sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 1
    b = batches[0]
    assert b["rgb"].shape == b["ir"].shape == (3, 4, 3, 32, 16)
    assert sorted(b["label"].tolist()) == [0, 1, 2]


def test_test_loader_keeps_order_and_modality(tiny_vcm: Path) -> None:
    ds = load_hitsz_vcm(tiny_vcm)
    loader = build_test_loader(ds.test_ir, ClipSpec(seq_len=6, height=32, width=16, batch_size=1, workers=0))
    items = list(loader)
    assert [int(b["index"]) for b in items] == [0, 1]
    assert [int(b["pid"]) for b in items] == [t.pid for t in ds.test_ir]
    assert items[0]["clip"].shape == (1, 6, 3, 32, 16)
    with pytest.raises(ValueError, match="one modality"):
        build_test_loader(ds.test_ir + ds.test_rgb)


def test_test_sets_are_named_by_modality(vcm4) -> None:
    """``test_ir`` / ``test_rgb`` are the infrared and visible test sets; the old names still read, with a warning."""
    ds = load_hitsz_vcm(vcm4)
    assert {t.modality for t in ds.test_ir} == {"ir"} and {t.modality for t in ds.test_rgb} == {"rgb"}
    assert ds.split("ir2rgb") == (ds.test_ir, ds.test_rgb) and ds.split("rgb2ir") == (ds.test_rgb, ds.test_ir)
    with pytest.warns(DeprecationWarning, match="test_ir"):
        assert ds.query_ir == ds.test_ir
    with pytest.warns(DeprecationWarning, match="test_rgb"):
        assert ds.gallery_rgb == ds.test_rgb
