"""ONNX / TorchScript export of a real checkpoint, run with ONNX Runtime and torch.jit against PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cmft.cli import app
from cmft.engine.checkpoint import model_from_checkpoint
from cmft.inference.export import (MEAN, STD, export_onnx, export_torchscript, random_clips,
                                   verify_onnx, verify_torchscript)
from cmft.models.temporal_shift import TemporalShift, temporal_shift

H, W = 64, 32  # the tiny checkpoint's frame size


def reference(model: torch.nn.Module, clips: torch.Tensor, modality: str) -> np.ndarray:
    with torch.no_grad():
        return F.normalize(model.embed(clips, modality), dim=1).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def model(tiny_checkpoint: Path) -> torch.nn.Module:
    return model_from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def onnx_export(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``cmft export --format onnx --modality both`` once for the module (the dynamo export takes seconds)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path_factory.mktemp("onnx") / "emb.onnx"
    r = CliRunner().invoke(app, ["export", str(tiny_checkpoint), "--format", "onnx", "--modality", "both", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out.parent, r.output


def test_temporal_shift_equals_the_in_place_reference() -> None:
    """The export-friendly shift (slices, pad, cat) gives the official in-place code's values bit for bit."""
    torch.manual_seed(0)
    for t, c in ((1, 16), (2, 16), (4, 16), (3, 20), (3, 4)):  # (3, 4): fold 0, nothing shifted
        x = torch.randn(2 * t, c, 3, 2)
        x5, fold = x.view(2, t, c, 3, 2), c // 8
        ref = torch.zeros_like(x5)
        ref[:, :-1, :fold] = x5[:, 1:, :fold]
        ref[:, 1:, fold:2 * fold] = x5[:, :-1, fold:2 * fold]
        ref[:, :, 2 * fold:] = x5[:, :, 2 * fold:]
        assert torch.equal(temporal_shift(x, t, 8), ref.view_as(x)), (t, c)
        assert torch.equal(TemporalShift(torch.nn.Identity(), n_segment=t, fold_div=8)(x), ref.view_as(x))


@pytest.mark.parametrize("modality", ["rgb", "ir"])
def test_onnx_matches_pytorch_dynamic_batch_and_clip_length(onnx_export: tuple[Path, str], model: torch.nn.Module,
                                                            modality: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_export[0] / f"emb_{modality}.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "clips" and inp.shape == ["batch", "clip_len", 3, H, W] and inp.type == "tensor(float)"
    assert outp.name == "embedding" and outp.shape[0] == "batch"
    for b in (1, 3):
        for t in (3, 5):  # exported with 3-frame clips; 5 frames only works if the shift reshapes by the input's T
            clips = random_clips(b, t, H, W, seed=10 * b + t)
            got = session.run(None, {"clips": clips.numpy()})[0]
            ref = reference(model, clips, modality)
            assert got.shape == ref.shape == (b, 512) and got.dtype == np.float32
            assert np.abs(got - ref).max() < 1e-4, (modality, b, t)
            assert cosine(got, ref).min() > 0.9999, (modality, b, t)
            assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    other = "ir" if modality == "rgb" else "rgb"  # the file embeds its own modality's stream, not the other one
    clips = random_clips(2, 4, H, W, seed=1)
    assert cosine(session.run(None, {"clips": clips.numpy()})[0], reference(model, clips, other)).min() < 0.999


def test_onnx_sidecar_and_printed_verification(onnx_export: tuple[Path, str], tiny_checkpoint: Path) -> None:
    import onnx

    folder, output = onnx_export
    assert sorted(p.name for p in folder.iterdir()) == ["emb_ir.json", "emb_ir.onnx", "emb_rgb.json", "emb_rgb.onnx"]
    for modality in ("rgb", "ir"):
        meta = json.loads((folder / f"emb_{modality}.json").read_text())
        assert meta["modality"] == modality and meta["format"] == "onnx" and meta["opset"] == 18
        assert (meta["height"], meta["width"], meta["seq_len"], meta["embedding_dim"]) == (H, W, 3, 512)
        assert meta["input"]["mean"] == list(MEAN) and meta["input"]["std"] == list(STD)
        assert meta["input"]["shape"] == ["batch", "clip_len", 3, H, W]
        assert meta["checkpoint"] == str(tiny_checkpoint.resolve()) and meta["model_name"] == "cmft_r18"
        v = meta["verification"]
        assert v["max_abs_diff"] < 1e-4 and v["min_cosine"] > 0.9999 and v["provider"] == "CPUExecutionProvider"
        assert {(c["batch"], c["clip_len"]) for c in v["cases"]} == {(1, 3), (1, 5), (3, 3), (3, 5)}
        props = {p.key: json.loads(p.value) for p in onnx.load(str(folder / f"emb_{modality}.onnx")).metadata_props}
        assert props["cmft.modality"] == modality and props["cmft.height"] == H
    assert "max abs diff" in output and "min cosine" in output and "emb_ir.onnx" in output


def test_verify_onnx_reports_a_mismatch(onnx_export: tuple[Path, str], tiny_checkpoint: Path) -> None:
    wrong = verify_onnx(onnx_export[0] / "emb_rgb.onnx", tiny_checkpoint, "ir", batch_sizes=(2,), clip_lengths=(4,))
    assert wrong["min_cosine"] < 0.999 and wrong["max_abs_diff"] > 1e-3  # the RGB file checked against the IR stream


def test_torchscript_matches_and_loads_without_cmft(tiny_checkpoint: Path, model: torch.nn.Module, tmp_path: Path) -> None:
    rgb = tmp_path / "emb_rgb.torchscript"
    meta = export_torchscript(tiny_checkpoint, rgb, "rgb")
    assert (meta["height"], meta["width"], meta["seq_len"]) == (H, W, 3)
    v = verify_torchscript(rgb, model, "rgb", batch_sizes=(1, 3), clip_lengths=(3, 5))
    assert v["max_abs_diff"] < 1e-4 and v["min_cosine"] > 0.9999
    # the CLI path for the other modality: file, sidecar, verification
    r = CliRunner().invoke(app, ["export", str(tiny_checkpoint), "-f", "torchscript", "--modality", "ir",
                                 "--out", str(tmp_path / "emb_ir.torchscript")])
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / "emb_ir.json").read_text())
    assert side["format"] == "torchscript" and side["modality"] == "ir" and side["verification"]["min_cosine"] > 0.9999

    clips = {"rgb": random_clips(3, 5, H, W, seed=3), "ir": random_clips(1, 2, H, W, seed=4)}  # T differs from the trace's 3
    torch.save(clips, tmp_path / "clips.pt")
    script = (
        "import sys, json\n"
        "sys.modules['cmft'] = None  # any import of cmft now fails\n"
        "import torch\n"
        "clips = torch.load(sys.argv[1] + '/clips.pt')\n"
        "out = {}\n"
        "for m in ('rgb', 'ir'):\n"
        "    extra = {'cmft.json': ''}\n"
        "    module = torch.jit.load(f'{sys.argv[1]}/emb_{m}.torchscript', _extra_files=extra)\n"
        "    assert json.loads(extra['cmft.json'])['modality'] == m\n"
        "    with torch.no_grad():\n"
        "        out[m] = module(clips[m])\n"
        "torch.save(out, sys.argv[1] + '/out.pt')\n"
        "assert not [k for k, v in sys.modules.items() if k.startswith('cmft') and v is not None]\n"
    )
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = torch.load(tmp_path / "out.pt")
    for m in ("rgb", "ir"):
        ref = reference(model, clips[m], m)
        assert out[m].shape == ref.shape and np.abs(out[m].numpy() - ref).max() < 1e-4
        assert cosine(out[m].numpy(), ref).min() > 0.9999


def test_cli_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    def fails(args: list[str], *needles: str) -> None:
        r = runner.invoke(app, ["export", *args])
        assert r.exit_code == 2, r.output
        text = " ".join(r.output.split())
        for needle in needles:
            assert needle in text, (needle, text)

    fails([str(tmp_path / "missing.pt")], "missing.pt", "checkpoint not found")
    (tmp_path / "torn.pt").write_bytes(b"\x80\x02 not a torch file")
    fails([str(tmp_path / "torn.pt")], "torn.pt", "cannot read as a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    fails([str(tmp_path / "foreign.pt")], "not a cmft checkpoint")
    fails([str(tiny_checkpoint), "--format", "tflite"], "--format must be one of onnx, torchscript", "'tflite'")
    fails([str(tiny_checkpoint), "--modality", "thermal"], "--modality must be one of rgb, ir, both", "'thermal'")
    fails([str(tiny_checkpoint), "--opset", "3"], "--opset")
    (tmp_path / "a_file").write_text("x")
    fails([str(tiny_checkpoint), "--out", str(tmp_path / "a_file" / "emb.onnx")], "cannot write to", "a_file")
    fails([str(tiny_checkpoint), "--out", str(tmp_path)], "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "foreign.pt", "torn.pt"]  # nothing written


def test_bare_model_needs_input_size(model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="height= and width="):
        export_onnx(model, tmp_path / "x.onnx", "rgb")
    with pytest.raises(ValueError, match="modality"):
        export_torchscript(model, tmp_path / "x.torchscript", "thermal", height=H, width=W)
    assert not list(tmp_path.iterdir())
