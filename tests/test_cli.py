"""The console script: dataset summary as JSON, clear errors with exit code 2, the training-free baseline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from cmft.cli import app

from conftest import assert_metrics_equal, reference_directions

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
    # the same descriptor's embeddings, scored apart: infrared queries against the visible gallery and back
    from cmft.data import load_hitsz_vcm
    from cmft.evaluation.retrieval import ClipSpec, embed_test_sets
    from cmft.models import GreyMotionDescriptor

    sets = embed_test_sets(GreyMotionDescriptor(), load_hitsz_vcm(tiny_vcm, splits=("test",)),
                           ClipSpec(seq_len=6, height=32, width=16, workers=0))
    want = reference_directions(sets)
    for direction in m:
        assert_metrics_equal(m[direction], want[direction])
    assert m["ir2rgb"]["num_valid_queries"] == len(sets["ir"].pids)


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
    assert set(m) == {"ir2rgb", "rgb2ir"}
    # the checkpoint's embeddings scored apart from cmft's evaluator give the same numbers
    from cmft.data import load_hitsz_vcm
    from cmft.evaluation.retrieval import ClipSpec
    from cmft.evaluation.trials import evaluate_checkpoint

    sets = evaluate_checkpoint(run / "best.pt", load_hitsz_vcm(vcm4, splits=("test",)), ClipSpec(3, 64, 32, 32, 0)).sets
    want = reference_directions(sets)
    for direction in m:
        assert_metrics_equal(m[direction], want[direction])
    rep = tmp_path / "rep"
    assert {"report.md", "cmc.png", "ranked_ir2rgb.png", "ranked_rgb2ir.png", "metrics.json"} <= {p.name for p in rep.iterdir()}
    assert json.loads((rep / "metrics.json").read_text()) == m  # the report's numbers are the printed ones
    report = (rep / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| infrared -> visible |"))
    cells = [c.strip() for c in row.split("|")[2:-1]]  # Rank-1, -5, -10, -20, mAP, mINP in percent
    w = want["ir2rgb"]
    assert cells == [f"{100 * float(v):.2f}" for v in (w["cmc"][0], w["cmc"][4], w["cmc"][9], w["cmc"][19], w["mAP"], w["mINP"])], row
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
    # each variant's numbers are its best checkpoint's, scored apart from cmft's evaluator, in percent
    from cmft.config import load_config
    from cmft.data import load_hitsz_vcm
    from cmft.evaluation.retrieval import ClipSpec
    from cmft.evaluation.trials import evaluate_checkpoint

    test = load_hitsz_vcm(vcm4, splits=("test",))
    for variant, run in (("cmft", out / "run"), ("no_fusion", out / "run_no_fusion")):
        assert set(metrics[variant]) == {"ir_to_rgb", "rgb_to_ir"}
        spec = ClipSpec.from_config(load_config(run / "config.yaml"))
        want = reference_directions(evaluate_checkpoint(run / "best.pt", test, spec).sets)
        for key, direction in (("ir_to_rgb", "ir2rgb"), ("rgb_to_ir", "rgb2ir")):
            got = metrics[variant][key]
            assert set(got) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "num_test_ids"}
            assert got["num_test_ids"] == 3
            assert_metrics_equal(got, want[direction], scale=100)
    ckpt = torch.load(out / "run_no_fusion" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_args"]["fusion"] == "none" and not any(k.startswith("fusion.") for k in ckpt["model"])
    assert "no fusion baseline" in (out / "report" / "report.md").read_text()
    text = (out / "report" / "report.md").read_text()
    assert "training-free grey-level" in text and "![CMC curves](cmc.png)" in text
    assert "training-free descriptor" in r.stdout
