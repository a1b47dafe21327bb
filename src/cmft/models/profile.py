"""Parameters and FLOPs of the paper's fusion variants (Tables 2 and 3), counted with fvcore.

fvcore counts one multiply-add as one FLOP (as the paper's tables do) and has no rule for
``scaled_dot_product_attention``, which ``nn.MultiheadAttention`` calls: :func:`sdpa_flop` supplies it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from cmft.models.registry import create_model

# (label, overrides, paper params of the fusion, paper FLOPs) from paper Tables 2 and 3
PAPER_VARIANTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("Score average", {"fusion": "score_avg"}, "-", "-"),
    ("Score multiplication", {"fusion": "score_mul"}, "-", "-"),
    ("Feature concatenation", {"fusion": "concat"}, "-", "-"),
    ("CMFT_S6F (single-branch)", {"fusion": "ccf", "start": 6, "branches": 1}, "8.39M", "1.24G"),
    ("CMFT_D6F (dual-branch)", {"fusion": "ccf", "start": 6, "branches": 2}, "17.29M", "1.63G"),
    ("CMFT_S6", {"fusion": "ccf", "start": 6, "branches": 2}, "20.65M", "4.27G"),
    ("CMFT_S5", {"fusion": "ccf", "start": 5, "branches": 2}, "24.34M", "6.06G"),
    ("CMFT_S4", {"fusion": "ccf", "start": 4, "branches": 2}, "27.71M", "7.71G"),
    ("CMFT_S3", {"fusion": "ccf", "start": 3, "branches": 2}, "29.83M", "9.97G"),
    ("CMFT_S2", {"fusion": "ccf", "start": 2, "branches": 2}, "33.40M", "13.5G"),
]


def sdpa_flop(inputs: list, outputs: list) -> int:
    """Multiply-adds of attention: ``Q K^T`` and ``A V`` for q ``(..., L, E)``, k ``(..., S, E)``, v ``(..., S, Ev)``."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for n in q[:-2]:
        batch *= n
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


@dataclass
class ProfileRow:
    """One variant's counts (FLOPs as multiply-adds for one RGB + IR clip pair)."""

    variant: str
    fusion: str
    start: int | None
    branches: int | None
    params_total: int
    params_fusion: int
    flops_total: int
    flops_fusion: int
    params_ccf_conv6: int | None
    paper_params: str
    paper_flops: str

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if d["params_ccf_conv6"] is None:
            del d["params_ccf_conv6"]
        return d


def count_flops(model: torch.nn.Module, rgb: torch.Tensor, ir: torch.Tensor) -> dict[str, int]:
    """FLOPs by module name ('' = whole model) for one forward of a clip pair in eval mode."""
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # fvcore's import and the tracer warn about things that do not apply here
        from fvcore.nn import FlopCountAnalysis

        fa = FlopCountAnalysis(model, (rgb, ir)).set_op_handle("aten::scaled_dot_product_attention", sdpa_flop)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        return dict(fa.by_module())


def profile_variants(
    model: str = "cmft_r50", seq_len: int = 6, height: int = 256, width: int = 128, num_classes: int = 500,
    variants: list[tuple[str, dict[str, Any], str, str]] | None = None,
) -> list[ProfileRow]:
    """Count every paper variant on the same backbone and input size."""
    torch.manual_seed(0)
    rgb, ir = torch.randn(1, seq_len, 3, height, width), torch.randn(1, seq_len, 3, height, width)
    rows = []
    for label, overrides, p_params, p_flops in variants or PAPER_VARIANTS:
        m = create_model(model, num_classes=num_classes, **overrides)
        flops = count_flops(m, rgb, ir)
        fusion = m.fusion
        ccf = overrides["fusion"] == "ccf"
        rows.append(ProfileRow(
            variant=label,
            fusion=overrides["fusion"],
            start=overrides.get("start") if ccf else None,
            branches=overrides.get("branches") if ccf else None,
            params_total=sum(p.numel() for p in m.parameters()),
            params_fusion=0 if fusion is None else sum(p.numel() for p in fusion.parameters()),
            flops_total=int(flops[""]),
            flops_fusion=int(flops.get("fusion", 0)),
            params_ccf_conv6=sum(p.numel() for p in fusion.blocks["conv6"].parameters()) if ccf else None,
            paper_params=p_params,
            paper_flops=p_flops,
        ))
    return rows


def profile_markdown(rows: list[ProfileRow], setting: str) -> str:
    """The profile as a markdown table beside the paper's numbers."""
    lines = [
        f"# Fusion variants: parameters and FLOPs ({setting})", "",
        "FLOPs are multiply-adds (fvcore) for one RGB + IR clip pair. 'fusion' counts the fusion module only "
        "(the Conv6 reduce pair included); the paper's Table 2/3 columns are printed beside.", "",
        "| variant | params total | params fusion | params Conv6 CCF | FLOPs total | FLOPs fusion | paper params | paper FLOPs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        conv6 = "-" if r.params_ccf_conv6 is None else f"{r.params_ccf_conv6 / 1e6:.2f}M"
        lines.append(
            f"| {r.variant} | {r.params_total / 1e6:.2f}M | {r.params_fusion / 1e6:.2f}M | {conv6} | "
            f"{r.flops_total / 1e9:.2f}G | {r.flops_fusion / 1e9:.3f}G | {r.paper_params} | {r.paper_flops} |"
        )
    return "\n".join(lines) + "\n"
