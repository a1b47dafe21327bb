"""SYSU-MM01 and RegDB readers on fake trees: the community reference rules pick for pick, and clear errors."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmft.data.loader import ClipSpec
from cmft.data import build_test_loader
from cmft.data.errors import DatasetFormatError
from cmft.data.datasets.regdb import load_regdb, read_regdb_list
from cmft.data.datasets.sysu_mm01 import load_sysu_mm01, read_sysu_ids, sysu_gallery, sysu_query

# --------------------------------------------------------------------------------------------- SYSU-MM01

TEST_IDS = [533, 12, 1, 47, 3, 150, 20, 8, 299, 5, 33, 101]  # as listed in test_id.txt (unsorted on purpose)
TRAIN_IDS = [2, 4, 7]
VAL_IDS = [9, 6]
MULTI = (12, 1)  # (pid, cam) with 13 images: multi-shot keeps 10 of them
EMPTY_DIR = (5, 2)  # a folder that exists but holds no image


def _sysu_counts() -> dict[tuple[int, int], int]:
    """Images per (pid, cam): varied, some cameras missing; every test id has an IR and an RGB image."""
    rng = np.random.default_rng(7)
    counts: dict[tuple[int, int], int] = {}
    for pid in TEST_IDS + TRAIN_IDS + VAL_IDS:
        for cam in range(1, 7):
            n = int(rng.integers(0, 6))  # 0 = camera missing
            if n:
                counts[pid, cam] = n
        counts.setdefault((pid, 3), 2)
        counts.setdefault((pid, 4), 3)
    counts[MULTI] = 13
    counts.pop(EMPTY_DIR, None)
    counts.pop((33, 6), None)  # some ids lack a camera for sure
    counts.pop((33, 1), None)
    return counts


def _names(pid: int, cam: int, n: int) -> list[str]:
    """File names whose sorted order differs from creation order and numeric order (e.g. '10' < '9')."""
    base = [f"{k:04d}.jpg" for k in (9, 10, 1, 30, 2, 17, 4, 25, 3, 11, 8, 6, 5)][:n]
    if n >= 3:
        base[1] = "10.jpg"
        base[2] = "9.png"  # mixed suffixes
    return base


def write_sysu_tree(root: Path, counts: dict[tuple[int, int], int], real_images: bool = True,
                    train: str | None = None, val: str | None = None, test: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for (pid, cam), n in counts.items():
        folder = root / f"cam{cam}" / f"{pid:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in _names(pid, cam, n):
            if real_images:
                mode = "L" if cam in (3, 6) else "RGB"
                shape = (8, 4) if mode == "L" else (8, 4, 3)
                img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode)
                img.save(folder / name, format="PNG" if name.endswith(".png") else "JPEG")
            else:
                (folder / name).touch()
    (root / f"cam{EMPTY_DIR[1]}" / f"{EMPTY_DIR[0]:04d}").mkdir(parents=True, exist_ok=True)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    (root / "exp" / "train_id.txt").write_text(train if train is not None else ",".join(map(str, TRAIN_IDS)) + "\n")
    (root / "exp" / "val_id.txt").write_text(val if val is not None else ",".join(map(str, VAL_IDS)))
    # tolerated: whitespace, a line break and a trailing comma
    test_text = ", ".join(map(str, TEST_IDS[:6])) + ",\n" + ",".join(map(str, TEST_IDS[6:])) + ",\n"
    (root / "exp" / "test_id.txt").write_text(test if test is not None else test_text)
    return root


@pytest.fixture(scope="module")
def sysu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sysu_tree(tmp_path_factory.mktemp("sysu") / "SYSU-MM01", _sysu_counts())


def _reference_ids(data_path: str) -> list[str]:
    with open(os.path.join(data_path, "exp/test_id.txt")) as file:
        text = file.read().replace("\n", "")
    return ["%04d" % int(y) for y in text.split(",") if y.strip()]


def reference_query(data_path: str) -> list[tuple[str, int, int]]:
    """AGW / DDAG process_query_sysu, as literal as possible (camid and pid from the path)."""
    files_ir = []
    for id in sorted(_reference_ids(data_path)):
        for cam in ["cam3", "cam6"]:
            img_dir = os.path.join(data_path, cam, id)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                files_ir.extend(new_files)
    return [(os.path.relpath(p, data_path), int(p.split("/")[-2]), int(p.split("/")[-3][3:])) for p in files_ir]


def reference_gallery(data_path: str, mode: str = "all", trial: int = 0, shots: int = 1) -> list[tuple[str, int, int]]:
    """AGW / DDAG process_gallery_sysu on the GLOBAL random generator (multi-shot: random.sample)."""
    random.seed(trial)
    rgb_cameras = ["cam1", "cam2", "cam4", "cam5"] if mode == "all" else ["cam1", "cam2"]
    files_rgb = []
    for id in sorted(_reference_ids(data_path)):
        for cam in rgb_cameras:
            img_dir = os.path.join(data_path, cam, id)
            if os.path.isdir(img_dir):
                new_files = sorted([img_dir + "/" + i for i in os.listdir(img_dir)])
                if new_files:
                    if shots == 1:
                        files_rgb.append(random.choice(new_files))
                    else:
                        files_rgb.extend(random.sample(new_files, min(shots, len(new_files))))
    return [(os.path.relpath(p, data_path), int(p.split("/")[-2]), int(p.split("/")[-3][3:])) for p in files_rgb]


def test_sysu_ids_tolerant(sysu: Path) -> None:
    assert read_sysu_ids(sysu, "test") == TEST_IDS
    assert read_sysu_ids(sysu, "train") == TRAIN_IDS
    assert read_sysu_ids(sysu, "val") == VAL_IDS


def test_sysu_gallery_matches_reference(sysu: Path) -> None:
    state = random.getstate()
    ours = {(m, t): sysu_gallery(sysu, m, t) for m in ("all", "indoor") for t in range(10)}
    assert random.getstate() == state  # our draws leave the global generator alone
    for (m, t), items in ours.items():
        assert items == reference_gallery(str(sysu), m, t), (m, t)
    counts = _sysu_counts()
    for m, cams in (("all", (1, 2, 4, 5)), ("indoor", (1, 2))):
        # one item per (id, camera) that has images, ids sorted, cameras in order
        expected_keys = [(p, c) for p in sorted(TEST_IDS) for c in cams if counts.get((p, c))]
        for t in range(10):
            assert [(pid, cam) for _, pid, cam in ours[m, t]] == expected_keys
        assert len({tuple(ours[m, t]) for t in range(10)}) == 10  # every trial draws differently
    assert {cam for t in range(10) for _, _, cam in ours["indoor", t]} == {1, 2}
    assert {cam for t in range(10) for _, _, cam in ours["all", t]} == {1, 2, 4, 5}
    # every pick is an image of its own folder
    for _, items in ours.items():
        for rel, pid, cam in items:
            assert rel.startswith(f"cam{cam}/{pid:04d}/") and (sysu / rel).is_file()
    # a concrete pick, so that a change of generator or sort order cannot go unnoticed
    assert ours["all", 0][0] == reference_gallery(str(sysu), "all", 0)[0]
    assert sysu_gallery(sysu, "all", 3) == ours["all", 3]  # deterministic


def test_sysu_random_instance_draws_like_global_seed(tmp_path: Path) -> None:
    """cmft draws each gallery with a generator of its own, seeded with the trial; the reference scripts seed
    the global one. On folders of 13 images, where the trial visibly changes the pick, the draws are the same
    for 10 trials, single- and multi-shot, and the global generator is left alone."""
    counts = {(pid, cam): 13 for pid in TEST_IDS for cam in (1, 2, 3, 4, 5)}
    root = write_sysu_tree(tmp_path / "SYSU-MM01", counts, real_images=False)
    state = random.getstate()
    draws = {(t, shots): sysu_gallery(root, "all", t, shots=shots) for t in range(10) for shots in (1, 4)}
    assert random.getstate() == state
    for (t, shots), items in draws.items():
        assert items == reference_gallery(str(root), "all", t, shots), (t, shots)
        assert len(items) == len(TEST_IDS) * 4 * shots
    assert len({draws[t, 1][0][0] for t in range(10)}) >= 4  # the first folder's pick moves with the trial


def test_sysu_query_order_and_content(sysu: Path) -> None:
    state = random.getstate()
    q = sysu_query(sysu)
    assert random.getstate() == state
    assert q == reference_query(str(sysu))
    assert q == sysu_query(sysu, "indoor")  # the mode does not change the query
    counts = _sysu_counts()
    expected = [
        (f"cam{c}/{p:04d}/{n}", p, c)
        for p in sorted(TEST_IDS) for c in (3, 6) if counts.get((p, c)) for n in sorted(_names(p, c, counts[p, c]))
    ]
    assert q == expected
    assert len(q) == sum(n for (p, c), n in counts.items() if p in TEST_IDS and c in (3, 6))
    assert q[0][1:] == (1, 3) and q[0][0].startswith("cam3/0001/")
    assert q[-1][1] == 533
    assert not any(p == 33 and c == 6 for _, p, c in q)


def test_sysu_multi_shot(sysu: Path) -> None:
    counts = _sysu_counts()
    g10 = sysu_gallery(sysu, "all", 2, shots=10)
    assert g10 == sysu_gallery(sysu, "all", 2, shots=10)
    assert g10 == reference_gallery(str(sysu), "all", 2, shots=10)
    assert g10 != sysu_gallery(sysu, "all", 3, shots=10)
    per = {}
    for rel, pid, cam in g10:
        per.setdefault((pid, cam), []).append(rel)
    expected = {(p, c): min(10, n) for (p, c), n in counts.items() if p in TEST_IDS and c in (1, 2, 4, 5)}
    assert {k: len(v) for k, v in per.items()} == expected
    assert len(per[MULTI]) == 10 and len(set(per[MULTI])) == 10
    assert all(len(set(v)) == len(v) for v in per.values())
    # a folder with fewer images than shots is taken whole
    assert all(len(v) == counts[k] for k, v in per.items() if counts[k] <= 10)
    assert sysu_gallery(sysu, "indoor", 0, shots=3) == reference_gallery(str(sysu), "indoor", 0, shots=3)


def test_load_sysu_mm01(sysu: Path) -> None:
    counts = _sysu_counts()
    ds = load_sysu_mm01(sysu, mode="indoor", trial=4)
    assert (ds.name, ds.protocol, ds.root) == ("sysu_mm01", "sysu", sysu)
    train_ids = sorted(TRAIN_IDS + VAL_IDS)
    assert ds.train_pid_map == {p: i for i, p in enumerate(train_ids)} == {2: 0, 4: 1, 6: 2, 7: 3, 9: 4}
    assert len(ds.train) == sum(n for (p, _), n in counts.items() if p in train_ids)
    assert all(len(t) == 1 for t in ds.train + ds.test_ir + ds.test_rgb)
    for t in ds.train:
        rel = Path(t.paths[0]).relative_to(sysu).parts
        assert rel[0] == f"cam{t.camid}" and int(rel[1]) == train_ids[t.pid]
        assert t.modality == ("ir" if t.camid in (3, 6) else "rgb")
    assert {t.modality for t in ds.train} == {"rgb", "ir"}
    assert ds.num_train_pids == 5
    assert [(str(Path(t.paths[0]).relative_to(sysu)), t.pid, t.camid) for t in ds.test_ir] == sysu_query(sysu)
    assert [(str(Path(t.paths[0]).relative_to(sysu)), t.pid, t.camid) for t in ds.test_rgb] == sysu_gallery(
        sysu, "indoor", 4)
    assert {t.modality for t in ds.test_ir} == {"ir"} and {t.modality for t in ds.test_rgb} == {"rgb"}
    assert {t.pid for t in ds.test_ir} == set(TEST_IDS)  # original ids
    q, g = ds.split("rgb2ir")
    assert q is ds.test_rgb and g is ds.test_ir
    assert len(load_sysu_mm01(sysu, shots=10).test_rgb) == len(sysu_gallery(sysu, "all", 0, 10))

    batch = next(iter(build_test_loader(ds.test_ir, ClipSpec(seq_len=1, height=16, width=8, batch_size=4, workers=0))))
    assert batch["clip"].shape == (4, 1, 3, 16, 8)
    assert batch["pid"].tolist() == [t.pid for t in ds.test_ir[:4]]


def test_sysu_ignores_non_images(tmp_path: Path) -> None:
    counts = {(1, 3): 2, (1, 1): 2, (2, 3): 1, (2, 4): 1}
    root = write_sysu_tree(tmp_path / "s", counts, real_images=False, train="2", val="", test="1")
    (root / "cam3" / "0001" / "Thumbs.db").touch()
    (root / "cam1" / "0001" / "notes.txt").touch()
    (root / "cam1" / "0001" / "X.JPEG").touch()
    assert [r for r, _, _ in sysu_query(root)] == ["cam3/0001/0009.jpg", "cam3/0001/0010.jpg"]
    picks = {sysu_gallery(root, "all", t)[0][0] for t in range(10)}
    assert picks == {"cam1/0001/0009.jpg", "cam1/0001/0010.jpg", "cam1/0001/X.JPEG"}


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DatasetFormatError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def test_sysu_errors(tmp_path: Path) -> None:
    counts = {(1, 3): 2, (1, 1): 2, (2, 3): 1, (2, 4): 1, (3, 2): 1}
    base = write_sysu_tree(tmp_path / "base", counts, real_images=False, train="2", val="", test="1,3")

    def variant(name: str, **files: str) -> Path:
        root = tmp_path / name
        shutil.copytree(base, root)
        for split, text in files.items():
            (root / "exp" / f"{split}_id.txt").write_text(text)
        return root

    assert "dataset root is not a directory" in _error(load_sysu_mm01, tmp_path / "nope")
    root = variant("no_test")
    (root / "exp" / "test_id.txt").unlink()
    msg = _error(sysu_query, root)
    assert "test_id.txt" in msg and "missing" in msg
    root = variant("no_val")
    (root / "exp" / "val_id.txt").unlink()
    assert "val_id.txt: missing" in _error(load_sysu_mm01, root)

    msg = _error(read_sysu_ids, variant("bad_token", test="1,\n3,x12,"), "test")
    assert "test_id.txt:2" in msg and "'x12'" in msg
    assert "listed twice" in _error(read_sysu_ids, variant("dup", train="2, 2"), "train")

    msg = _error(sysu_gallery, variant("ghost", test="1,3,77"), "all", 0)
    assert "test_id.txt" in msg and "0077" in msg and "no image in any camera" in msg

    root = variant("no_query", test="3")  # id 3 has only an RGB image
    msg = _error(sysu_query, root)
    assert "no query images" in msg and "cam3" in msg and "cam6" in msg
    assert "no query images" in _error(load_sysu_mm01, root)

    root = variant("no_train", train="", val="\n")
    msg = _error(load_sysu_mm01, root)
    assert "train split is empty" in msg and "train_id.txt" in msg

    assert "all, indoor" in _error(sysu_gallery, base, "outdoor")
    assert "'outdoor'" in _error(load_sysu_mm01, base, mode="outdoor")
    assert "trial must be an integer >= 0, got -1" in _error(sysu_gallery, base, "all", -1)
    assert "trial" in _error(load_sysu_mm01, base, trial=-1)
    assert "shots" in _error(sysu_gallery, base, "all", 0, 0)
    assert "both in train" in _error(load_sysu_mm01, variant("leak", val="1"))


def test_sysu_no_gallery_for_indoor(tmp_path: Path) -> None:
    root = write_sysu_tree(tmp_path / "s", {(1, 3): 1, (1, 4): 2, (2, 6): 1, (2, 1): 1}, real_images=False,
                           train="2", val="", test="1")
    assert len(sysu_gallery(root, "all", 0)) == 1
    msg = _error(sysu_gallery, root, "indoor", 0)
    assert "no gallery images for mode 'indoor'" in msg and "cam1/, cam2/" in msg


def test_sysu_train_id_without_images_warns(tmp_path: Path) -> None:
    root = write_sysu_tree(tmp_path / "s", {(1, 3): 1, (1, 1): 1, (2, 6): 1}, real_images=False,
                           train="2,8", val="", test="1")
    with pytest.warns(UserWarning, match="0008"):
        ds = load_sysu_mm01(root)
    assert ds.train_pid_map == {2: 0}


# --------------------------------------------------------------------------------------------- RegDB

# trial -> (train pids, test pids) of six people; labels in the lists are not 0-based on purpose for training
REGDB_SPLITS = {1: ([281, 282, 283], [284, 285, 286]), 2: ([284, 285, 286], [281, 282, 283])}
REGDB_IMAGES = {"Visible": 3, "Thermal": 2}  # images per person


def _regdb_name(folder: str, pid: int, k: int) -> str:
    return f"{folder}/{pid}/male_front_{folder[0].lower()}_{pid * 10 + k:05d}_{pid}.bmp"


def write_regdb_tree(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for folder, n in REGDB_IMAGES.items():
        for pid in range(281, 287):
            (root / folder / str(pid)).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                arr = rng.integers(0, 255, (8, 4, 3) if folder == "Visible" else (8, 4), dtype=np.uint8)
                Image.fromarray(arr).save(root / _regdb_name(folder, pid, k))
    (root / "idx").mkdir()
    for trial, (train, test) in REGDB_SPLITS.items():
        for split, pids in (("train", train), ("test", test)):
            for folder, n in REGDB_IMAGES.items():
                # train labels 10, 20, 30 (relabelled to 0..2); test labels 0..2 as in the release
                lines = [f"{_regdb_name(folder, pid, k)} {(i + 1) * 10 if split == 'train' else i}"
                         for i, pid in enumerate(pids) for k in range(n)]
                (root / "idx" / f"{split}_{folder.lower()}_{trial}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def regdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_regdb_tree(tmp_path_factory.mktemp("regdb") / "RegDB")


def test_read_regdb_list(tmp_path: Path) -> None:
    p = tmp_path / "l.txt"
    p.write_text("Visible/281/female_back_v_06657_281.bmp 0\r\n\nThermal/3/a b.bmp 12\n")
    assert read_regdb_list(p) == [("Visible/281/female_back_v_06657_281.bmp", 0), ("Thermal/3/a b.bmp", 12)]
    p.write_text("Visible/1/a.bmp 0\nVisible/1/b.bmp\n")
    assert f"{p}:2:" in _error(read_regdb_list, p)
    p.write_text("Visible/1/a.bmp 0\n\nVisible/1/b.bmp x\n")
    assert f"{p}:3:" in _error(read_regdb_list, p)


def test_load_regdb_trials(regdb: Path) -> None:
    for trial, (train_pids, test_pids) in REGDB_SPLITS.items():
        ds = load_regdb(regdb, trial=trial)
        assert (ds.name, ds.protocol) == ("regdb", "regdb")
        assert ds.train_pid_map == {10: 0, 20: 1, 30: 2}
        assert len(ds.train_of("rgb")) == 9 and len(ds.train_of("ir")) == 6
        assert len(ds.test_ir) == 6 and len(ds.test_rgb) == 9
        assert all(len(t) == 1 for t in ds.train + ds.test_ir + ds.test_rgb)
        assert {(t.modality, t.camid) for t in ds.train} == {("rgb", 1), ("ir", 2)}
        assert {(t.modality, t.camid) for t in ds.test_ir} == {("ir", 2)}
        assert {(t.modality, t.camid) for t in ds.test_rgb} == {("rgb", 1)}
        # train labels relabelled, and each label's images belong to one person in both modalities
        for t in ds.train:
            assert Path(t.paths[0]).parent.name == str(train_pids[t.pid])
        assert [t.pid for t in ds.test_ir] == [0, 0, 1, 1, 2, 2]
        assert [Path(t.paths[0]).parent.name for t in ds.test_ir] == [str(p) for p in test_pids for _ in range(2)]
        assert Path(ds.test_ir[0].paths[0]) == regdb / _regdb_name("Thermal", test_pids[0], 0)
        assert Path(ds.test_rgb[-1].paths[0]) == regdb / _regdb_name("Visible", test_pids[-1], 2)
        q, g = ds.split("rgb2ir")
        assert {t.modality for t in q} == {"rgb"} and {t.modality for t in g} == {"ir"}
    assert load_regdb(regdb, 1).test_ir != load_regdb(regdb, 2).test_ir
    batch = next(iter(build_test_loader(ds.test_ir, ClipSpec(seq_len=1, height=16, width=8, batch_size=4, workers=0))))
    assert batch["clip"].shape == (4, 1, 3, 16, 8)


def test_regdb_errors(regdb: Path, tmp_path: Path) -> None:
    root = tmp_path / "r"
    shutil.copytree(regdb, root)
    for trial in (0, 11, "1"):
        assert "trial must be an integer in 1..10" in _error(load_regdb, root, trial=trial)
    assert "dataset root is not a directory" in _error(load_regdb, tmp_path / "nope")

    (root / "idx" / "test_thermal_2.txt").unlink()
    msg = _error(load_regdb, root, trial=2)
    assert "idx/test_thermal_2.txt: missing" in msg
    load_regdb(root, trial=1)  # the other trial is unaffected

    first = _regdb_name("Thermal", 284, 0)
    (root / first).unlink()
    (root / _regdb_name("Visible", 285, 1)).unlink()
    msg = _error(load_regdb, root, trial=1)
    assert "2 image(s)" in msg and first in msg
    assert len(load_regdb(root, trial=1, check_files=False).train) == 15

    lst = root / "idx" / "train_visible_1.txt"
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join(lines[:4] + ["Visible/281/broken.bmp"] + lines[4:]) + "\n")
    assert f"{lst}:5:" in _error(load_regdb, root, trial=1)

    lst.write_text("\n".join(lines[:-3]) + "\n")  # the visible list lacks label 30
    msg = _error(load_regdb, root, trial=1, check_files=False)
    assert "share one label set" in msg and "only thermal: [30]" in msg
