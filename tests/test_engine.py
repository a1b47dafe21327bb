"""The training engine: config validation, the stage switch, exact resume after a crash, the NaN guard."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_overrides

from cmft.config import ConfigError, LossConfig, load_config
from cmft.engine.checkpoint import load_checkpoint, model_from_checkpoint
from cmft.engine.trainer import TrainingDiverged, train
from cmft.losses.objective import Objective
from cmft.models.registry import create_model


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_config(None, ["optim.lr=0.05", "data.num_ids=4", "model.args={start: 6}", "optim.clip_grad=null"])
    assert cfg.optim.lr == 0.05 and cfg.data.num_ids == 4 and cfg.model.args.overrides() == {"start": 6} and cfg.optim.clip_grad is None
    with pytest.raises(ConfigError, match=r"optim: unknown key\(s\) \['lrate'\]; valid keys"):
        load_config(None, ["optim.lrate=1"])
    with pytest.raises(ConfigError, match=r"train.epochs: expected int"):
        load_config(None, ["train.epochs=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    typo = tmp_path / "typo_section.yaml"
    typo.write_text("optm:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(typo)
    assert str(e.value) == (f"{typo}: unknown section(s) ['optm']; valid sections: "
                            "['data', 'model', 'loss', 'optim', 'train', 'eval']")


def test_model_args_are_a_typed_section_that_merges(tmp_path: Path) -> None:
    """``model.args`` names every CMFT argument, checks types, and a ``base:`` config's args merge key by key."""
    import inspect

    from cmft.config import ModelArgs
    from cmft.models.cmft import CMFT

    assert {f.name for f in dataclasses.fields(ModelArgs)} == set(inspect.signature(CMFT).parameters) - {"num_classes"}
    (tmp_path / "base.yaml").write_text("model:\n  name: cmft_r18\n  args: {pretrained: imagenet, start: 5, heads: 4}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nmodel:\n  args: {fusion: concat, start: 6}\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.args.share_from=2"])
    assert cfg.model.args.overrides() == {"pretrained": "imagenet", "start": 6, "heads": 4, "fusion": "concat", "share_from": 2}
    with pytest.raises(ConfigError, match=r"model.args: unknown key\(s\) \['fuson'\]"):
        load_config(None, ["model.args.fuson=ccf"])
    with pytest.raises(ConfigError, match=r"model.args.start: expected int"):
        load_config(None, ["model.args.start=five"])


def test_every_shipped_config_loads() -> None:
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        load_config(path)


def test_objective_stages() -> None:
    obj = Objective(LossConfig(warm_epochs=2))
    assert [obj.stage(e) for e in range(4)] == [1, 1, 2, 2]
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1])
    out = {k: torch.randn(4, 8) for k in ("feat_rgb", "feat_ir", "feat_fused", "bn_rgb", "bn_ir", "bn_fused")}
    out |= {k: torch.randn(4, 3) for k in ("logits_rgb", "logits_ir", "logits_fused")}
    total1, parts1 = obj(out, labels, 1)
    total2, parts2 = obj(out, labels, 2)
    assert set(parts1) == {"id", "cross"} and set(parts2) == {"id", "msrl", "mdl"}
    assert total1.item() == pytest.approx(sum(parts1.values()), rel=1e-6)
    assert parts1["id"] == parts2["id"]


