"""The modality-gap levers (grayscale, channel exchange, cross-modal triplet, cosine classifier, GeM), the
training diagnostics, and that the real objective's gradients reach every trainable parameter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmft.config import LossConfig
from cmft.data import ClipAugment, build_clip_transform
from torchvision.transforms import v2

from cmft.data.transforms import ChannelExchange
from cmft.engine.trainer import identity_accuracies
from cmft.evaluation.diagnostics import diagnose, modality_gap, same_modality_retrieval
from cmft.evaluation.retrieval import Embeddings
from cmft.losses.distance import euclidean_dist
from cmft.losses.objective import Objective
from cmft.losses.triplet import cross_modal_triplet
from cmft.models import create_model
from cmft.models.heads import GeM


def _unnormalise(clip: torch.Tensor) -> torch.Tensor:
    return clip * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + torch.tensor([0.485, 0.456, 0.406])[:, None, None]


def _grey_frames(clip: torch.Tensor) -> list[bool]:
    raw = _unnormalise(clip)
    return [bool(torch.allclose(f[0], f[1], atol=1e-5) and torch.allclose(f[1], f[2], atol=1e-5)) for f in raw]


@pytest.mark.parametrize("lever", ["gray_p", "channel_p"])
def test_rgb_grey_levers_act_on_whole_clips_and_rgb_only(lever: str) -> None:
    plain = {"flip_p": 0.0, "pad": 0, "erase_p": 0.0}
    tf = build_clip_transform("rgb", True, 24, 12, ClipAugment(**plain, **{lever: 0.5}))
    clip = torch.randint(0, 256, (4, 3, 24, 12), dtype=torch.uint8)  # four different colour frames
    kinds = []
    for seed in range(40):
        torch.manual_seed(seed)
        grey = _grey_frames(tf(clip))
        assert len(set(grey)) == 1, grey  # one draw per clip: all frames grey or none
        kinds.append(grey[0])
    assert 0 < sum(kinds) < 40  # p = 0.5 does both
    # the IR transform never applies them (IR frames are grey already; jitter and blur stay)
    ir = build_clip_transform("ir", True, 24, 12, ClipAugment(**plain, **{lever: 1.0}))
    assert not any(isinstance(t, (v2.RandomGrayscale, ChannelExchange)) for t in ir.transforms)
    with pytest.raises(ValueError, match=lever):
        ClipAugment(**{lever: 1.5})


def test_channel_exchange_draws_each_channel() -> None:
    clip = torch.stack([torch.full((2, 3), float(c)) for c in range(3)]).unsqueeze(0).repeat(2, 1, 1, 1)  # (T, 3, 2, 3)
    torch.manual_seed(0)
    seen = {int(ChannelExchange(1.0)(clip)[0, 0, 0, 0]) for _ in range(60)}
    assert seen == {0, 1, 2}
    assert torch.equal(ChannelExchange(0.0)(clip), clip)


def _reference_cross_modal_triplet(rgb: torch.Tensor, ir: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    d = euclidean_dist(rgb, ir).numpy()
    lab = labels.numpy()
    per_anchor = []
    for dist in (d, d.T):
        for i in range(len(lab)):
            pos = max(dist[i, j] for j in range(len(lab)) if lab[j] == lab[i])
            neg = min(dist[i, j] for j in range(len(lab)) if lab[j] != lab[i])
            per_anchor.append(max(0.0, pos - neg + margin))
    return float(np.mean(per_anchor))


def test_cross_modal_triplet_matches_a_plain_loop() -> None:
    torch.manual_seed(0)
    rgb, ir = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert float(cross_modal_triplet(rgb, ir, labels, 0.3)) == pytest.approx(_reference_cross_modal_triplet(rgb, ir, labels, 0.3), abs=1e-12)
    # it measures alignment: IR equal to RGB (and identities apart) costs nothing, the same IR shuffled costs
    far = torch.repeat_interleave(torch.eye(4, dtype=torch.float64) * 10, 2, 0)
    assert float(cross_modal_triplet(far, far.clone(), labels, 0.3)) == 0.0
    assert float(cross_modal_triplet(far, far[torch.randperm(8, generator=torch.Generator().manual_seed(1))], labels, 0.3)) > 1
    with pytest.raises(ValueError, match="two identities"):
        cross_modal_triplet(rgb, ir, torch.zeros(8, dtype=torch.long))


def test_cosine_classifier_and_gem() -> None:
    torch.manual_seed(0)
    model = create_model("cmft_r18", num_classes=5, classifier="cosine", cosine_scale=10.0, pool="gem").train()
    out = model(rgb=torch.randn(2, 3, 3, 64, 32), ir=torch.randn(2, 3, 3, 64, 32))
    for k in ("logits_rgb", "logits_ir", "logits_fused"):
        assert out[k].abs().max() <= 10.0 + 1e-4  # scale * cosine
    x = torch.rand(2, 3, 4, 5, 6) + 0.1
    gem = GeM(p=1.0)
    assert torch.allclose(gem(x, (1, 3, 4)), x.mean(dim=(1, 3, 4)), atol=1e-5)  # p = 1 is the mean
    assert (GeM(p=8.0)(x, (1, 3, 4)) > x.mean(dim=(1, 3, 4))).all()  # larger p leans to the max
    with pytest.raises(ValueError, match="classifier"):
        create_model("cmft_r18", num_classes=5, classifier="arc")
    with pytest.raises(ValueError, match="pool"):
        create_model("cmft_r18", num_classes=5, pool="max")


@pytest.mark.parametrize("name,args", [("cmft_r18", {"start": 6}), ("cmft_r18", {"start": 4, "share_from": 3}),
                                       ("dual_r18", {"classifier": "cosine", "pool": "gem"})])
@pytest.mark.parametrize("stage", [1, 2])
def test_real_objective_reaches_every_parameter(name: str, args: dict, stage: int) -> None:
    """No detached branch: the paper objective (plus the cross-modal triplet) trains every stream, fusion and head weight.

    The CCF gates start at zero (identity gating): level k's gate weights get a gradient once level k+1's
    are non-zero, so a cascade of n levels reaches its first level at step n. Take those steps first.
    """
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **args).train()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    rgb, ir = torch.randn(8, 3, 3, 64, 32), torch.randn(8, 3, 3, 64, 32)
    objective = Objective(LossConfig(warm_epochs=1, xmodal_weight=1.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(4):
        opt.zero_grad()
        loss, parts = objective(model(rgb=rgb, ir=ir), labels, stage)
        loss.backward()
        opt.step()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, dead
    assert ("cross" in parts) == (stage == 1) and ("mdl" in parts) == (stage == 2) and "xmodal" in parts


def test_identity_accuracies() -> None:
    labels = torch.tensor([0, 1, 2, 3])
    out = {"logits_rgb": torch.eye(4), "logits_ir": torch.eye(4).roll(1, 0)}
    assert identity_accuracies(out, labels) == {"acc_rgb": 1.0, "acc_ir": 0.0}


def _sets(aligned: bool) -> dict[str, Embeddings]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 16, generator=g)
    pids = np.repeat(np.arange(10), 4)
    cams = np.tile([1, 2, 1, 2], 10)
    rgb = centres[pids] + 0.1 * torch.randn(40, 16, generator=g)
    ir_centres = centres if aligned else torch.randn(10, 16, generator=g)
    ir = ir_centres[pids] + 0.1 * torch.randn(40, 16, generator=g)
    return {"rgb": Embeddings(rgb, pids, cams), "ir": Embeddings(ir, pids, cams)}


def test_diagnostics_tell_aligned_from_per_modality_models() -> None:
    aligned, split = diagnose(_sets(True)), diagnose(_sets(False))
    for d in (aligned, split):  # both know identities within each modality
        assert d["retrieval"]["rgb2rgb"]["rank1"] == 100.0 and d["retrieval"]["ir2ir"]["rank1"] == 100.0
    assert aligned["retrieval"]["ir2rgb"]["rank1"] == 100.0 and aligned["gap"]["cross_margin"] > 0.8
    assert split["retrieval"]["ir2rgb"]["rank1"] < 50.0 and abs(split["gap"]["cross_margin"]) < 0.2
    assert set(same_modality_retrieval(_sets(True))) == {"rgb2rgb", "ir2ir"}
    gap = modality_gap(_sets(True))
    assert gap["rgb_pos"] > gap["rgb_neg"] and -1 <= gap["centroid_cos"] <= 1


def test_shared_stages_run_jointly_in_training_and_agree_with_one_modality_at_test() -> None:
    torch.manual_seed(0)
    model = create_model("cmft_r18", num_classes=4, share_from=3, pool="gem")
    rgb, ir = torch.randn(2, 3, 3, 64, 32), torch.randn(2, 3, 3, 64, 32)
    shared_bn = model.rgb.layer2[0].bn1
    assert model.ir.layer2 is model.rgb.layer2
    model.train()
    before = shared_bn.num_batches_tracked.item()
    model(rgb=rgb, ir=ir)
    assert shared_bn.num_batches_tracked.item() == before + 1  # one joint batch, not two passes
    model.eval()
    both = model.forward_features(rgb=rgb, ir=ir)
    assert torch.allclose(both["feat_rgb"], model.forward_features(rgb=rgb)["feat_rgb"], atol=1e-5)
    assert torch.allclose(both["feat_ir"], model.forward_features(ir=ir)["feat_ir"], atol=1e-5)


def test_export_head_follows_gem_and_shared_stages() -> None:
    from cmft.inference.export import EmbeddingHead

    torch.manual_seed(0)
    model = create_model("cmft_r18", num_classes=4, share_from=2, pool="gem").eval()
    with torch.no_grad():
        model.pool.p.fill_(4.0)  # a learned exponent the export must carry
    x = torch.randn(2, 3, 3, 64, 32)
    for m in ("rgb", "ir"):
        assert torch.allclose(EmbeddingHead(model, m)(x), torch.nn.functional.normalize(model.embed(x, m), dim=1), atol=1e-5)
