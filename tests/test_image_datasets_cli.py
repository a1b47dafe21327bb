"""SYSU-MM01 and RegDB end to end: tiny trees in the release layouts -> train -> evaluate with each protocol.

The readers' own rules (gallery draws, id files, list files) are tested in test_sysu_regdb.py; here the
pieces are put together: the SYSU ten-draw evaluation against per-draw evaluation of the loaded dataset,
`cmft train` / `cmft eval` / `cmft info` on both layouts, and `cmft regdb-trials` with its resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cmft.cli import app
from cmft.data.datasets.registry import detect_dataset, load_dataset
from cmft.evaluation.retrieval import ClipSpec, evaluate_directions
from cmft.evaluation.trials import aggregate_trials, evaluate_sysu

runner = CliRunner()
TINY = ["data.height=32", "data.width=16", "data.seq_len=1", "eval.seq_len=1", "data.num_ids=2", "data.num_instances=2",
        "data.workers=0", "model.name=cmft_r18", "loss.warm_epochs=1", "train.epochs=1", "train.eval_every=1",
        "optim.warmup_epochs=1", "train.amp=fp32"]


def _image(path: Path, pid: int, cam: int, k: int) -> None:
    """A small image whose colour depends on the identity (and a little on camera and shot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(pid * 100 + cam * 10 + k)
    base = np.array([(pid * 53) % 256, (pid * 97) % 256, (pid * 29) % 256], np.uint8)
    img = np.clip(base + rng.integers(-90, 90, (16, 8, 3)), 0, 255).astype(np.uint8)
    if cam in (3, 6) or cam == 2 and path.suffix == ".bmp":  # infrared / thermal: grey, colour lost
        img = np.repeat(img.mean(2, keepdims=True), 3, 2).astype(np.uint8)
    Image.fromarray(img).save(path)


def write_sysu(root: Path) -> Path:
    train, val, test = [1, 2, 3], [4], [10, 11, 12, 13]
    for pid in train + val + test:
        for cam in range(1, 7):
            if (pid + cam) % 5 == 0:  # some identities are missing from some cameras
                continue
            for k in range(2 + (pid + cam) % 3):
                _image(root / f"cam{cam}" / f"{pid:04d}" / f"{k + 1:04d}.jpg", pid, cam, k)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    for name, ids in (("train_id", train), ("val_id", val), ("test_id", test)):
        (root / "exp" / f"{name}.txt").write_text(",".join(map(str, ids)) + "\n")
    return root


def write_regdb(root: Path, trials: tuple[int, ...] = (1, 2)) -> Path:
    pids = list(range(1, 9))
    for pid in pids:
        for k in range(3):
            _image(root / "Visible" / str(pid) / f"v_{k}.bmp", pid, 1, k)
            _image(root / "Thermal" / str(pid) / f"t_{k}.bmp", pid, 2, k)
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for t in trials:
        rng = np.random.default_rng(t)
        order = rng.permutation(pids).tolist()
        for split, ids in (("train", order[:4]), ("test", order[4:])):
            for mod, folder, prefix in (("visible", "Visible", "v"), ("thermal", "Thermal", "t")):
                lines = [f"{folder}/{pid}/{prefix}_{k}.bmp {i}" for i, pid in enumerate(ids) for k in range(3)]
                (root / "idx" / f"{split}_{mod}_{t}.txt").write_text("\n".join(lines) + "\n")
    return root


def _mean_colour(clips: torch.Tensor, modality: str) -> torch.Tensor:
    """A training-free embedding: mean colour per third of the image, for a deterministic cross-check."""
    x = clips.mean(1)  # over frames
    return torch.stack([x[..., i * x.shape[-2] // 3:(i + 1) * x.shape[-2] // 3, :].mean((-1, -2)) for i in range(3)], 1).flatten(1)


def test_layouts_are_detected(tmp_path: Path) -> None:
    assert detect_dataset(write_sysu(tmp_path / "sysu")) == "sysu_mm01"
    assert detect_dataset(write_regdb(tmp_path / "regdb")) == "regdb"
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="not a known dataset layout"):
        detect_dataset(tmp_path / "other")
    with pytest.raises(ValueError, match="unknown dataset 'mars'"):
        load_dataset("mars", tmp_path / "sysu")
    with pytest.raises(ValueError, match=r"unknown dataset option\(s\) \['trail'\]; valid: \['trial'"):
        load_dataset("auto", tmp_path / "regdb", trail=2)
    from cmft.data.datasets.registry import DatasetOptions

    # one table, one signature: the options object and its fields as keywords read the same
    a = load_dataset("regdb", tmp_path / "regdb", DatasetOptions(trial=2))
    b = load_dataset("auto", tmp_path / "regdb", trial=2)
    assert a.test_ir == b.test_ir and a.train == b.train


def test_sysu_ten_draws_equal_per_draw_evaluation(tmp_path: Path) -> None:
    root = write_sysu(tmp_path / "sysu")
    spec = ClipSpec(seq_len=1, height=16, width=8, batch_size=16, workers=0)
    out = evaluate_sysu(_mean_colour, root, spec, trials=range(10))
    assert set(out) == {"all", "indoor"}
    for mode in ("all", "indoor"):
        per_draw = []
        for t in range(10):
            ds = load_dataset("sysu_mm01", root, trial=t, mode=mode)
            assert ds.protocol == "sysu"
            r = evaluate_directions(_mean_colour, ds, spec)
            assert list(r) == ["ir2rgb"]  # SYSU-MM01 reports infrared -> visible only
            per_draw.append(r["ir2rgb"])
            assert out[mode]["runs"][t]["mAP"] == pytest.approx(r["ir2rgb"]["mAP"], abs=1e-6)
        mean = aggregate_trials(per_draw)
        assert out[mode]["mean"]["mAP"] == pytest.approx(mean["mAP"], abs=1e-6)
        assert np.allclose(out[mode]["mean"]["cmc"], mean["cmc"], atol=1e-6)
    # the draws differ, so the per-draw results are not all the same number
    assert len({round(r["mAP"], 6) for r in out["all"]["runs"]}) > 1
    assert out["all"]["mean"]["mAP_std"] > 0


def test_aggregate_trials() -> None:
    runs = [{"cmc": [0.5, 1.0], "mAP": 0.4, "mINP": 0.2, "num_valid_queries": 10},
            {"cmc": [0.7, 1.0], "mAP": 0.6, "mINP": 0.4, "num_valid_queries": 12}]
    m = aggregate_trials(runs)
    assert m["trials"] == 2 and m["mAP"] == pytest.approx(0.5) and m["mAP_std"] == pytest.approx(0.1)
    assert np.allclose(m["cmc"], [0.6, 1.0]) and np.allclose(m["cmc_std"], [0.1, 0.0]) and m["num_valid_queries"] == 11
    with pytest.raises(ValueError, match="no trials"):
        aggregate_trials([])


def test_sysu_train_eval_info(tmp_path: Path) -> None:
    root = write_sysu(tmp_path / "sysu")
    r = runner.invoke(app, ["info", str(root), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["train"]["ids"] == 4 and info["query"]["ir_tracklets"] > 0 and info["gallery"]["rgb_tracklets"] > 0
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--out", str(run), f"data.root={root}", *TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(run / "last.pt"), "--data", str(root), "--workers", "0", "--json", "--trials", "3",
                            "--report", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert set(m) == {"all-search", "indoor-search"}
    assert m["all-search"]["trials"] == 3 and 0 <= m["all-search"]["mAP"] <= 1 and m["all-search"]["num_valid_queries"] > 0
    assert "all-search" in (tmp_path / "rep" / "report.md").read_text()
    r = runner.invoke(app, ["eval", str(run / "last.pt"), "--data", str(root), "--workers", "0", "--trials", "2"])
    assert r.exit_code == 0 and r.stdout.count("±") == 4  # Rank-1 and mAP as mean ± sd, both search modes
    (root / "exp" / "test_id.txt").unlink()
    r = runner.invoke(app, ["eval", str(run / "last.pt"), "--data", str(root), "--workers", "0"])
    assert r.exit_code == 2 and "test_id.txt" in r.output and "Traceback" not in r.output


def test_regdb_train_eval_and_trials_loop(tmp_path: Path) -> None:
    root = write_regdb(tmp_path / "regdb")
    r = runner.invoke(app, ["info", str(root), "--json", "--trial", "2"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["train"]["ids"] == 4 and info["query"]["ir_tracklets"] == 12 and info["gallery"]["rgb_tracklets"] == 12
    out = tmp_path / "trials"
    r = runner.invoke(app, ["regdb-trials", "--data", str(root), "--out", str(out), "--trials", "1-2", "--workers", "0", *TINY])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == [1, 2] and set(summary["mean"]) == {"rgb2ir", "ir2rgb"}
    for d in ("rgb2ir", "ir2rgb"):
        per = [summary["per_trial"][t][d]["mAP"] for t in ("1", "2")]
        assert summary["mean"][d]["mAP"] == pytest.approx(np.mean(per)) and summary["mean"][d]["trials"] == 2
    assert (out / "trial1" / "last.pt").exists() and (out / "trial2" / "last.pt").exists()
    # each trial's model evaluates on its own split: `cmft eval` picks the checkpoint's trial
    r = runner.invoke(app, ["eval", str(out / "trial2" / "last.pt"), "--data", str(root), "--workers", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ir2rgb"]["mAP"] == pytest.approx(summary["per_trial"]["2"]["ir2rgb"]["mAP"], abs=1e-6)
    # a second run keeps the finished trials and gives the same summary
    r = runner.invoke(app, ["regdb-trials", "--data", str(root), "--out", str(out), "--trials", "1-2", "--workers", "0", *TINY])
    assert r.exit_code == 0 and "already trained" in r.output
    assert json.loads((out / "summary.json").read_text())["mean"] == summary["mean"]
    r = runner.invoke(app, ["regdb-trials", "--data", str(root), "--out", str(out), "--trials", "0-11"])
    assert r.exit_code == 2 and "1..10" in r.output
    r = runner.invoke(app, ["regdb-trials", "--data", str(root), "--out", str(out), "--trials", "3", *TINY])
    assert r.exit_code == 2 and "_3.txt" in r.output  # no such split in this tree: the missing list file is named
