"""BUPTCampus: the reader against what the authors' loader makes of the same fake release, protocols, errors,
and `cmft info` / `train` / `eval` end to end on a fake tree in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cmft.cli import app
from cmft.data.datasets.buptcampus import load_buptcampus
from cmft.data.datasets.registry import detect_dataset, load_dataset
from cmft.data.errors import DatasetFormatError
from cmft.data.loader import aligned_partners, build_train_loader
from cmft.config import DataConfig

from conftest import tiny_train_overrides

# (obj_id, camera, tracklet_id, frames): training pairs, auxiliary pairs, and single-modality test tracklets
TRAIN = [("3", "LS3", "1", 6), ("3", "G25", "1", 7), ("12", "CQ1", "1", 5), ("12", "W4", "2", 6),
         ("7", "TSG1", "1", 8), ("7", "TSG2", "1", 5)]
AUX = [("30", "CQ1", "1", 5), ("31", "W4", "1", 6)]
QUERY = [("20", "RGB", "G25", "1", 5), ("21", "IR", "LS3", "1", 6), ("22", "RGB", "CQ1", "1", 5), ("22", "IR", "W4", "1", 5)]
GALLERY = [("20", "IR", "LS3", "1", 6), ("20", "RGB", "LS3", "1", 6), ("21", "RGB", "G25", "2", 5),
           ("21", "IR", "G25", "2", 5), ("22", "RGB", "W4", "2", 7), ("22", "IR", "TSG1", "2", 7),
           ("20", "RGB", "G25", "2", 5)]
TWINS = [("20", "IR", "G25", "1", 5), ("21", "RGB", "LS3", "1", 6)]  # the other sensor of two query moments, unlisted


def write_buptcampus(root: Path, seed: int = 0) -> Path:
    """A release folder in the official layout: ``DATA/<id>/<RGB|IR>/<camera>/<id>_<MOD>_<camera>_<tid>_<frame>.jpg``,
    ``data_paths.json`` (paths relative to ``DATA/``) and the four lists. Identities have their own colour."""
    rng = np.random.default_rng(seed)
    paths: dict = {}
    colour: dict[str, np.ndarray] = {}

    def tracklet(obj: str, mod: str, cam: str, tid: str, n: int) -> None:
        base = colour.setdefault(obj, rng.integers(30, 220, 3))
        rel = []
        for f in range(n):
            name = f"{obj}/{mod}/{cam}/{obj}_{mod}_{cam}_{tid}_{100 + f}.jpg"
            img = np.clip(base + rng.normal(0, 12, (32, 16, 3)), 0, 255).astype(np.uint8)
            if mod == "IR":
                img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
            (root / "DATA" / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "DATA" / name)
            rel.append(name)
        paths.setdefault(obj, {}).setdefault(mod, {}).setdefault(cam, {})[tid] = rel

    lines: dict[str, list[str]] = {"train.txt": [], "train_auxiliary.txt": [], "query.txt": [], "gallery.txt": []}
    for name, rows in (("train.txt", TRAIN), ("train_auxiliary.txt", AUX)):
        for obj, cam, tid, n in rows:
            tracklet(obj, "RGB", cam, tid, n)
            tracklet(obj, "IR", cam, tid, n)
            lines[name].append(f"{obj} RGB/IR {cam} {tid}")
    for name, rows in (("query.txt", QUERY), ("gallery.txt", GALLERY)):
        for obj, mod, cam, tid, n in rows:
            tracklet(obj, mod, cam, tid, n)
            lines[name].append(f"{obj} {mod} {cam} {tid}")
    for obj, mod, cam, tid, n in TWINS:
        tracklet(obj, mod, cam, tid, n)
    (root / "data_paths.json").write_text(json.dumps(paths))
    for name, rows in lines.items():
        (root / name).write_text("\n".join(rows) + "\n")
    return root


def authors_view(data_root: Path, list_name: str) -> list[dict]:
    """What the authors' ``BUPTCampus_Dataset`` yields per item on these files, without the images: its label
    (train: ``pid2label`` over the sorted id strings; test: ``int(obj_id)``), camera and modality codes and the
    frame paths it opens (``join(data_root, data_paths[...])``)."""
    data_paths = json.load(open(data_root / ".." / "data_paths.json"))
    info, pids = [], []
    with open(data_root / ".." / list_name) as f:
        for line in f.readlines():
            obj_id, modality, camera, tracklet_id = line.strip().split(" ")
            info.append((obj_id, modality, camera, tracklet_id))
            pids.append(obj_id)
    pid2label = {pid: label for label, pid in enumerate(sorted(set(pids)))}
    out = []
    for obj_id, modality, camera, tracklet_id in info:
        if modality == "RGB/IR":
            out.append({"label": pid2label[obj_id], "camera": {"LS3": 0, "G25": 1, "CQ1": 2, "W4": 3, "TSG1": 4, "TSG2": 5}[camera],
                        "rgb": [str(data_root / p) for p in data_paths[obj_id]["RGB"][camera][tracklet_id]],
                        "ir": [str(data_root / p) for p in data_paths[obj_id]["IR"][camera][tracklet_id]]})
        else:
            out.append({"pid": int(obj_id), "camera": {"LS3": 0, "G25": 1, "CQ1": 2, "W4": 3, "TSG1": 4, "TSG2": 5}[camera],
                        "modality": {"RGB": 0, "IR": 1}[modality],
                        "paths": [str(data_root / p) for p in data_paths[obj_id][modality][camera][tracklet_id]]})
    return out


@pytest.fixture(scope="module")
def bupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_buptcampus(tmp_path_factory.mktemp("bupt") / "BUPTCampus")


def test_reader_matches_the_authors_loader(bupt: Path) -> None:
    ds = load_buptcampus(bupt)
    data = bupt / "DATA"
    # training: every line one aligned RGB / IR pair, labels over the sorted id strings ('12' < '3' < '7')
    ref = authors_view(data, "train.txt")
    assert len(ds.pairs) == len(ref) == len(TRAIN)
    for (r, i), want in zip(ds.pairs, ref):
        rgb, ir = ds.train[r], ds.train[i]
        assert (rgb.modality, ir.modality) == ("rgb", "ir")
        assert rgb.pid == ir.pid == want["label"] and rgb.camid == ir.camid == want["camera"]
        assert list(rgb.paths) == want["rgb"] and list(ir.paths) == want["ir"]
    assert ds.train_pid_map == {12: 0, 3: 1, 7: 2}
    # query and gallery: both modalities each, original ids, query tracklets first in each modality
    for split, rows in (("query", authors_view(data, "query.txt")), ("gallery", authors_view(data, "gallery.txt"))):
        for mod, code in (("ir", 1), ("rgb", 0)):
            want = [(w["pid"], w["camera"], w["paths"]) for w in rows if w["modality"] == code]
            n = ds.num_query[mod]
            got = ds.test_ir if mod == "ir" else ds.test_rgb
            got = got[:n] if split == "query" else got[n:]
            assert [(t.pid, t.camid, list(t.paths)) for t in got] == want, (split, mod)
    q, g = ds.split("ir2rgb")
    assert {t.modality for t in q} == {"ir"} and {t.modality for t in g} == {"rgb"} and len(q) == 2 and len(g) == 4
    assert [len(s) for s in (*ds.split("rgb2ir"), *ds.split("ir2ir"), *ds.split("rgb2rgb"))] == [2, 3, 2, 3, 2, 4]
    assert ds.protocol == "buptcampus" and len(ds.auxiliary) == 4
    # moments seen by both sensors (a listed line and its twin in data_paths.json), one pair a moment
    pairs = {s: [(r.pid, r.camid, Path(r.paths[0]).parent.name, i.modality) for r, i in ds.test_pairs[s]] for s in ds.test_pairs}
    assert pairs == {"query": [(20, 1, "G25", "ir"), (21, 0, "LS3", "ir")], "gallery": [(20, 0, "LS3", "ir"), (21, 1, "G25", "ir")]}
    assert all(len(r.paths) == len(i.paths) and r.modality == "rgb" for s in ds.test_pairs for r, i in ds.test_pairs[s])


def test_detection_data_folder_and_options(bupt: Path) -> None:
    assert detect_dataset(bupt) == "buptcampus" and detect_dataset(bupt / "DATA") == "buptcampus"
    a, b = load_dataset("auto", bupt), load_dataset("buptcampus", bupt / "DATA")
    assert a.train == b.train and a.test_ir == b.test_ir
    aux = load_dataset("auto", bupt, auxiliary=True, protocol="buptcampus_m3reid")
    assert len(aux.train) == len(a.train) + 4 and len(aux.pairs) == 8 and aux.protocol == "buptcampus_m3reid"
    assert {t.pid for t in aux.train[-4:]} == {3, 4}  # auxiliary ids labelled after the training ids
    with pytest.raises(ValueError, match="unknown BUPTCampus protocol"):
        load_buptcampus(bupt, protocol="mine")


def test_training_clips_are_aligned(bupt: Path) -> None:
    ds = load_buptcampus(bupt)
    partner = aligned_partners(ds)
    rgb, ir = ds.train_of("rgb"), ds.train_of("ir")
    assert all(Path(rgb[k].paths[0]).name.replace("_RGB_", "_") == Path(ir[p].paths[0]).name.replace("_IR_", "_")
               for k, p in enumerate(partner))
    loader = build_train_loader(ds, DataConfig(seq_len=3, height=32, width=16, num_ids=2, num_instances=2, workers=0))
    loader.sampler.set_epoch(0)
    for r, i in loader.sampler:
        assert partner[r] == i and rgb[r].pid == ir[i].pid
    batch = next(iter(loader))
    assert batch["rgb"].shape == batch["ir"].shape == (4, 3, 3, 32, 16)


@pytest.mark.parametrize(("file", "edit", "message"), [
    ("train.txt", lambda s: s.replace("3 RGB/IR LS3 1", "3 RGB/IR LS3"), r"train.txt:1: expected 'obj_id modality camera"),
    ("query.txt", lambda s: s.replace("21 IR LS3 1", "21 NIR LS3 1"), r"query.txt:2: modality 'NIR' is not one of"),
    ("train.txt", lambda s: s.replace("12 RGB/IR W4 2", "12 RGB W4 2"), r"train.txt:4: modality 'RGB' is not one of \['RGB/IR'\]"),
    ("gallery.txt", lambda s: s.replace("22 RGB W4 2", "22 RGB W4 9"), r"gallery.txt:5: data_paths.json has no .*missing key '9'"),
    ("gallery.txt", lambda s: s.replace("20 IR LS3 1", "20 IR XX9 1"), r"gallery.txt:1: unknown camera 'XX9'"),
])
def test_malformed_files_name_file_and_line(bupt: Path, tmp_path: Path, file: str, edit, message: str) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(bupt, root)
    (root / file).write_text(edit((root / file).read_text()))
    with pytest.raises(DatasetFormatError, match=message):
        load_buptcampus(root)


def test_missing_frame_and_json(bupt: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(bupt, root)
    next((root / "DATA" / "21" / "IR" / "LS3").iterdir()).unlink()
    with pytest.raises(DatasetFormatError, match=r"query.txt:2: 1 of 6 frames missing on disk"):
        load_buptcampus(root)
    assert len(load_buptcampus(root, check_files=False).test_ir) == 5
    (root / "data_paths.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match=r"data_paths.json: not valid JSON"):
        load_buptcampus(root)


def test_info_train_eval_end_to_end(bupt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["info", str(bupt), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["dataset"] == "buptcampus"
    assert info["train"] == {"ids": 3, "rgb_tracklets": 6, "ir_tracklets": 6, "rgb_frames": 37, "ir_frames": 37}
    assert {k: info["query"][k] for k in ("ids", "rgb_tracklets", "ir_tracklets")} == {"ids": 3, "rgb_tracklets": 2, "ir_tracklets": 2}
    assert {k: info["gallery"][k] for k in ("ids", "rgb_tracklets", "ir_tracklets")} == {"ids": 3, "rgb_tracklets": 4, "ir_tracklets": 3}
    assert {k: info["auxiliary"][k] for k in ("ids", "rgb_tracklets", "ir_tracklets")} == {"ids": 2, "rgb_tracklets": 2, "ir_tracklets": 2}
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--out", str(run), *tiny_train_overrides(bupt, "train.epochs=1")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(run / "last.pt"), "--data", str(bupt), "--json", "--workers", "0"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert set(metrics) == {"ir2rgb", "rgb2ir", "ir2ir", "rgb2rgb", "fused"}  # fused: pairs -> pairs
    assert all(0 <= m["mAP"] <= 1 and len(m["cmc"]) == 20 for m in metrics.values())
    assert metrics["ir2rgb"]["num_valid_queries"] == 2  # both IR queries have an RGB positive in the gallery
    assert metrics["fused"]["num_valid_queries"] == 2
    # M3-ReID's rule drops same-id same-camera gallery items: query 22 (IR, W4) loses its only RGB positive (W4)
    r = runner.invoke(app, ["eval", str(run / "last.pt"), "--data", str(bupt), "--json", "--workers", "0",
                            "--protocol", "buptcampus_m3reid"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ir2rgb"]["num_valid_queries"] == 1
    ds = load_dataset("buptcampus", bupt)
    _index_and_check(run / "last.pt", bupt, tmp_path / "store", ds.test_ir + ds.test_rgb)


def _index_and_check(checkpoint: Path, root: Path, store: Path, tracklets: list) -> None:
    """`cmft index` of the tree: every test tracklet of both modalities (query and gallery rows), each with its
    identity, camera and frames; a second run adds nothing."""
    from cmft.search.store import open_store

    runner = CliRunner()
    r = runner.invoke(app, ["index", str(root), "--store", str(store), "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    want = sorted((str(Path(t.paths[0]).resolve()), t.modality, int(t.pid), int(t.camid), len(t.paths))
                  for t in tracklets)
    with open_store(store) as s:
        got = sorted((e["key"], e["modality"], e["pid"], e["camera"], len(e["frames"])) for e in s.entries())
    assert got == want
    r = runner.invoke(app, ["index", str(root), "--store", str(store), "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    with open_store(store) as s:
        assert len(s.entries()) == len(want)
