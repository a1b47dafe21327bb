"""Report pictures: the embedding map (modality gap) and the CCF cross-attention maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cmft.cli import app
from cmft.evaluation.visuals import attention_figure, cross_attention_maps, embedding_plot, project_2d
from cmft.models import create_model


def test_projection_separates_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    x = np.concatenate([c + 0.05 * rng.normal(size=(10, 16)) for c in centres])
    for method, name in (("pca", "PCA"), ("tsne", "t-SNE")):
        xy, used = project_2d(x, method)
        assert xy.shape == (30, 2) and used == name
        within = np.mean([np.linalg.norm(xy[i * 10:(i + 1) * 10] - xy[i * 10:(i + 1) * 10].mean(0), axis=1).mean() for i in range(3)])
        between = np.linalg.norm(xy[:10].mean(0) - xy[10:20].mean(0))
        assert between > 3 * within  # the three identities stay apart in 2-D
    with pytest.raises(ValueError, match="tsne or pca"):
        project_2d(x, "umap")


def test_embedding_plot_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    feats = {"rgb": rng.normal(size=(12, 8)), "ir": rng.normal(size=(9, 8))}
    pids = {"rgb": np.repeat([1, 2, 3, 4], 3), "ir": np.repeat([2, 3, 4], 3)}
    out = embedding_plot(feats, pids, tmp_path / "e.png", method="pca")
    with Image.open(out) as im:
        assert im.size[0] > 300 and im.format == "PNG"
    with pytest.raises(ValueError, match="both modalities"):
        embedding_plot(feats, {"rgb": np.zeros(12, int), "ir": np.ones(9, int)}, tmp_path / "x.png")


def test_cross_attention_maps_are_distributions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("cmft_r18", num_classes=4, pretrained=None, start=4).eval()
    rgb, ir = torch.randn(1, 3, 3, 64, 32), torch.randn(1, 3, 3, 64, 32)
    maps = cross_attention_maps(model, rgb, ir)
    assert set(maps) == {"conv4", "conv5", "conv6"}
    for level, m in maps.items():
        assert m.ndim == 2 and torch.allclose(m.sum(1), torch.ones(m.shape[0]), atol=1e-5), level  # softmax rows
    assert maps["conv6"].shape == (3, 3)  # one token per frame at the clip level
    assert maps["conv4"].shape[0] == maps["conv4"].shape[1] and maps["conv4"].shape[0] % 3 == 0
    out = attention_figure(maps, rgb, ir, tmp_path / "a.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 200
    with pytest.raises(ValueError, match="no CCF"):
        cross_attention_maps(create_model("dual_r18", num_classes=4, pretrained=None).eval(), rgb, ir)


def test_eval_report_has_the_pictures(tiny_checkpoint: Path, vcm4: Path, tmp_path: Path) -> None:
    rep = tmp_path / "rep"
    r = CliRunner().invoke(app, ["eval", str(tiny_checkpoint), "--data", str(vcm4), "--workers", "0", "--json", "--report", str(rep)])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    files = {p.name for p in rep.iterdir()}
    assert {"embedding.png", "attention.png", "cmc.png", "ranked_ir2rgb.png", "report.md"} <= files
    text = (rep / "report.md").read_text()
    assert "![embedding](embedding.png)" in text and "![attention](attention.png)" in text
    # what the report shows is the checkpoint's test set: the metrics of its embeddings scored apart, the table
    # in report.md with those numbers, and the embedding map drawn from those embeddings, pixel for pixel
    from cmft.data import load_hitsz_vcm
    from cmft.evaluation.report import metrics_markdown
    from cmft.evaluation.retrieval import ClipSpec
    from cmft.evaluation.trials import evaluate_checkpoint

    from conftest import assert_metrics_equal, reference_directions

    sets = evaluate_checkpoint(tiny_checkpoint, load_hitsz_vcm(vcm4, splits=("test",)), ClipSpec(3, 64, 32, 32, 0)).sets
    want = reference_directions(sets)
    for direction in ("ir2rgb", "rgb2ir"):
        assert_metrics_equal(metrics[direction], want[direction])
    assert metrics_markdown(metrics) in text
    again = embedding_plot({m: sets[m].feats.numpy() for m in ("rgb", "ir")}, {m: sets[m].pids for m in ("rgb", "ir")},
                           tmp_path / "again.png")
    shown, drawn = np.asarray(Image.open(rep / "embedding.png")), np.asarray(Image.open(again))
    assert shown.shape == drawn.shape and np.array_equal(shown, drawn)
    assert np.asarray(Image.open(rep / "attention.png").convert("L")).std() > 1  # a picture, not a blank canvas


def test_eval_report_warns_about_a_failed_picture(tiny_checkpoint: Path, vcm4: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import cmft.evaluation.report as report

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("no room for this picture")

    monkeypatch.setattr(report, "embedding_plot", broken)
    rep = tmp_path / "rep"
    r = CliRunner().invoke(app, ["eval", str(tiny_checkpoint), "--data", str(vcm4), "--workers", "0", "--json", "--report", str(rep)])
    assert r.exit_code == 0, r.output  # the metrics were written: a picture is not worth failing the command
    assert "warning: report picture embedding.png was not drawn: RuntimeError: no room for this picture" in r.stderr
    assert set(json.loads(r.stdout)) == {"ir2rgb", "rgb2ir"}
    assert (rep / "metrics.json").is_file() and not (rep / "embedding.png").exists()
    text = (rep / "report.md").read_text()
    assert "embedding.png" not in text and "![attention](attention.png)" in text
