"""`cmft profile`: the JSON rows, and attention FLOPs that fvcore alone would miss."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from cmft.cli import app
from cmft.models.profile import count_flops


class _Attn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return self.mha(q, kv, kv, need_weights=False)[0]


def test_attention_flops_are_counted() -> None:
    b, lq, lk, d = 2, 5, 7, 16
    flops = count_flops(_Attn(), torch.randn(b, lq, d), torch.randn(b, lk, d))[""]
    projections = b * (lq * d * d + 2 * lk * d * d + lq * d * d)  # q, k, v in; out
    attention = b * lq * lk * d * 2  # Q K^T and A V over all heads
    assert flops == projections + attention


def test_profile_json_rows(tmp_path: Path) -> None:
    out = tmp_path / "profile.md"
    r = CliRunner().invoke(app, ["profile", "--json", "--model", "cmft_r18", "--seq-len", "2", "--height", "64", "--width", "32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert len(rows) == 10
    for row in rows:
        assert {"variant", "fusion", "start", "branches", "params_total", "params_fusion", "flops_fusion"} <= set(row)
        assert ("params_ccf_conv6" in row) == (row["fusion"] == "ccf")
    ccf = [row for row in rows if row["fusion"] == "ccf" and row["branches"] == 2]
    assert [row["start"] for row in ccf] == [6, 6, 5, 4, 3, 2]
    # each earlier start adds a CCF level: more fusion parameters and FLOPs
    assert all(a["params_fusion"] < b["params_fusion"] for a, b in zip(ccf[1:], ccf[2:]))
    assert all(a["flops_fusion"] < b["flops_fusion"] for a, b in zip(ccf[1:], ccf[2:]))
    score = [row for row in rows if row["fusion"].startswith("score")]
    assert all(row["params_fusion"] == 0 for row in score)
    assert "| CMFT_D6F (dual-branch) |" in out.read_text()


def test_profile_unknown_model() -> None:
    r = CliRunner().invoke(app, ["profile", "--model", "resnet"])
    assert r.exit_code == 2 and "available" in r.output
