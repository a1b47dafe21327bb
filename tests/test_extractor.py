"""The Extractor embeds tracklets in any form exactly as evaluation does, batched, any length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cmft.data import load_hitsz_vcm
from cmft.data.preprocess import normalize_clips
from cmft.engine.checkpoint import model_from_checkpoint
from cmft.evaluation.retrieval import ClipSpec, extract_embeddings
from cmft.inference import Extractor, frame_paths


def test_paths_match_evaluation_embeddings(tiny_checkpoint: Path, vcm4: Path) -> None:
    ds = load_hitsz_vcm(vcm4, splits=("test",))
    ex = Extractor(tiny_checkpoint, device="cpu", batch_size=2)
    assert (ex.height, ex.width, ex.seq_len) == (64, 32, 3)
    got = ex([list(t.paths) for t in ds.test_ir], "ir")
    model = model_from_checkpoint(tiny_checkpoint)
    ref = extract_embeddings(model.embed, ds.test_ir, ClipSpec(3, 64, 32, 4, 0)).feats
    ref = torch.nn.functional.normalize(ref, dim=1).numpy()
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.allclose(got, ref, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert np.allclose(ex(ds.test_ir, "ir"), got, atol=1e-6)  # Tracklet objects too


def test_folder_array_tensor_forms_agree(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (7, 64, 32, 3), dtype=np.uint8)  # already at the model's size: no resampling differences
    folder = tmp_path / "t"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i + 1}.png")
    assert [Path(p).name for p in frame_paths(folder)][:3] == ["1.png", "2.png", "3.png"]
    ex = Extractor(tiny_checkpoint, device="cpu")
    a = ex(folder, "rgb")
    b = ex(frames, "rgb")
    c = ex(torch.from_numpy(frames).permute(0, 3, 1, 2), "rgb")
    d = ex(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, "rgb")
    assert a.shape == (1, ex.dim)
    for other in (b, c, d):
        assert np.allclose(a, other, atol=1e-5)
    one = ex(frames[:1], "ir")  # a single frame is a valid tracklet (padded to the clip length)
    assert one.shape == (1, ex.dim) and not np.allclose(one, ex(frames[:1], "rgb"))  # the modality picks the stream
    many = ex([frames, frames[::-1], folder], "rgb")
    assert many.shape == (3, ex.dim) and np.allclose(many[0], a[0], atol=1e-5)


def test_extractor_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ex = Extractor(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="modality"):
        ex(np.zeros((2, 8, 8, 3), np.uint8), "thermal")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        ex(np.zeros((8, 8, 3), np.uint8), "rgb")
    with pytest.raises(FileNotFoundError, match="nope"):
        ex(tmp_path / "nope", "rgb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        ex(tmp_path / "empty", "rgb")
    with pytest.raises(FileNotFoundError):
        Extractor(tmp_path / "missing.pt")


def test_tracker_crop_is_a_still_clip_of_the_model_length(tiny_checkpoint: Path) -> None:
    """The tracker's appearance model embeds a crop as the model's own T-frame clip of it (the crop repeated T
    times), never as a one-frame clip whose temporal shift would zero channels the model never saw zeroed."""
    from cmft.tracking.appearance import CMFTEmbedder

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)  # BGR, as OpenCV decodes
    boxes = np.array([[10, 5, 42, 69], [50, 40, 82, 104]], np.float64)  # 32 x 64: the model's size, no resampling
    emb = CMFTEmbedder(tiny_checkpoint, "ir", device="cpu")
    got = emb(frame, boxes)
    ex = emb.extractor
    assert ex.seq_len == 3
    model = model_from_checkpoint(tiny_checkpoint)
    for row, (x1, y1, x2, y2) in zip(got, boxes.astype(int)):
        crop = torch.from_numpy(np.ascontiguousarray(frame[y1:y2, x1:x2, ::-1])).permute(2, 0, 1)  # RGB (3, 64, 32)
        still = crop.unsqueeze(0).repeat(ex.seq_len, 1, 1, 1)  # the model's T-frame clip of the crop
        ref = torch.nn.functional.normalize(model.embed(normalize_clips(still).unsqueeze(0), "ir"), dim=1)[0]
        assert np.allclose(row, ref.numpy(), atol=1e-5)
        one_frame = torch.nn.functional.normalize(model.embed(normalize_clips(crop[None]).unsqueeze(0), "ir"), dim=1)[0]
        assert not np.allclose(row, one_frame.numpy(), atol=1e-3)  # what a T = 1 clip would have given
