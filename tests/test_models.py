"""The model: temporal shift against the official TSM, every registered variant end to end, weights I/O."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import models as tvm

from cmft.models import CMFT, create_model, list_models, temporal_shift
from cmft.models.backbones import build_stream
from cmft.models.ccf import CCF

TSM_CASES = {"tsm_nb2_T4_C16_H2_W3_div8": (4, 8), "tsm_nb1_T6_C12_H2_W2_div4": (6, 4)}


@pytest.mark.parametrize("case", sorted(TSM_CASES))
def test_temporal_shift_matches_official_tsm(golden: Path, case: str) -> None:
    z = np.load(golden / "losses_tsm_golden.npz")
    t, div = TSM_CASES[case]
    x = torch.tensor(z[f"{case}__x"], requires_grad=True)
    y = temporal_shift(x, t, div)
    np.testing.assert_array_equal(y.detach().numpy(), z[f"{case}__y"])
    (y * torch.tensor(z[f"{case}__w"])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), z[f"{case}__grad_x_of_sum_y_times_w"])


def test_temporal_shift_readable_example(golden: Path) -> None:
    ref = json.loads((golden / "losses_tsm_golden.json").read_text())["tsm_readable_example"]["output_by_frame"]
    x = (100 * torch.arange(4.0)[:, None] + torch.arange(8.0)[None]).view(4, 8, 1, 1)
    assert temporal_shift(x, 4, 4).view(4, 8).tolist() == ref


def test_temporal_shift_rejects_bad_frame_count() -> None:
    with pytest.raises(ValueError, match="not a multiple of n_segment"):
        temporal_shift(torch.zeros(5, 8, 1, 1), 2)


def _tiny(name: str) -> CMFT:
    torch.manual_seed(0)
    return create_model(name, num_classes=7)


@pytest.mark.parametrize("name", list_models())
def test_every_variant_trains_and_embeds(name: str) -> None:
    model = _tiny(name)
    model.train()
    rgb, ir = torch.randn(2, 4, 3, 64, 32), torch.randn(2, 4, 3, 64, 32)
    out = model(rgb=rgb, ir=ir)
    d = model.dim
    for m in ("rgb", "ir"):
        assert out[f"feat_{m}"].shape == out[f"bn_{m}"].shape == (2, d)
        assert out[f"logits_{m}"].shape == (2, 7)
    if model.fusion is not None:
        assert out["feat_fused"].shape == out["bn_fused"].shape == (2, model.fusion.out_dim)
        assert out["logits_fused"].shape == (2, 7)
    loss = sum(v.float().pow(2).mean() for k, v in out.items() if k.startswith("logits")) + out["bn_rgb"].mean()
    loss.backward()
    for stream in (model.rgb, model.ir):  # gradients reach the first layer of both streams
        first = next(stream.parameters())
        assert first.grad is not None and first.grad.abs().sum() > 0
    model.eval()
    for t in (2, 3, 5):  # any clip length at test time
        assert model(rgb=torch.randn(3, t, 3, 64, 32)).shape == (3, d)
        assert model(ir=torch.randn(1, t, 3, 64, 32)).shape == (1, d)
    pair = model(rgb=rgb[:, :3], ir=ir[:, :3])
    assert pair.dim() == 2 and pair.shape[0] == 2
    assert torch.equal(model.embed(rgb, "ir"), model(ir=rgb))


def test_fusion_is_a_side_path() -> None:
    model = _tiny("cmft_r18").eval()
    rgb, ir = torch.randn(2, 3, 3, 64, 32), torch.randn(2, 3, 3, 64, 32)
    alone = model.forward_features(rgb=rgb)["feat_rgb"]
    paired = model.forward_features(rgb=rgb, ir=ir)
    torch.testing.assert_close(paired["feat_rgb"], alone)
    assert "feat_fused" in paired


def test_ccf_gate_starts_as_identity() -> None:
    torch.manual_seed(0)
    block = CCF(in_dim=16, dim=8, prev_dim=12, branches=2, heads=2)
    zr, zi = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    a, _ = block(zr, zi, torch.randn(2, 5, 12))
    b, _ = block(zr, zi, torch.randn(2, 5, 12))
    torch.testing.assert_close(a, b)
    torch.nn.init.normal_(block.gate.weight)
    assert not torch.allclose(block(zr, zi, torch.randn(2, 5, 12))[0], a)
    with pytest.raises(ValueError, match="previous level"):
        block(zr, zi)


def test_ccf_returns_attention_and_keeps_no_tensor() -> None:
    """The attention weights come back to the caller; nothing of a forward pass stays on the module."""
    model = create_model("cmft_r18", start=5, branches=2, num_classes=5).train()
    rgb, ir = torch.randn(2, 2, 3, 64, 32), torch.randn(2, 2, 3, 64, 32)
    attention: dict[str, torch.Tensor] = {}
    model.forward_features(rgb=rgb, ir=ir, attention=attention)
    assert sorted(attention) == ["conv5", "conv6"]
    torch.testing.assert_close(attention["conv6"].sum(-1), torch.ones(2, 2))  # rows are distributions over IR tokens
    model.forward_features(rgb=rgb, ir=ir)
    for block in model.fusion.blocks.values():
        assert not any(isinstance(v, torch.Tensor) for v in vars(block).values())


@pytest.mark.parametrize("start", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("branches", [1, 2])
def test_every_start_level_and_branch_count(start: int, branches: int) -> None:
    """CCF blocks from conv{start} to conv6, each used: the two streams stay separate (an infrared input never
    moves the visible feature), the fused feature reads both inputs, and perturbing any one block's weights
    moves it (with the gates away from their identity initialisation)."""
    torch.manual_seed(start * 10 + branches)
    model = create_model("cmft_r18", start=start, branches=branches, num_classes=5).eval()
    assert list(model.fusion.blocks) == [f"conv{k}" for k in range(start, 7)]
    rgb, ir = torch.randn(2, 2, 3, 64, 32), torch.randn(2, 2, 3, 64, 32)
    with torch.no_grad():
        # the gates (eq. 6) start at the identity, zero weights: a level then reaches the output only once
        # training has moved the next level's gate, so move them as training would
        for block in model.fusion.blocks.values():
            if block.gate is not None:
                block.gate.weight.normal_(0, 0.1)
                block.gate.bias.normal_(0, 0.1)
        base = model.forward_features(rgb, ir)
        assert base["feat_fused"].shape == (2, 256 * branches)
        other_ir = model.forward_features(rgb, ir + torch.randn_like(ir))
        other_rgb = model.forward_features(rgb + torch.randn_like(rgb), ir)
        assert torch.equal(other_ir["feat_rgb"], base["feat_rgb"]) and torch.equal(other_rgb["feat_ir"], base["feat_ir"])
        assert not torch.allclose(other_ir["feat_fused"], base["feat_fused"], atol=1e-4)
        assert not torch.allclose(other_rgb["feat_fused"], base["feat_fused"], atol=1e-4)
        for name, block in model.fusion.blocks.items():
            saved = {k: v.clone() for k, v in block.state_dict().items()}
            for p in block.parameters():
                p.add_(0.5 * torch.randn_like(p))
            moved = model.forward_features(rgb, ir)["feat_fused"]
            block.load_state_dict(saved)
            assert not torch.allclose(moved, base["feat_fused"], atol=1e-4), name
        assert torch.equal(model.forward_features(rgb, ir)["feat_fused"], base["feat_fused"])  # restored exactly


def test_conv6_ccf_parameters_match_paper_table2() -> None:
    d6 = create_model("cmft_r50", start=6, branches=2, num_classes=500)
    s6 = create_model("cmft_r50", start=6, branches=1, num_classes=500)
    n_d6 = sum(p.numel() for p in d6.fusion.parameters())
    n_s6 = sum(p.numel() for p in s6.fusion.parameters())
    assert abs(n_d6 - 17.29e6) / 17.29e6 < 0.05  # paper Table 2: CMFT_D6F 17.29M
    assert 8e6 < n_s6 < 10e6  # paper: 8.39M for CMFT_S6F; our reading gives about 9.4M (see docs)


def test_shared_stages_share_weights() -> None:
    own = create_model("dual_r18", num_classes=5)
    shared = create_model("dual_r18", num_classes=5, share_from=3)
    assert shared.ir.layer2 is shared.rgb.layer2 and shared.ir.layer1 is not shared.rgb.layer1
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(shared) == n(own) - sum(p.numel() for p in own.rgb.layer2.parameters()) - sum(
        p.numel() for layer in (own.rgb.layer3, own.rgb.layer4) for p in layer.parameters()
    )
    assert shared(rgb=torch.randn(2, 2, 3, 64, 32), ir=torch.randn(2, 2, 3, 64, 32))["feat_ir"].shape == (2, 512)


def test_state_dict_round_trip(tmp_path: Path) -> None:
    model = _tiny("cmft_r18")
    model.train()
    model(rgb=torch.randn(4, 3, 3, 64, 32), ir=torch.randn(4, 3, 3, 64, 32))  # move BN running stats
    model.eval()
    torch.save({"model": model.state_dict(), "args": model.args}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    fresh = CMFT(**saved["args"])
    fresh.load_state_dict(saved["model"])
    fresh.eval()
    x, y = torch.randn(2, 3, 3, 64, 32), torch.randn(2, 3, 3, 64, 32)
    assert torch.equal(fresh(rgb=x), model(rgb=x))
    assert torch.equal(fresh(rgb=x, ir=y), model(rgb=x, ir=y))


def test_pretrained_from_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = tvm.resnet18()
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "r18.pth")
    stream = build_stream("resnet18", tmp_path / "r18.pth")
    assert "loaded" in stream.load_report
    torch.testing.assert_close(stream.layer3[1].conv1.net.weight, ref.layer3[1].conv1.weight)
    torch.testing.assert_close(stream.stem[0].weight, ref.conv1.weight)


def test_pretrained_through_torchvision_weights_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = tvm.ResNet18_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(2)
    ref = tvm.resnet18()
    torch.save(ref.state_dict(), cache / url.rsplit("/", 1)[1])
    stream = build_stream("resnet18", "imagenet")
    torch.testing.assert_close(stream.layer4[0].conv1.net.weight, ref.layer4[0].conv1.weight)


def test_pretrained_unavailable_warns_and_starts_from_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: the download fails at once
    with pytest.warns(UserWarning, match="unavailable.*from scratch"):
        stream = build_stream("resnet18", "imagenet")
    assert "from scratch" in stream.load_report


def test_bad_pretrained_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_stream("resnet18", tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth: cannot read"):
        build_stream("resnet18", tmp_path / "junk.pth")
    torch.save({"other.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no tensor matches"):
        build_stream("resnet18", tmp_path / "other.pth")


def test_bad_model_arguments() -> None:
    with pytest.raises(ValueError, match="available: cmft_r18, cmft_r50"):
        create_model("cmft_r101")
    with pytest.raises(ValueError, match="unknown fusion"):
        create_model("cmft_r18", fusion="sum")
    with pytest.raises(ValueError, match="start level"):
        create_model("cmft_r18", start=7)
    with pytest.raises(ValueError, match="1 or 2 branches"):
        create_model("cmft_r18", branches=3)
    with pytest.raises(ValueError, match="bad argument"):
        create_model("cmft_r18", colour="red")
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        create_model("dual_r18")(rgb=torch.zeros(2, 3, 64, 32))


@pytest.mark.parametrize(("size_in", "size_out"), [((16, 8), (4, 2)), ((7, 5), (3, 2)), ((9, 4), (4, 4)), ((5, 3), (5, 3)),
                                                    ((11, 13), (6, 7))])
def test_exact_adaptive_pool_equals_pytorchs(size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
    """The CCF's pooling as two matrix products (its path under deterministic CUDA) gives adaptive_avg_pool2d's
    averages, windows that do not divide evenly included, and the same gradients."""
    import torch.nn.functional as F

    from cmft.models.ccf import exact_adaptive_avg_pool

    x = torch.randn(3, 4, *size_in, dtype=torch.float64, requires_grad=True)
    got, want = exact_adaptive_avg_pool(x, size_out), F.adaptive_avg_pool2d(x, size_out)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    g = torch.randn_like(want)
    (gx,) = torch.autograd.grad(got, x, g)
    (wx,) = torch.autograd.grad(want, x, g)
    torch.testing.assert_close(gx, wx, rtol=0, atol=1e-12)