class CrashAfterEpoch1:
    """A reporter that stops a run right after epoch 1's checkpoint, as a crash there would."""

    def epoch_end(self, epoch: int, record: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt


def test_crash_and_resume_is_exact(vcm4: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_train_overrides(vcm4))
    straight = train(cfg, tmp_path / "a")

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", reporter=CrashAfterEpoch1())
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    with pytest.raises(FileExistsError, match="resume it"):
        train(cfg, tmp_path / "b")
    resumed = train(cfg, tmp_path / "b", resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["loss_total"] for h in a["history"]] == [h["loss_total"] for h in b["history"]]
    assert [h["stage"] for h in b["history"]] == [1, 2, 2]
    assert resumed.best == straight.best and (tmp_path / "b" / "best.pt").exists()
    assert (tmp_path / "b" / "config.yaml").exists() and (tmp_path / "b" / "log.jsonl").read_text().count('"kind": "eval"') == 3


def test_deterministic_flag_holds_during_training_and_is_undone(vcm4: Path, tmp_path: Path) -> None:
    """``train.deterministic``: every step runs under ``torch.use_deterministic_algorithms`` with cuDNN
    deterministic (no CPU op of the training step refuses it), and the settings before the run come back."""
    seen = []

    class Watch:
        def step(self, *args: object) -> None:
            seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic))

    assert not torch.are_deterministic_algorithms_enabled()
    cfg = load_config(None, tiny_train_overrides(vcm4, "train.epochs=1", "train.deterministic=true"))
    train(cfg, tmp_path / "d", reporter=Watch())
    assert seen and all(s == (True, True) for s in seen)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_crash_and_resume_is_exact_on_cuda_with_the_deterministic_flag(vcm4: Path, tmp_path: Path) -> None:
    """On CUDA, exact resume needs ``train.deterministic`` (cuDNN, attention and pooling backward kernels
    otherwise accumulate in a varying order): with it, a crashed and resumed run equals an uninterrupted one."""
    cfg = load_config(None, tiny_train_overrides(vcm4, "train.device=cuda", "train.deterministic=true", "train.amp=fp32"))
    train(cfg, tmp_path / "a")

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", reporter=CrashAfterEpoch1())
    train(cfg, tmp_path / "b", resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_checkpoint_rebuilds_the_model(vcm4: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_train_overrides(vcm4, "train.epochs=1"))
    train(cfg, tmp_path / "r")
    model = model_from_checkpoint(tmp_path / "r" / "last.pt")
    assert model(rgb=torch.randn(2, 4, 3, 64, 32)).shape == (2, 512)


def test_nan_guard_keeps_last_good_checkpoint(vcm4: Path, tmp_path: Path) -> None:
    # epoch 1 multiplies the learning rate by 1e30: the weights blow up and the loss turns non-finite
    cfg = load_config(None, tiny_train_overrides(
        vcm4, "optim.warmup_epochs=0", "optim.milestones=[1]", "optim.gamma=1.0e+30", "optim.clip_grad=null", "train.eval_every=0",
    ))
    with pytest.raises(TrainingDiverged, match=r"loss became .* epoch 1.*last good checkpoint"):
        train(cfg, tmp_path / "nan")
    ckpt = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert ckpt["epoch"] == 0 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nan_gradient_with_a_finite_loss_is_caught_before_the_step(vcm4: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A finite loss whose gradient is NaN, at the last step of epoch 1: the guard stops before the optimiser
    applies it, so last.pt stays epoch 0's and finite. (Checking the loss alone saved epoch 1's NaN weights.)"""
    original, calls = Objective.__call__, [0]

    def nan_gradient(self, out, labels, stage, **kwargs):
        calls[0] += 1
        if calls[0] == 4:  # two steps an epoch: epoch 1, step 1
            out["feat_rgb"].register_hook(lambda g: torch.full_like(g, float("nan")))
        return original(self, out, labels, stage, **kwargs)

    monkeypatch.setattr(Objective, "__call__", nan_gradient)
    _stops_keeping_epoch_0(vcm4, tmp_path / "g", r"gradient norm became non-finite at epoch 1 step 1.*last good checkpoint .*last.pt")
    assert calls[0] == 4


def test_blow_up_at_an_epochs_last_step_is_never_saved(vcm4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimiser's update at the last step of epoch 1 overflows one weight to infinity, after a finite loss
    and a finite gradient. The weights are checked before the checkpoint, so last.pt stays epoch 0's. (Before,
    epoch 1's infinite weights were saved as the last good checkpoint and the run stopped one step later.)"""
    original, calls = torch.optim.SGD.step, [0]

    def overflowing_step(self, closure=None):
        out = original(self, closure)
        calls[0] += 1
        if calls[0] == 4:  # two steps an epoch: epoch 1, step 1
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", overflowing_step)
    _stops_keeping_epoch_0(vcm4, tmp_path / "w", r"weights became non-finite at the end of epoch 1")
    assert calls[0] == 4


def _stops_keeping_epoch_0(vcm4: Path, run: Path, match: str) -> None:
    """A 3-epoch run of 2 steps an epoch with a fault planted in epoch 1 stops with ``match``, and last.pt is
    epoch 0's, every weight finite."""
    cfg = load_config(None, tiny_train_overrides(vcm4, "train.max_steps_per_epoch=2", "train.eval_every=0"))
    with pytest.raises(TrainingDiverged, match=match):
        train(cfg, run)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 0 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_bad_checkpoint_files(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="x.pt: cannot read"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="not a cmft checkpoint"):
        load_checkpoint(tmp_path / "y.pt")


def test_distributed_training_under_torchrun(vcm4: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517", "-m", "cmft", "train",
           "--out", str(run), *tiny_train_overrides(vcm4, "train.epochs=2")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["history"][-1]["eval"]["ir2rgb"]["num_valid_queries"] == 3
    assert proc.stdout.count("done: 2 epochs") == 1  # only rank 0 reports


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_is_plain_momentum_unless_asked(nesterov: bool) -> None:
    """The paper trains with SGD + momentum; Nesterov's variant is an explicit option (default off)."""
    from cmft.config import OptimConfig
    from cmft.engine.optim import build_optimizer

    kwargs = {"nesterov": True} if nesterov else {}
    opt = build_optimizer(torch.nn.Linear(4, 2), OptimConfig(name="sgd", **kwargs))
    assert all(g["nesterov"] is nesterov and g["momentum"] == 0.9 for g in opt.param_groups)


DIVERGE_CHILD = """
import json, os, sys
from cmft.config import load_config
from cmft.engine.trainer import TrainingDiverged, train
from cmft.losses.objective import Objective

fault_call, overrides, run = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
original, calls = Objective.__call__, [0]


def faulty(self, out, labels, stage, **kwargs):  # a NaN loss on rank 1 only, at one training step
    loss, parts = original(self, out, labels, stage, **kwargs)
    calls[0] += 1
    if os.environ["RANK"] == "1" and calls[0] == fault_call:
        loss = loss * float("nan")
    return loss, parts


Objective.__call__ = faulty
try:
    train(load_config(None, overrides), run)
    result = "finished"
except TrainingDiverged as e:
    result = str(e)
print("RESULT " + json.dumps({"rank": os.environ["RANK"], "result": result}), flush=True)
"""


def _torchrun(args: list[str], port: int, timeout: int = 300):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_nan_on_one_rank_stops_every_rank_and_keeps_the_good_checkpoint(vcm4: Path, tmp_path: Path) -> None:
    """Under DDP a NaN loss on rank 1 alone (at the last step of epoch 1) stops both ranks with one message
    before it is averaged into the weights; last.pt stays epoch 0's, finite. (Rank 0's value alone, as the
    check was written before, let the NaN through to the epoch-1 checkpoint.)"""
    import json

    child = tmp_path / "child.py"
    child.write_text(DIVERGE_CHILD)
    run = tmp_path / "run"
    overrides = tiny_train_overrides(vcm4, "train.epochs=3", "train.max_steps_per_epoch=2", "train.eval_every=0")
    proc = _torchrun([str(child), "2", json.dumps(overrides), str(run)], port=29531)  # one step an epoch per rank here
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the two ranks print through one pipe: their lines can run together, so read each RESULT object where it starts
    parts = proc.stdout.split("RESULT ")[1:]
    results = sorted((json.JSONDecoder().raw_decode(part)[0] for part in parts), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == ["0", "1"]
    assert results[0]["result"] == results[1]["result"]
    assert "loss became non-finite on rank 1 at epoch 1 step 0" in results[0]["result"]
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_ddp_with_parameters_unused_in_a_stage(vcm4: Path, tmp_path: Path) -> None:
    """loss.id_weight=0 leaves the classifiers without gradient: DDP still trains (no reducer error mid-run)."""
    run = tmp_path / "ddp"
    proc = _torchrun(["-m", "cmft", "train", "--out", str(run),
                      *tiny_train_overrides(vcm4, "train.epochs=2", "loss.id_weight=0", "train.eval_every=0")], port=29533)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


RESUME_CHILD = """
import json, sys
from cmft.config import load_config
from cmft.engine.trainer import train

overrides, run, stop = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])


class Stop:  # both ranks leave after epoch `stop`'s checkpoint, as a killed job would have left it
    def epoch_end(self, epoch, record):
        if epoch == stop:
            raise SystemExit(0)


train(load_config(None, overrides), run, resume=stop < 0, reporter=Stop())
"""


def test_ddp_resume_restores_each_ranks_random_state(vcm4: Path, tmp_path: Path) -> None:
    """A 2-process gloo run stopped after epoch 0 and resumed ends with the weights of an uninterrupted run:
    each rank draws its own augmentations (random flips and erasing) and gets its own state back. (Every rank
    restored rank 0's state before, so rank 1 drew other augmentations after the resume.)"""
    import json

    child = tmp_path / "child.py"
    child.write_text(RESUME_CHILD)
    overrides = json.dumps(tiny_train_overrides(vcm4, "train.eval_every=0"))
    for run, stop in (("straight", 99), ("stopped", 0)):
        proc = _torchrun([str(child), overrides, str(tmp_path / run), str(stop)], port=29535)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert ckpt["epoch"] == 0 and len(ckpt["rng_ranks"]) == 2
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])
    proc = _torchrun([str(child), overrides, str(tmp_path / "stopped"), "-1"], port=29535)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["loss_total"] for h in a["history"]] == [h["loss_total"] for h in b["history"]]


