"""The training loop: two-stage progressive learning, AMP, checkpoints with exact resume, periodic evaluation.

Read it top to bottom: :func:`train` sets up data, model, optimiser and run folder, then loops over
epochs and steps. Everything a run writes lives in its run folder: ``config.yaml``, ``last.pt``,
``best.pt``, ``log.jsonl`` and ``tb/`` (TensorBoard).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from cmft.config import Config, config_from_dict, save_config
from cmft.data.datasets.registry import load_dataset
from cmft.data.loader import build_train_loader
from cmft.data.types import VIDataset
from cmft.devices import deterministic_algorithms, resolve_device
from cmft.engine.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cmft.engine.distributed import (
    DistInfo,
    barrier,
    every_rank,
    gather_shards,
    init_distributed,
    ranks_where,
    shard,
    shutdown,
)
from cmft.engine.optim import build_optimizer, build_scheduler
from cmft.losses.objective import Objective
from cmft.models.registry import create_model


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class Reporter(Protocol):
    """What a front end (a progress bar) hears from the loop. Every method is optional."""

    def epoch_start(self, epoch: int, stage: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int, parts: dict[str, float], lr: float, clips_per_s: float) -> None: ...
    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None: ...
    def evaluating(self, epoch: int) -> None: ...


@dataclass
class TrainResult:
    """Where the run is and how it ended."""

    run_dir: Path
    epochs_done: int
    best: dict[str, Any] | None
    last_eval: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` (``None`` = full precision)."""
    if amp == "fp32":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None  # measured: CPU bf16 autocast is slower than fp32 for this model here (BENCHMARKS.md)
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs CUDA; on a CPU use bf16 or fp32")
        return torch.float16
    raise ValueError(f"train.amp must be auto, bf16, fp16 or fp32, got {amp!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _call(reporter: Reporter | None, method: str, *args: Any) -> None:
    fn = getattr(reporter, method, None)
    if fn is not None:
        fn(*args)


class _Logger:
    """JSON lines always; TensorBoard when the package is installed. Main process only."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.file = open(run_dir / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            warnings.warn("tensorboard is not installed: logging to log.jsonl only", stacklevel=2)

    def log(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def identity_accuracies(out: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """Training identity accuracy of each classifier present (``acc_rgb``, ``acc_ir``, ``acc_fused``), in [0, 1].

    The learning curve to watch: a falling loss says little when logits are small, and an IR accuracy
    far below the RGB one means the shared classifier has not been taught to read the IR stream.
    """
    return {k: float(v) for k, v in _accuracy_tensors(out, labels).items()}


@torch.no_grad()
def _accuracy_tensors(out: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"acc_{k}": (out[f"logits_{k}"].argmax(1) == labels).float().mean()
            for k in ("rgb", "ir", "fused") if f"logits_{k}" in out}


def _to_host(values: dict[str, torch.Tensor], grad_norm: torch.Tensor | None) -> dict[str, float]:
    """Named 0-d device tensors (and the gradient norm, as ``grad_norm``) as floats, in one transfer."""
    named = {**values, **({"grad_norm": grad_norm} if grad_norm is not None else {})}
    with torch.no_grad():
        flat = torch.stack([v.detach().float().reshape(()) for v in named.values()]).tolist()
    return dict(zip(named, flat))


def _eval_score(metrics: dict[str, Any]) -> float:
    """The number the best checkpoint maximises: mean mAP over both directions."""
    return float(np.mean([m["mAP"] for m in metrics.values()]))


def evaluate_model(
    model: torch.nn.Module, dataset: VIDataset, cfg: Config, device: torch.device, autocast: torch.dtype | None,
    dist_info: DistInfo = DistInfo(),
) -> dict[str, Any]:
    """Both directions (``{"ir2rgb": metrics, "rgb2ir": metrics}``; SYSU-MM01: ``ir2rgb`` only) under the dataset's rule.

    Under DDP every rank embeds its share of each test set and the features are gathered in order;
    all ranks return the same metrics.
    """
    from cmft.evaluation.retrieval import (
        ClipSpec,
        Embeddings,
        extract_embeddings,
        score_directions,
    )

    spec = ClipSpec.from_config(cfg)

    def embed(clips: torch.Tensor, modality: str) -> torch.Tensor:
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            return model.embed(clips, modality)

    # evaluating must not move the training RNG (a resumed run would draw other batches)
    state = (random.getstate(), np.random.get_state())
    sets = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for name, tracklets in (("ir", dataset.test_ir), ("rgb", dataset.test_rgb)):
            part = extract_embeddings(embed, shard(tracklets, dist_info), spec, device)
            feats = gather_shards(part.feats, len(tracklets), dist_info)
            sets[name] = Embeddings(feats, np.array([t.pid for t in tracklets]), np.array([t.camid for t in tracklets]))
    random.setstate(state[0])
    np.random.set_state(state[1])
    return score_directions(sets, protocol=dataset.protocol, num_query=dataset.num_query, device=device)


def train(
    cfg: Config, run_dir: str | Path, resume: bool = False, reporter: Reporter | None = None, dataset: VIDataset | None = None
) -> TrainResult:
    """Train (or resume) a run in ``run_dir``; returns the best and last evaluation. With
    ``train.deterministic`` the run uses exact, repeatable kernels, and the previous settings return after."""
    with contextlib.ExitStack() as scope:
        return _train(cfg, run_dir, resume, reporter, dataset, scope)


@dataclass
class _Run:
    """What one training run holds from epoch to epoch."""

    cfg: Config
    run_dir: Path
    device: torch.device
    dist: DistInfo
    dataset: VIDataset
    loader: Any
    steps_per_epoch: int
    model: torch.nn.Module
    train_model: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    objective: Objective
    logger: _Logger
    reporter: Reporter | None
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_eval: dict[str, Any] | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "last.pt"


def _train(
    cfg: Config, run_dir: str | Path, resume: bool, reporter: Reporter | None, dataset: VIDataset | None,
    scope: contextlib.ExitStack,
) -> TrainResult:
    run, start_epoch = _setup(cfg, Path(run_dir), resume, reporter, dataset, scope)
    try:
        for epoch in range(start_epoch, run.cfg.train.epochs):
            record = train_one_epoch(run, epoch)
            _evaluate_and_checkpoint(run, epoch, record)
            _call(reporter, "epoch_end", epoch, record)
    finally:
        run.logger.close()
        shutdown(run.dist)
    return TrainResult(run.run_dir, len(run.history), run.best, run.last_eval, run.history)


def _setup(
    cfg: Config, run_dir: Path, resume: bool, reporter: Reporter | None, dataset: VIDataset | None,
    scope: contextlib.ExitStack,
) -> tuple[_Run, int]:
    """Device and process group, the checkpoint to resume (whose config then rules), data, model, optimiser,
    precision; returns the run and its first epoch."""
    device = resolve_device(cfg.train.device)
    dist_info: DistInfo = init_distributed(str(device))
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    ckpt_path = run_dir / "last.pt"
    if dist_info.is_main:  # temporary files of checkpoints a killed process was writing
        for stale in (*run_dir.glob(".last.pt.*"), *run_dir.glob(".best.pt.*")):
            stale.unlink(missing_ok=True)
    ckpt = None
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run (last.pt): resume it or choose another folder")
        ckpt = load_checkpoint(ckpt_path)
        cfg = config_from_dict(ckpt["config"])  # a resumed run keeps its own configuration
    elif resume:
        raise FileNotFoundError(f"{ckpt_path}: nothing to resume")
    scope.enter_context(deterministic_algorithms(cfg.train.deterministic))  # the run's own config, resumed or not
    seed_everything(cfg.train.seed + dist_info.rank)

    if dataset is None:
        dataset = load_dataset(cfg.data.dataset, cfg.data.root, trial=cfg.data.trial, mode=cfg.data.search_mode,
                               skip_missing=cfg.data.skip_missing, splits=("train", "test"),
                               auxiliary=cfg.data.auxiliary, protocol=cfg.data.protocol)
    loader = build_train_loader(dataset, cfg.data, cfg.train.seed, dist_info.world_size, dist_info.rank)
    steps_per_epoch = len(loader) if cfg.train.max_steps_per_epoch is None else min(len(loader), cfg.train.max_steps_per_epoch)

    model = create_model(cfg.model.name, num_classes=dataset.num_train_pids, **cfg.model.args.overrides()).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.epochs, steps_per_epoch)
    amp_dtype = autocast_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch, best, history = 0, None, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best, history = ckpt["epoch"] + 1, ckpt.get("best"), list(ckpt.get("history", []))
        _restore_rng(ckpt, cfg.train.seed, start_epoch, dist_info)
    train_model: torch.nn.Module = model
    if dist_info.enabled:
        # some parameters get no gradient in some configurations (loss.id_weight=0 leaves the classifiers
        # unused, a stage switch changes which heads train): DDP must look for them or its reducer fails mid-run
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=True)
    if cfg.train.compile:  # the wrapper shares the model's weights: checkpoints and evaluation use the plain model
        train_model = torch.compile(train_model)

    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    last_eval = history[-1]["eval"] if history and "eval" in history[-1] else None
    run = _Run(cfg, run_dir, device, dist_info, dataset, loader, steps_per_epoch, model, train_model, optimizer, scheduler,
               scaler, amp_dtype, Objective(cfg.loss), _Logger(run_dir, dist_info.is_main), reporter, best, history, last_eval)
    return run, start_epoch


def train_one_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One epoch of steps, every guard on every rank (loss, then gradient norm, before the optimiser; the
    weights at the end); returns the epoch's record (mean losses and accuracies, speed)."""
    cfg, device, dist_info = run.cfg, run.device, run.dist
    stage = run.objective.stage(epoch)
    run.loader.sampler.set_epoch(epoch)
    run.model.train()
    _call(run.reporter, "epoch_start", epoch, stage, run.steps_per_epoch)
    sums: dict[str, float] = {}
    t0, clips, first_step_s = time.perf_counter(), 0, 0.0
    for step, batch in enumerate(run.loader):
        if step >= run.steps_per_epoch:
            break
        rgb = batch["rgb"].to(device, non_blocking=True)
        ir = batch["ir"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            out = run.train_model(rgb=rgb, ir=ir)
        loss, part_tensors = run.objective(out, labels, stage, as_tensors=True)
        if dist_info.enabled:
            # every rank checks every rank's loss before any gradient is exchanged: a NaN on one rank
            # would otherwise be averaged into every rank's weights
            bad = ranks_where(not math.isfinite(float(loss.detach())), dist_info, device)
            if bad:
                raise _diverged("loss", bad, dist_info, f"epoch {epoch} step {step}", run.ckpt_path)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        grad_norm = None
        if cfg.optim.clip_grad:
            run.scaler.unscale_(run.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.optim.clip_grad)
        if grad_norm is None and not run.scaler.is_enabled():
            grad_norm = _grad_norm(run.model)
        # one host-device sync per step: the logged numbers and both guards' values in one transfer
        parts = _to_host({"total": loss.detach(), **part_tensors, **_accuracy_tensors(out, labels)}, grad_norm)
        grad_value = parts.pop("grad_norm", None)
        if step == 0:  # with train.compile, epoch 0's first step holds the compile time
            first_step_s = time.perf_counter() - t0
        if not math.isfinite(parts["total"]):  # single process: nothing has been updated yet
            raise _diverged("loss", [0], dist_info, f"epoch {epoch} step {step}", run.ckpt_path)
        # under fp16 loss scaling a non-finite gradient is expected: the scaler skips that step by design.
        # DDP has averaged the gradients: every rank sees the same norm and stops together, no exchange needed
        if not run.scaler.is_enabled() and grad_value is not None and not math.isfinite(grad_value):
            raise _diverged("gradient norm", list(range(dist_info.world_size)), dist_info, f"epoch {epoch} step {step}",
                            run.ckpt_path)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        clips += 2 * len(labels) * dist_info.world_size
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        lr = max(g["lr"] for g in run.optimizer.param_groups)
        rate = clips / max(time.perf_counter() - t0, 1e-9)
        _call(run.reporter, "step", epoch, step, parts, lr, rate)
        if dist_info.is_main and (step + 1) % cfg.train.log_every == 0:
            run.logger.log({"kind": "train", "epoch": epoch, "step": epoch * run.steps_per_epoch + step, "stage": stage,
                            "lr": lr, "clips_per_s": rate, **parts}, epoch * run.steps_per_epoch + step)
    n = max(run.steps_per_epoch, 1)
    record: dict[str, Any] = {"epoch": epoch, "stage": stage, "seconds": time.perf_counter() - t0, "first_step_s": first_step_s,
                              "clips_per_s": clips / max(time.perf_counter() - t0, 1e-9),
                              **{(k if k.startswith("acc_") else f"loss_{k}"): v / n for k, v in sums.items()}}
    # a blow-up at the epoch's last step (finite loss and gradient, non-finite update) must not be saved
    bad = ranks_where(not _finite_weights(run.model), dist_info, device)
    if bad:
        raise _diverged("weights", bad, dist_info, f"the end of epoch {epoch}", run.ckpt_path)
    return record


def _evaluate_and_checkpoint(run: _Run, epoch: int, record: dict[str, Any]) -> None:
    """Evaluate when due (``train.eval_every``, and the last epoch), then write best.pt (when it is the best)
    and last.pt with every rank's RNG state."""
    cfg, dist_info = run.cfg, run.dist
    step = (epoch + 1) * run.steps_per_epoch
    due = epoch == cfg.train.epochs - 1 or (cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0)
    is_best = False
    if due:
        _call(run.reporter, "evaluating", epoch)
        metrics = evaluate_model(run.model, run.dataset, cfg, run.device, run.amp_dtype, dist_info)
        if dist_info.is_main:
            run.last_eval = _jsonable({"epoch": epoch, "score": _eval_score(metrics), **metrics})
            record["eval"] = run.last_eval
            is_best = run.best is None or run.last_eval["score"] > run.best["score"]
            if is_best:
                run.best = run.last_eval
            run.logger.log({"kind": "eval", "epoch": epoch, "score": run.last_eval["score"],
                            **{f"{dn}_{k}": (float(m["cmc"][0]) if k == "rank1" else float(m[k]))
                               for dn, m in metrics.items() for k in ("rank1", "mAP", "mINP")}}, step)
        barrier(dist_info)
    run.history.append(_jsonable(record))
    rngs = every_rank(rng_state(), dist_info)  # each rank draws its own augmentations: keep every rank's state
    if dist_info.is_main:
        run.logger.log({"kind": "epoch", **{k: v for k, v in record.items() if k != "eval"}}, step)
        payload = {
            "config": cfg.to_dict(), "model_name": cfg.model.name, "model_args": run.model.args,
            "num_classes": run.dataset.num_train_pids, "epoch": epoch, "stage": record["stage"],
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(), "rng": rngs[0], "rng_ranks": rngs, "best": run.best, "history": run.history,
        }
        # best.pt before last.pt: a process killed between the two resumes from the previous last.pt,
        # re-trains this epoch identically and writes both again, so best.pt never lags last.pt's record
        if is_best:
            save_checkpoint(run.run_dir / "best.pt", payload)
        save_checkpoint(run.ckpt_path, payload)


def _diverged(what: str, bad: list[int], info: DistInfo, when: str, ckpt_path: Path) -> TrainingDiverged:
    where = f" on rank{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}" if info.enabled else ""
    return TrainingDiverged(
        f"{what} became non-finite{where} at {when}; "
        f"the last good checkpoint is {ckpt_path if ckpt_path.exists() else 'none yet'}. "
        "Lower optim.lr, set optim.clip_grad, or try train.amp=fp32."
    )


def _grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all gradients together (what ``clip_grad_norm_`` reports), without clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = getattr(torch.nn.utils, "get_total_norm", None)  # torch >= 2.6: fused
    return total(grads) if total else torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _finite_weights(model: torch.nn.Module) -> bool:
    """Every floating-point parameter and buffer (BN running statistics included) finite: one device sync."""
    checks = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def _restore_rng(ckpt: dict[str, Any], seed: int, start_epoch: int, info: DistInfo) -> None:
    """Each rank resumes its own random state. A checkpoint of another world size cannot resume bit for bit:
    rank 0 takes the saved main state, the others a fresh seed of their rank and epoch."""
    states = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(states) == info.world_size:
        set_rng_state(states[info.rank])
        return
    warnings.warn(f"resuming a {len(states)}-process run on {info.world_size}: the random draws will differ from "
                  "an uninterrupted run", stacklevel=3)
    if info.rank == 0:
        set_rng_state(states[0])
    else:
        seed_everything(seed + info.rank + 1_000_003 * start_epoch)


def _jsonable(obj: Any) -> Any:
    """Metrics with NumPy arrays turned into lists (checkpoints load with ``weights_only``)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj

