"""LLCM: the reader against the authors' DEEN data manager on the same fake release, the protocol against their
``eval_llcm`` rule, errors naming the file, and `cmft info` / `train` / `eval` end to end."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cmft.cli import app
from cmft.data.datasets.llcm import llcm_draws, load_llcm
from cmft.data.datasets.registry import detect_dataset, load_dataset
from cmft.data.errors import DatasetFormatError
from cmft.evaluation import evaluate

from conftest import tiny_train_overrides

TRAIN_IDS = (1, 2, 3)
TEST_IDS = (5, 6, 11)


def write_llcm(root: Path, seed: int = 0) -> Path:
    """A release in the official layout: train lists under ``idx/``, test images under ``test_vis/cam*/<id:04d>/``
    and ``test_nir/cam*/<id:04d>/`` (some (id, camera) folders absent), ``idx/test_id.txt``."""
    rng = np.random.default_rng(seed)

    def image(path: Path, pid: int, ir: bool) -> None:
        base = (np.array([pid * 37 % 200, pid * 71 % 200, pid * 13 % 200]) + 30).astype(float)
        img = np.clip(base + rng.normal(0, 10, (32, 16, 3)), 0, 255).astype(np.uint8)
        if ir:
            img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)

    (root / "idx").mkdir(parents=True, exist_ok=True)
    for name, folder, cams in (("train_vis.txt", "train_vis", (1, 3)), ("train_nir.txt", "train_nir", (2, 4))):
        lines = []
        for label, pid in enumerate(TRAIN_IDS):
            for c in cams:
                for k in range(2):
                    rel = f"{folder}/cam{c}/{pid:04d}/{pid:04d}_c{c:02d}_f{k}.jpg"
                    image(root / rel, pid, folder == "train_nir")
                    lines.append(f"{rel} {label}")
        (root / "idx" / name).write_text("\n".join(lines) + "\n")
    (root / "idx" / "test_id.txt").write_text(",".join(str(p) for p in TEST_IDS))
    for folder, cams in (("test_vis", (1, 2, 3, 9)), ("test_nir", (1, 4, 9))):
        for pid in TEST_IDS:
            for c in cams:
                if (pid + c) % 5 == 0:
                    continue  # an absent (id, camera) folder
                for k in range(1 + (pid + c) % 3):
                    image(root / folder / f"cam{c}" / f"{pid:04d}" / f"{pid:04d}_c{c:02d}_{k:03d}.jpg", pid, folder == "test_nir")
    return root


def authors_query(data_path: str, mode: int) -> tuple[list[str], list[int], list[int]]:
    """DEEN ``process_query_llcm``: every image of the test ids in the mode's cameras (1: visible, 2: infrared)."""
    cameras = [f"test_vis/cam{c}" for c in range(1, 10)] if mode == 1 else [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]
    with open(os.path.join(data_path, "idx/test_id.txt")) as f:
        ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(",")]
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files.extend(sorted([img_dir + "/" + i for i in os.listdir(img_dir)]))
    rel = [p[len(data_path):] for p in files]  # the path parse works on the part after the root
    return files, [int(p.split("cam")[1][2:6]) for p in rel], [int(p.split("cam")[1][0]) for p in rel]


def authors_gallery(data_path: str, mode: int, trial: int) -> tuple[list[str], list[int], list[int]]:
    """DEEN ``process_gallery_llcm``: ``random.seed(trial)``, one ``random.choice`` per (id, camera) folder."""
    random.seed(trial)
    cameras = [f"test_vis/cam{c}" for c in range(1, 10)] if mode == 1 else [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]
    with open(os.path.join(data_path, "idx/test_id.txt")) as f:
        ids = ["%04d" % int(y) for y in f.read().splitlines()[0].split(",")]
    files = []
    for pid in sorted(ids):
        for cam in cameras:
            img_dir = os.path.join(data_path, cam, pid)
            if os.path.isdir(img_dir):
                files.append(random.choice(sorted([img_dir + "/" + i for i in os.listdir(img_dir)])))
    rel = [p[len(data_path):] for p in files]
    return files, [int(p.split("cam")[1][2:6]) for p in rel], [int(p.split("cam")[1][0]) for p in rel]


