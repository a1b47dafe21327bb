"""Per-modality backbone streams: TSM ResNet-50/18 (last stride 1) and torchvision's Video Swin-S.

A stream maps a clip batch ``(B, T, 3, H, W)`` to four feature levels ``(B, T', C_k, h_k, w_k)``:
the paper's Conv2..Conv5 (ResNet layer1..layer4, or the four Swin stages).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from cmft.models.temporal_shift import TemporalShift

Pretrained = str | Path | None
"""``None``: random init; ``"imagenet"`` (ResNet) or ``"kinetics"`` (Swin): torchvision's weights enum;
any other string: a local state-dict file."""

_RESNETS = {
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, (256, 512, 1024, 2048)),
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, (64, 128, 256, 512)),
}


def _clean_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or one under ``state_dict``/``model``; strip DDP's ``module.`` prefix."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{source}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(module: nn.Module, pretrained: Pretrained, enum: object, name: str) -> str:
    """Load weights into ``module``; returns a one-line account (what was loaded, or why random init).

    A local file is read with ``weights_only=True``; missing or unexpected keys are reported, not fatal.
    The enum path uses torchvision's cache (``$TORCH_HOME/hub/checkpoints``) and downloads only where
    a network exists; when neither works, warn once and keep the random init.
    """
    if pretrained is None:
        return f"{name}: random init"
    if str(pretrained) in ("imagenet", "kinetics"):
        try:
            state = enum.get_state_dict(progress=False)  # type: ignore[attr-defined]
        except Exception as e:  # no network and not cached: any of URLError, OSError, RuntimeError
            msg = f"{name}: pretrained weights {enum} unavailable ({type(e).__name__}); training from scratch"
            warnings.warn(msg, stacklevel=3)
            return msg
        source = str(enum)
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pretrained weights file not found")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: cannot read as a torch state dict ({e})") from None
        state, source = _clean_state_dict(raw, str(path)), str(path)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    result = module.load_state_dict(usable, strict=False)
    # the pretraining task's classifier is dropped on purpose
    unexpected = sorted(k for k in set(state) - set(usable) if not k.startswith(("fc.", "head.")))
    msg = f"{name}: loaded {len(usable)} tensors from {source}"
    if result.missing_keys or unexpected:
        msg += f"; missing {len(result.missing_keys)} {result.missing_keys[:3]}, unused {len(unexpected)} {unexpected[:3]}"
        if not usable:
            raise ValueError(f"{source}: no tensor matches the {name} architecture ({msg})")
        warnings.warn(msg, stacklevel=3)
    return msg


class ResNetStream(nn.Module):
    """A torchvision ResNet with a temporal shift on conv1 of every block of layer1-4 and last stride 1."""

    def __init__(self, arch: str = "resnet50", pretrained: Pretrained = None, fold_div: int = 8, last_stride: int = 1) -> None:
        super().__init__()
        if arch not in _RESNETS:
            raise ValueError(f"unknown ResNet {arch!r}; choose one of {sorted(_RESNETS)}")
        build, enum, self.channels = _RESNETS[arch]
        net = build(weights=None)
        net.fc = nn.Identity()
        self.load_report = load_weights(net, pretrained, enum, arch)
        if last_stride == 1:
            first = net.layer4[0]
            conv = first.conv2 if isinstance(first, tvm.resnet.Bottleneck) else first.conv1
            conv.stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                block.conv1 = TemporalShift(block.conv1, fold_div=fold_div)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def share_stages(self, other: ResNetStream, first: int) -> None:
        """Use ``other``'s stages from index ``first`` (0 = layer1) on: one set of weights for both streams."""
        for k in range(first, 4):
            setattr(self, f"layer{k + 1}", getattr(other, f"layer{k + 1}"))

    def begin(self, clips: torch.Tensor) -> torch.Tensor:
        """The stem on ``(B, T, 3, H, W)`` clips -> frames ``(B*T, C, h, w)`` (and every shift told T)."""
        t = clips.shape[1]
        for m in self.modules():
            if isinstance(m, TemporalShift):
                m.n_segment = t
        return self.stem(clips.flatten(0, 1))

    def level(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """Frames ``(B*T, C, h, w)`` of ``b`` clips as a level ``(B, T, C, h, w)``."""
        return x.view(b, -1, *x.shape[1:])

    def forward_levels(self, clips: torch.Tensor) -> list[torch.Tensor]:
        return levels_of(self, clips)


class SwinStream(nn.Module):
    """torchvision's Video Swin-S (``swin3d_s``): patches of 2 frames, so T' = T / 2 tokens in time."""

    def __init__(self, pretrained: Pretrained = None) -> None:
        super().__init__()
        net = tvm.video.swin3d_s(weights=None)
        self.load_report = load_weights(net, pretrained, tvm.video.Swin3D_S_Weights.KINETICS400_V1, "swin3d_s")
        self.patch_embed, self.pos_drop = net.patch_embed, net.pos_drop
        f = net.features
        self.stage_list = nn.ModuleList([f[0], nn.Sequential(f[1], f[2]), nn.Sequential(f[3], f[4]), nn.Sequential(f[5], f[6])])
        self.norm = net.norm
        self.channels = (96, 192, 384, 768)

    def stages(self) -> list[nn.Module]:
        return list(self.stage_list)

    def share_stages(self, other: SwinStream, first: int) -> None:
        """Use ``other``'s stages from index ``first`` on."""
        for k in range(first, 4):
            self.stage_list[k] = other.stage_list[k]

    def begin(self, clips: torch.Tensor) -> torch.Tensor:
        """Patch embedding of ``(B, T, 3, H, W)`` clips -> ``(B, T', h, w, C)``."""
        return self.pos_drop(self.patch_embed(clips.transpose(1, 2)))

    def level(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """``(B, T', h, w, C)`` tokens as a level ``(B, T', C, h, w)`` (the last stage normalised)."""
        y = self.norm(x) if x.shape[-1] == self.channels[-1] else x
        return y.permute(0, 1, 4, 2, 3)

    def forward_levels(self, clips: torch.Tensor) -> list[torch.Tensor]:
        return levels_of(self, clips)


def levels_of(stream: nn.Module, clips: torch.Tensor) -> list[torch.Tensor]:
    """A stream's four levels ``(B, T', C_k, h_k, w_k)`` for a clip batch."""
    x, b, out = stream.begin(clips), clips.shape[0], []
    for stage in stream.stages():
        x = stage(x)
        out.append(stream.level(x, b))
    return out


def joint_levels(rgb_stream: nn.Module, ir_stream: nn.Module, rgb: torch.Tensor, ir: torch.Tensor, first_shared: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Both streams' levels when stages ``first_shared``.. are one module: those stages run once on the
    joint ``[RGB; IR]`` batch, so their BatchNorm normalises both modalities together in training exactly
    as its running statistics will at test time (two separate passes would train each modality on its
    own batch statistics and test it on a mix of both)."""
    b = rgb.shape[0]
    xr, xi = rgb_stream.begin(rgb), ir_stream.begin(ir)
    out_r: list[torch.Tensor] = []
    out_i: list[torch.Tensor] = []
    for k, (sr, si) in enumerate(zip(rgb_stream.stages(), ir_stream.stages())):
        if k < first_shared:
            xr, xi = sr(xr), si(xi)
        else:
            if sr is not si:
                raise ValueError(f"stage {k} is not shared by the two streams")
            x = sr(torch.cat([xr, xi]))
            xr, xi = x[: len(xr)], x[len(xr):]
        out_r.append(rgb_stream.level(xr, b))
        out_i.append(ir_stream.level(xi, b))
    return out_r, out_i


def build_stream(backbone: str, pretrained: Pretrained = None, fold_div: int = 8, last_stride: int = 1) -> nn.Module:
    """One modality's stream by backbone name: ``resnet50``, ``resnet18`` or ``swin3d_s``."""
    if backbone == "swin3d_s":
        return SwinStream(pretrained)
    if backbone in _RESNETS:
        return ResNetStream(backbone, pretrained, fold_div, last_stride)
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted([*_RESNETS, 'swin3d_s'])}")