def test_compiled_training_equals_eager_and_saves_plain_weights(vcm4: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``train.compile``: the model goes through ``torch.compile`` (TorchDynamo capture and AOTAutograd of forward
    and backward), trains to the same weights as eager mode bit for bit, and its checkpoints hold the plain
    model's keys (no ``_orig_mod.``), so they load without compiling. The test uses the ``aot_eager`` backend:
    Inductor's code generation costs ~130 s on this CPU and is measured in bench_train.py instead."""
    compiled = []
    real_compile = torch.compile

    def aot_eager(model, **kwargs):
        compiled.append(type(model).__name__)
        return real_compile(model, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", aot_eager)
    cfg = tiny_train_overrides(vcm4, "train.epochs=2")
    eager = train(load_config(None, cfg), tmp_path / "eager")
    assert not compiled
    comp = train(load_config(None, [*cfg, "train.compile=true"]), tmp_path / "compiled")
    assert compiled == ["CMFT"]
    a, b = load_checkpoint(tmp_path / "eager" / "last.pt"), load_checkpoint(tmp_path / "compiled" / "last.pt")
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["loss_total"] for h in eager.history] == [h["loss_total"] for h in comp.history]
    assert comp.history[0]["first_step_s"] > 0 and comp.best == eager.best
    assert model_from_checkpoint(tmp_path / "compiled" / "last.pt")(rgb=torch.randn(1, 3, 3, 64, 32)).shape == (1, 512)


def test_fused_optimiser_matches_the_per_tensor_loop() -> None:
    """``optim.fused``: off by default on the CPU, on when asked; the fused SGD step gives the per-tensor
    loop's weights (to float rounding) with both learning-rate groups and weight decay."""
    from cmft.config import OptimConfig
    from cmft.engine.optim import build_optimizer

    def run(fused: bool | None) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = create_model("cmft_r18", num_classes=4, start=6).train()
        opt = build_optimizer(model, OptimConfig(fused=fused, lr=0.05))
        for _ in range(3):
            opt.zero_grad()
            model(rgb=torch.randn(2, 2, 3, 64, 32), ir=torch.randn(2, 2, 3, 64, 32))["logits_rgb"].sum().backward()
            opt.step()
        return opt, [p.detach().clone() for p in model.parameters()]

    plain, w_plain = run(None)
    fused, w_fused = run(True)
    assert not plain.defaults.get("fused") and fused.defaults["fused"]
    assert all(torch.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(w_plain, w_fused))