def authors_eval_llcm(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20):
    """DEEN ``eval_llcm``: same id and camera removed, CMC over identities counted once, mAP, mINP."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    pred = g_pids[indices]
    matches = (pred == q_pids[:, None]).astype(np.int32)
    cmcs, aps, inps, valid = [], [], [], 0
    for q in range(len(q_pids)):
        keep = ~((g_pids[indices[q]] == q_pids[q]) & (g_camids[indices[q]] == q_camids[q]))
        new = pred[q][keep]
        first = np.unique(new, return_index=True)[1]
        cmcs.append((np.asarray([new[i] for i in sorted(first)]) == q_pids[q]).astype(np.int32).cumsum()[:max_rank])
        raw = matches[q][keep]
        if not raw.any():
            continue
        cum = raw.cumsum()
        last = np.max(np.where(raw == 1))
        inps.append(cum[last] / (last + 1.0))
        valid += 1
        aps.append(((cum / np.arange(1, len(raw) + 1)) * raw).sum() / raw.sum())
    cmc = np.stack([np.pad(c, (0, max_rank - len(c)), constant_values=c[-1]) for c in cmcs]).clip(0, 1).sum(0) / valid
    return cmc, float(np.mean(aps)), float(np.mean(inps))


@pytest.fixture(scope="module")
def llcm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llcm(tmp_path_factory.mktemp("llcm") / "LLCM")


def test_queries_and_draws_match_the_authors(llcm: Path) -> None:
    root = str(llcm)
    queries, draws = llcm_draws(llcm, range(3))
    for mod, mode in (("rgb", 1), ("ir", 2)):
        files, pids, cams = authors_query(root, mode)
        assert [(t.paths[0], t.pid, t.camid) for t in queries[mod]] == list(zip(files, pids, cams))
        for t in range(3):
            files, pids, cams = authors_gallery(root, mode, t)
            assert [(g.paths[0], g.pid, g.camid) for g in draws[t][mod]] == list(zip(files, pids, cams))
    assert draws[0]["rgb"] != draws[1]["rgb"]  # the draws differ
    ds = load_llcm(llcm, trial=2)
    q, g = ds.split("ir2rgb")
    assert q == queries["ir"] and g == draws[2]["rgb"]
    q, g = ds.split("rgb2ir")
    assert q == queries["rgb"] and g == draws[2]["ir"]
    assert ds.protocol == "llcm" and ds.train_pid_map == {0: 0, 1: 1, 2: 2}
    assert {t.camid for t in ds.train_of("ir")} == {2, 4} and len(ds.train) == 24


def test_protocol_is_eval_llcm(llcm: Path) -> None:
    rng = np.random.default_rng(3)
    q_pids, g_pids = rng.integers(0, 5, 40), rng.integers(0, 5, 90)
    q_cams, g_cams = rng.integers(1, 4, 40), rng.integers(1, 4, 90)
    dist = rng.standard_normal((40, 90))
    cmc, m_ap, m_inp = authors_eval_llcm(dist, q_pids, g_pids, q_cams, g_cams)
    ours = evaluate(dist, q_pids, g_pids, q_cams, g_cams, protocol="llcm")
    np.testing.assert_allclose(ours["cmc"], cmc, atol=1e-6)
    assert ours["mAP"] == pytest.approx(m_ap, abs=1e-12) and ours["mINP"] == pytest.approx(m_inp, abs=1e-12)


def test_detection_and_errors(llcm: Path, tmp_path: Path) -> None:
    assert detect_dataset(llcm) == "llcm"
    assert load_dataset("auto", llcm, trial=1).test_rgb == load_llcm(llcm, trial=1).test_rgb
    with pytest.raises(ValueError, match="LLCM gallery draw must be an integer in 0..9"):
        load_llcm(llcm, trial=10)
    root = tmp_path / "copy"
    shutil.copytree(llcm, root)
    (root / "idx" / "test_id.txt").write_text("5,six,11")
    with pytest.raises(DatasetFormatError, match=r"test_id.txt:1: 'six' is not an integer id"):
        load_llcm(root)
    (root / "idx" / "test_id.txt").write_text("5,6,11")
    (root / "idx" / "train_nir.txt").write_text("train_nir/cam2/0001/x.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"train_nir.txt:1: expected '<relative image path> <integer label>'"):
        load_llcm(root)
    (root / "idx" / "train_nir.txt").write_text("train_nir/cam2/0001/missing.jpg 0\n")
    with pytest.raises(DatasetFormatError, match=r"missing on disk, e.g. .*missing.jpg"):
        load_llcm(root)


def test_info_train_eval_end_to_end(llcm: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["info", str(llcm), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["dataset"] == "llcm" and info["train"]["ids"] == 3 and info["train"]["rgb_tracklets"] == 12
    run = tmp_path / "run"
    overrides = tiny_train_overrides(llcm, "train.epochs=1", "data.seq_len=1", "eval.seq_len=1")
    r = runner.invoke(app, ["train", "--out", str(run), *overrides])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(run / "last.pt"), "--data", str(llcm), "--json", "--workers", "0", "--trials", "3"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert set(metrics) == {"ir2rgb", "rgb2ir"} and all(m["trials"] == 3 for m in metrics.values())
    # `cmft index`: every test image of both modalities, not one gallery draw
    from test_buptcampus import _index_and_check

    from cmft.data.datasets.llcm import llcm_draws

    queries, _ = llcm_draws(llcm, range(0))
    _index_and_check(run / "last.pt", llcm, tmp_path / "store", queries["ir"] + queries["rgb"])
