"""Run configuration: typed sections read from YAML, dotted ``key=value`` overrides, saved with every run."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    """Where the dataset is and how clips and batches are made."""

    root: str = "out/synth"  # HITSZ-VCM, SYSU-MM01 or RegDB layout
    dataset: str = "auto"  # hitsz_vcm, sysu_mm01, regdb, or auto (from the folder's layout)
    trial: int | None = None  # RegDB split 1..10 (default 1); SYSU-MM01 gallery draw for in-training evaluation (default 0)
    search_mode: str = "all"  # SYSU-MM01 in-training evaluation: all or indoor search
    seq_len: int = 6  # frames per training clip
    height: int = 256
    width: int = 128
    num_ids: int = 8  # P identities per batch
    num_instances: int = 4  # K tracklets per identity and modality
    workers: int = 2
    skip_missing: bool = False  # drop frames listed but missing on disk
    gray_p: float = 0.0  # probability of a grey RGB training clip (random grayscale, one draw per clip)
    channel_p: float = 0.0  # probability of an RGB training clip seen through one random channel (CAJL)
    auxiliary: bool = False  # BUPTCampus: also train on train_auxiliary.txt
    protocol: str | None = None  # BUPTCampus: buptcampus (the authors' rule) or buptcampus_m3reid


@dataclass
class ModelArgs:
    """Overrides of a registered variant's :class:`~cmft.models.cmft.CMFT` arguments; ``None`` (the default,
    ``null`` in YAML) keeps the variant's own value. A section like the others: ``base:`` configs merge it key
    by key, and a wrong key or type is an error that names it."""

    backbone: str | None = None  # resnet50, resnet18, swin3d_s
    fusion: str | None = None  # none, score_avg, score_mul, concat, ccf
    start: int | None = None  # first CCF level, 2..6 (paper Conv2..Conv6)
    branches: int | None = None  # 1 or 2 cross-attention directions per CCF
    layers: int | None = None
    heads: int | None = None
    fusion_dim: int | None = None
    reduce_dim: int | None = None
    pool_grid: list[int] | None = None
    share_from: int | None = None  # IR stream reuses the RGB stages from this level (2..5); None: independent
    pretrained: str | None = None  # imagenet, kinetics, or a local state-dict file; None: random init
    fold_div: int | None = None
    last_stride: int | None = None
    classifier: str | None = None  # linear or cosine
    cosine_scale: float | None = None
    pool: str | None = None  # avg or gem

    def overrides(self) -> dict[str, Any]:
        """The arguments set, as keyword arguments of ``create_model``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class ModelConfig:
    """A registered model and its overrides (see ``cmft.models.create_model``)."""

    name: str = "cmft_r50"
    args: ModelArgs = field(default_factory=ModelArgs)


@dataclass
class LossConfig:
    """The objective of each stage (paper §3.4.4): stage 1 = L_ID + L_Cross, stage 2 = L_ID + l1 MSRL + l2 MDL."""

    warm_epochs: int = 8  # epochs of stage 1
    id_weight: float = 1.0
    label_smoothing: float = 0.1
    cross: str = "lcross"  # stage-1 metric loss: lcross (paper), wrt, hct, triplet (all samples), none
    cross_weight: float = 1.0
    margin: float = 0.1
    msrl_weight: float = 0.3  # lambda_1
    msrl_metric: str = "euclidean"  # or cosine
    msrl_normalize: bool = False
    mdl_weight: float = 0.7  # lambda_2
    mdl_negatives: str = "dynamic"  # or hard, all
    mdl_normalize: bool = False
    stage2_cross_weight: float = 0.0  # keep some L_Cross in stage 2 (the paper uses 0)
    xmodal_weight: float = 0.0  # cross-modal batch-hard triplet (RGB anchors vs IR, IR vs RGB) in both stages
    xmodal_margin: float = 0.3
    metric_on: str = "feat"  # metric losses on embeddings before ("feat") or after ("bn") the BN neck


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (per epoch, with a linear warm-up)."""

    name: str = "sgd"  # or adamw
    lr: float = 0.01  # for the new layers; the pretrained backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False  # the paper says SGD with momentum; Nesterov's variant is an option
    weight_decay: float = 5e-4
    schedule: str = "step"  # or cosine
    milestones: list[int] = field(default_factory=lambda: [16, 22])
    gamma: float = 0.1
    warmup_epochs: int = 2
    clip_grad: float | None = 10.0  # max gradient norm, None to disable
    fused: bool | None = None  # one fused kernel per optimiser step; None = on CUDA (PyTorch's fused SGD/AdamW)


@dataclass
class TrainConfig:
    """The loop: length, precision, evaluation and logging cadence, seed."""

    epochs: int = 24
    amp: str = "auto"  # auto (CUDA: bf16, else fp16 with a scaler; CPU: fp32), bf16, fp16 (CUDA), fp32
    channels_last: bool = True
    eval_every: int = 4  # epochs; 0 = only at the end
    log_every: int = 10  # steps between JSON-lines records
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap for quick runs and benchmarks
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    deterministic: bool = False  # exact, repeatable CUDA kernels (slower); CPU runs are exact either way
    compile: bool = False  # torch.compile the model's training forward and backward; the first steps pay the compile time


@dataclass
class EvalConfig:
    """Test clips (first frame of each chunk) and feature options."""

    seq_len: int = 6
    batch_size: int = 32
    flip: bool = False  # average with the mirrored clip


@dataclass
class Config:
    """A whole run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A configuration file or override is wrong; the message names the key."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against a field type (ints widen to floats; ``None`` where optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        what = f"{where}: unknown key(s)" if where else "unknown section(s)"
        raise ConfigError(f"{what} {unknown}; valid {'keys' if where else 'sections'}: {names}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
            kwargs[name] = _build(tp, value, key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


# the values a field may take, checked at load so a typo fails before any data is read (the modules that use
# them check again for programmatic callers)
CHOICES: dict[str, tuple[str, ...]] = {
    "data.search_mode": ("all", "indoor"),
    "loss.cross": ("lcross", "wrt", "hct", "triplet", "none"),
    "loss.msrl_metric": ("euclidean", "cosine"),
    "loss.mdl_negatives": ("dynamic", "hard", "all"),
    "loss.metric_on": ("feat", "bn"),
    "optim.name": ("sgd", "adamw"),
    "optim.schedule": ("step", "cosine"),
    "train.amp": ("auto", "bf16", "fp16", "fp32"),
}
# numeric ranges: (low, high, low inclusive, high inclusive); None = unbounded. Every float must be finite.
_AT_LEAST_0, _AT_LEAST_1, _POSITIVE, _PROB = (0, None, True, False), (1, None, True, False), (0, None, False, False), (0, 1, True, True)
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "data.seq_len": _AT_LEAST_1, "data.height": _AT_LEAST_1, "data.width": _AT_LEAST_1, "data.num_ids": _AT_LEAST_1,
    "data.num_instances": _AT_LEAST_1, "data.workers": _AT_LEAST_0, "data.gray_p": _PROB, "data.channel_p": _PROB,
    "data.trial": _AT_LEAST_0,
    "loss.warm_epochs": _AT_LEAST_0, "loss.id_weight": _AT_LEAST_0, "loss.label_smoothing": (0, 1, True, False),
    "loss.cross_weight": _AT_LEAST_0, "loss.margin": _AT_LEAST_0, "loss.msrl_weight": _AT_LEAST_0,
    "loss.mdl_weight": _AT_LEAST_0, "loss.stage2_cross_weight": _AT_LEAST_0, "loss.xmodal_weight": _AT_LEAST_0,
    "loss.xmodal_margin": _AT_LEAST_0,
    "optim.lr": _POSITIVE, "optim.backbone_lr_mult": _AT_LEAST_0, "optim.momentum": (0, 1, True, False),
    "optim.weight_decay": _AT_LEAST_0, "optim.gamma": _POSITIVE, "optim.warmup_epochs": _AT_LEAST_0,
    "optim.clip_grad": _POSITIVE, "optim.milestones": _AT_LEAST_0,
    "train.epochs": _AT_LEAST_1, "train.eval_every": _AT_LEAST_0, "train.log_every": _AT_LEAST_1,
    "train.max_steps_per_epoch": _AT_LEAST_1,
    "eval.seq_len": _AT_LEAST_1, "eval.batch_size": _AT_LEAST_1,
}


def _check_values(cfg: Config) -> None:
    """Reject values outside :data:`CHOICES` and :data:`RANGES`, and non-finite floats anywhere."""
    for section in dataclasses.fields(cfg):
        sec = getattr(cfg, section.name)
        for f in dataclasses.fields(sec):
            key, value = f"{section.name}.{f.name}", getattr(sec, f.name)
            if key in CHOICES and value not in CHOICES[key]:
                raise ConfigError(f"{key}: must be one of {list(CHOICES[key])}, got {value!r}")
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{key}: must be a finite number, got {v!r}")
                if key in RANGES and isinstance(v, (int, float)) and not isinstance(v, bool):
                    lo, hi, lo_in, hi_in = RANGES[key]
                    if (lo is not None and (v < lo or (v == lo and not lo_in))) or (hi is not None and (v > hi or (v == hi and not hi_in))):
                        low = "" if lo is None else f"{'[' if lo_in else '('}{lo}"
                        high = "inf)" if hi is None else f"{hi}{']' if hi_in else ')'}"
                        raise ConfigError(f"{key}: must be in {low}, {high}, got {v!r}")
    for f in dataclasses.fields(cfg.model.args):
        v = getattr(cfg.model.args, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"model.args.{f.name}: must be a finite number, got {v!r}")


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from nested mappings, rejecting unknown keys, wrong types and out-of-range values."""
    cfg = _build(Config, data or {}, "")
    _check_values(cfg)
    return cfg


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a mapping; ``base: other.yaml`` (relative to the file) is read first and overlaid."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    base = data.pop("base", None)
    if base is not None:
        data = _merge(read_yaml(path.parent / base, (*_seen, path)), data)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (``None``: the defaults), apply overrides, validate."""
    data: dict[str, Any] = {} if path is None else read_yaml(path)
    try:
        return config_from_dict(apply_overrides(data, overrides or []))
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved configuration as YAML (what the run actually used; model arguments left at the
    variant's default are omitted), atomically."""
    from cmft.atomic import write_text_atomic

    data = config.to_dict()
    data["model"]["args"] = config.model.args.overrides()
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
