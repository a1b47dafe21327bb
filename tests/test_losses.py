"""Losses against the reference implementations' values and gradients, and their degenerate batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cmft.losses import (
    batch_hard_triplet, cross_triplet, hetero_centre_triplet, identity_loss, mdl_loss, msrl_loss, wrt_loss,
)

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "pmt_MSEL_featnorm_no": lambda f, l: msrl_loss(f, l),
    "pmt_MSEL_featnorm_yes": lambda f, l: msrl_loss(f, l, normalize=True),
    "pmt_MSEL_Cos": lambda f, l: msrl_loss(f, l, metric="cosine"),
    "pmt_DCL_featnorm_no": lambda f, l: mdl_loss(f, l),
    "pmt_DCL_featnorm_yes": lambda f, l: mdl_loss(f, l, normalize=True),
    "pmt_Triplet_m0.1_all": lambda f, l: batch_hard_triplet(f, l, margin=0.1),
    "pmt_Triplet_m0.1_intra_stage1": lambda f, l: cross_triplet(*f.chunk(2), l.chunk(2)[0], margin=0.1),
    "agw_TripletLoss_WRT": wrt_loss,
    "agw_OriTripletLoss_m0.3": lambda f, l: batch_hard_triplet(f, l, margin=0.3),
    "hct_CenterTripletLoss_m0.3": lambda f, l: hetero_centre_triplet(f, l, margin=0.3),
}
BATCHES = ["b1_P4_K4_D16", "b2_P8_K4_D64"]


@pytest.fixture(scope="module")
def ref(golden: Path) -> tuple[dict, dict]:
    return json.loads((golden / "losses_tsm_golden.json").read_text())["batches"], dict(np.load(golden / "losses_tsm_golden.npz"))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_loss_matches_reference(ref: tuple[dict, dict], batch: str, name: str, dtype: torch.dtype) -> None:
    values, arrays = ref
    feats = torch.tensor(arrays[f"{batch}__feats"], dtype=dtype, requires_grad=True)
    labels = torch.tensor(arrays[f"{batch}__labels"])
    loss = LOSSES[name](feats, labels)
    loss.backward()
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    expected = values[batch][name]["value_float64" if dtype == torch.float64 else "value_float32"]
    assert loss.item() == pytest.approx(expected, abs=tol, rel=tol)
    np.testing.assert_allclose(feats.grad.double().numpy(), arrays[f"{batch}__{name}__grad_float64"], atol=tol, rtol=0)


def test_hetero_centre_triplet_when_active() -> None:
    # two ids in 1-D: RGB centres at 0 and 1, IR centres at 3 and 1.5
    f = torch.tensor([[0.0], [0.0], [1.0], [1.0], [3.0], [3.0], [1.5], [1.5]])
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    # centre rgb0=0: pos ir0 at 3, hardest neg rgb1 at 1 -> 3-1+0.3=2.3 ; rgb1=1: pos ir1 0.5, neg rgb0 1 -> 0 ;
    # ir0=3: pos 3, neg ir1 1.5 -> 1.8 ; ir1=1.5: pos 0.5, neg rgb0? d(1.5,0)=1.5, d(1.5,3)=1.5 -> 0
    assert hetero_centre_triplet(f, labels, margin=0.3).item() == pytest.approx((2.3 + 1.8) / 4, abs=1e-6)


def test_identity_loss_label_smoothing() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    p = torch.softmax(logits, 1)[0]
    expected = -(0.9 + 0.1 / 3) * p[0].log() - (0.1 / 3) * (p[1].log() + p[2].log())
    assert identity_loss(logits, torch.tensor([0]), smoothing=0.1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_mdl_negative_selections_order() -> None:
    torch.manual_seed(0)
    f, labels = torch.randn(16, 8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3] * 2)
    hard, dyn, every = (mdl_loss(f, labels, n).item() for n in ("hard", "dynamic", "all"))
    assert hard > dyn > every  # nearer negatives -> smaller an -> larger loss


def test_degenerate_batches_raise_clear_errors() -> None:
    f = torch.randn(8, 4)
    one_id = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="at least two identities"):
        batch_hard_triplet(f, one_id)
    with pytest.raises(ValueError, match="at least two identities"):
        mdl_loss(f, one_id)
    with pytest.raises(ValueError, match="K >= 2"):
        msrl_loss(f, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))  # K = 1: no intra-modality distance
    with pytest.raises(ValueError, match=r"\[l; l\]"):
        msrl_loss(f, torch.tensor([0, 0, 1, 1, 1, 1, 0, 0]))  # halves disagree
    with pytest.raises(ValueError, match=r"\[RGB; IR\]"):
        mdl_loss(f[:7], torch.zeros(7, dtype=torch.long))  # odd batch: a modality is missing a sample
    with pytest.raises(ValueError, match="unknown MSRL metric"):
        msrl_loss(f, torch.tensor([0, 0, 1, 1] * 2), metric="l1")  # type: ignore[arg-type]


def test_no_nan_on_duplicate_samples() -> None:
    # drawn with replacement: identical samples at distance zero must not give NaN values or gradients
    f = torch.randn(4, 6).repeat_interleave(2, 0).repeat(2, 1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3] * 2)
    total = msrl_loss(f, labels) + mdl_loss(f, labels) + batch_hard_triplet(f, labels, 0.1) + wrt_loss(f, labels)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(f.grad).all()
