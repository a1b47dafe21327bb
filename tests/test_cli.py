"""The console script: dataset summary as JSON, clear errors with exit code 2, the training-free baseline."""

from __future__ import annotations

import json
from pathlib import Path

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
