"""Synthetic data -> HITSZ-VCM reader -> loaders -> batches, and the same through the console script."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cmft.config import DataConfig
from cmft.data.loader import ClipSpec
from cmft.cli import app
from cmft.data import build_test_loader, build_train_loader, dataset_summary, load_hitsz_vcm
from cmft.data.datasets.synthetic import SynthConfig, generate_synthetic


def test_synth_reader_loader_round_trip(tmp_path: Path) -> None:
    cfg = SynthConfig(ids=8, train_ids=4, height=32, width=16, max_frames=14, workers=1)
    summary = generate_synthetic(tmp_path / "s", cfg)
    ds = load_hitsz_vcm(tmp_path / "s")
    got = dataset_summary(ds)
    assert got["train"]["ids"] == 4 and got["query"]["ids"] == got["gallery"]["ids"] == 4
    for mod in ("rgb", "ir"):
        assert got["train"][f"{mod}_tracklets"] == summary["train"][mod]["tracklets"]
        assert got["train"][f"{mod}_frames"] == summary["train"][mod]["frames"]
    assert got["query"]["ir_tracklets"] == summary["query"] and got["gallery"]["rgb_tracklets"] == summary["gallery"]

    loader = build_train_loader(ds, DataConfig(seq_len=4, height=32, width=16, num_ids=2, num_instances=2, workers=0))
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    assert batch["rgb"].shape == batch["ir"].shape == (4, 4, 3, 32, 16)
    assert batch["label"].tolist()[0::2] == batch["label"].tolist()[1::2]  # K=2 consecutive pairs per id
    test = next(iter(build_test_loader(ds.test_ir, ClipSpec(seq_len=6, height=32, width=16, batch_size=3, workers=0))))
    assert test["clip"].shape == (3, 6, 3, 32, 16)


def test_synth_and_info_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "synth"
    r = runner.invoke(app, ["synth", str(out), "--ids", "6", "--height", "32", "--width", "16", "--workers", "1",
                            "--set", "max_frames=13", "--set", "lookalike_fraction=0.5"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "synth_config.json").read_text())
    assert saved["config"]["lookalike_fraction"] == 0.5 and saved["config"]["max_frames"] == 13
    r = runner.invoke(app, ["info", str(out), "--json"])
    info = json.loads(r.stdout)
    assert info["train"]["ids"] == 3 and info["train"]["rgb_tracklets"] == saved["summary"]["train"]["rgb"]["tracklets"]
    r = runner.invoke(app, ["synth", str(out), "--set", "colour=red"])
    assert r.exit_code == 2 and "KEY one of" in r.output
    r = runner.invoke(app, ["synth", str(out), "--ids", "1"])
    assert r.exit_code == 2 and "SynthConfig.ids" in r.output
