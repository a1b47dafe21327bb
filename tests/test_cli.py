"""The console script: dataset summary as JSON, clear errors with exit code 2, the training-free baseline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from cmft.cli import app

runner = CliRunner()


def test_info_json(tiny_vcm: Path) -> None:
    r = runner.invoke(app, ["info", str(tiny_vcm), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["train"] == {"ids": 3, "rgb_tracklets": 3, "rgb_frames": 38, "ir_tracklets": 3, "ir_frames": 45}
    assert s["query"]["ir_tracklets"] == 2 and s["gallery"]["rgb_tracklets"] == 2


def test_info_table_and_errors(tiny_vcm: Path) -> None:
    r = runner.invoke(app, ["info", str(tiny_vcm)])
    assert r.exit_code == 0 and "gallery (RGB)" in r.stdout
    (tiny_vcm / "info" / "query_IDX.txt").write_text("1 99\n")
    r = runner.invoke(app, ["info", str(tiny_vcm)])
    assert r.exit_code == 2
    assert "query_IDX.txt:1: row 99" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["info", str(tiny_vcm), "--dataset", "mars"])
    assert r.exit_code == 2 and "unknown dataset" in r.output


def test_baseline_reports_both_directions(tiny_vcm: Path) -> None:
    r = runner.invoke(app, ["baseline", str(tiny_vcm), "--json", "--workers", "0", "--height", "32", "--width", "16"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert set(m) == {"ir2rgb", "rgb2ir"}
    for d in m.values():
        assert len(d["cmc"]) == 20 and 0 <= d["mAP"] <= 1 and d["num_valid_queries"] >= 1


def _tiny_demo_overrides(root: Path) -> list[str]:
    return [f"data.root={root}", "data.height=64", "data.width=32", "data.seq_len=3", "data.num_ids=2",
            "data.num_instances=2", "data.workers=0", "train.epochs=2", "loss.warm_epochs=1", "train.eval_every=1",
            "eval.seq_len=3", "optim.warmup_epochs=1", "train.amp=fp32"]


def test_train_then_eval_with_report(vcm4: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: cmft_r18\n")
    r = runner.invoke(app, ["train", "-c", str(cfg), "--out", str(run), *_tiny_demo_overrides(vcm4)])
    assert r.exit_code == 0, r.output
    assert {"last.pt", "best.pt", "config.yaml", "log.jsonl"} <= {p.name for p in run.iterdir()}
    r = runner.invoke(app, ["eval", str(run / "best.pt"), "--data", str(vcm4), "--workers", "0", "--json", "--report", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert set(m) == {"ir2rgb", "rgb2ir"} and all(len(v["cmc"]) == 20 for v in m.values())
    rep = tmp_path / "rep"
    assert {"report.md", "cmc.png", "ranked_ir2rgb.png", "ranked_rgb2ir.png", "metrics.json"} <= {p.name for p in rep.iterdir()}
    assert "| infrared -> visible |" in (rep / "report.md").read_text()
    # a second train into the same folder is refused; --resume continues (here: nothing left to do)
    r = runner.invoke(app, ["train", "-c", str(cfg), "--out", str(run), *_tiny_demo_overrides(vcm4)])
    assert r.exit_code == 2 and "resume" in r.output
    r = runner.invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code == 0, r.output


def test_train_and_eval_errors(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "optim.nope=1"])
    assert r.exit_code == 2 and "unknown key" in r.output
    r = runner.invoke(app, ["eval", str(tmp_path / "missing.pt"), "--data", str(tmp_path)])
    assert r.exit_code == 2 and "checkpoint not found" in r.output


def test_demo_on_given_data(vcm4: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--data", str(vcm4), "--out", str(out), "--compare", *_tiny_demo_overrides(vcm4)])
    assert r.exit_code == 0, r.output
    # metrics.json: per trained variant and direction, percent, and the number of test identities
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"cmft", "no_fusion"}
    for variant in metrics.values():
        assert set(variant) == {"ir_to_rgb", "rgb_to_ir"}
        for m in variant.values():
            assert set(m) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "num_test_ids"}
            assert m["num_test_ids"] == 3 and 0 <= m["rank1"] <= m["rank5"] <= m["rank10"] <= m["rank20"] == 100.0
            assert 0 < m["mAP"] <= 100 and 0 < m["mINP"] <= 100
    ckpt = torch.load(out / "run_no_fusion" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_args"]["fusion"] == "none" and not any(k.startswith("fusion.") for k in ckpt["model"])
    assert "no fusion baseline" in (out / "report" / "report.md").read_text()
    text = (out / "report" / "report.md").read_text()
    assert "training-free grey-level" in text and "![CMC curves](cmc.png)" in text
    assert "training-free descriptor" in r.stdout
