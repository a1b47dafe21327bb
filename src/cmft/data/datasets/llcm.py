"""LLCM reader (Zhang and Wang, CVPR 2023: low-light cross-modality), as the authors' DEEN code reads the release.

Layout: ``idx/train_vis.txt`` and ``idx/train_nir.txt`` (``<path relative to root> <label>`` lines, one
image each), ``idx/test_id.txt`` (comma-separated test ids), and the test images at
``test_vis/cam{1..9}/<id:04d>/*`` and ``test_nir/cam{1,2,4..9}/<id:04d>/*`` (the near-infrared set has no
camera 3). Every image is a one-frame tracklet.

The protocol (``DEEN/test.py``, ``data_manager.py``), both directions, ten gallery draws each:

* infrared -> visible: every near-infrared test image is a query; the gallery of draw ``t`` is, after
  ``random.seed(t)``, for each test id in sorted order and each visible camera in order, one
  ``random.choice`` of the sorted images of that (id, camera) folder;
* visible -> infrared: every visible test image is a query and the gallery is drawn the same way from
  the near-infrared cameras. (The authors' script, in this mode, scores the drawn infrared images as
  queries against all visible images, the arguments of ``eval_llcm`` swapped; cmft scores the direction
  its name says.)
* scoring (``eval_llcm``): gallery images of the query's id and camera are removed, and the CMC counts
  each gallery identity once (as SYSU-MM01's); protocol ``llcm``.

The dataset :func:`load_llcm` returns holds one draw: ``test_ir`` = all near-infrared test images
followed by draw ``trial``'s infrared gallery, ``test_rgb`` the same for visible, ``num_query`` the
lengths of the first parts. :func:`llcm_draws` gives every draw for the ten-draw mean.
"""

from __future__ import annotations

import random
from pathlib import Path

from cmft.data.datasets.regdb import read_regdb_list
from cmft.data.datasets.sysu_mm01 import list_images, read_id_list
from cmft.data.errors import DatasetFormatError, checked_int
from cmft.data.types import Modality, Tracklet, VIDataset

VIS_CAMERAS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
NIR_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)
FOLDERS: dict[Modality, tuple[str, tuple[int, ...]]] = {"rgb": ("test_vis", VIS_CAMERAS), "ir": ("test_nir", NIR_CAMERAS)}
TRIALS = range(10)


def is_llcm(root: str | Path) -> bool:
    """Whether a folder looks like an LLCM release."""
    root = Path(root)
    return (root / "idx" / "train_vis.txt").is_file() or ((root / "test_vis").is_dir() and (root / "test_nir").is_dir())


def _test_images(root: Path) -> dict[Modality, list[tuple[int, int, list[str]]]]:
    """Per modality, ``(id, camera, sorted image paths)`` of every test (id, camera) folder, ids in sorted order."""
    id_file = root / "idx" / "test_id.txt"
    if not id_file.is_file():
        raise DatasetFormatError(f"{id_file}: missing (an LLCM release holds idx/train_vis.txt, idx/train_nir.txt, "
                                 "idx/test_id.txt, test_vis/ and test_nir/)")
    ids = read_id_list(id_file)
    if not ids:
        raise DatasetFormatError(f"{id_file}: lists no ids")
    out: dict[Modality, list[tuple[int, int, list[str]]]] = {}
    for mod, (folder, cams) in FOLDERS.items():
        out[mod] = []
        for sid in sorted("%04d" % p for p in ids):  # the authors sort the zero-padded strings
            for c in cams:
                files = [str(root / folder / f"cam{c}" / sid / n) for n in list_images(root / folder / f"cam{c}" / sid)]
                if files:
                    out[mod].append((int(sid), c, files))
        if not out[mod]:
            raise DatasetFormatError(f"{root / folder}: no image of any test id in {idx_cams(cams)}")
    return out


def idx_cams(cams: tuple[int, ...]) -> str:
    return ", ".join(f"cam{c}/" for c in cams)


def llcm_gallery(images: list[tuple[int, int, list[str]]], trial: int, mod: Modality) -> list[Tracklet]:
    """Draw ``trial``'s gallery from one modality's test folders (the authors' ``random.seed(trial)`` + one
    ``random.choice`` per id and camera, with a private generator that draws the same)."""
    rng = random.Random(trial)
    return [Tracklet((rng.choice(files),), pid, cam, mod) for pid, cam, files in images]


def llcm_draws(root: str | Path, trials: range = TRIALS) -> tuple[dict[Modality, list[Tracklet]], dict[int, dict[Modality, list[Tracklet]]]]:
    """Every test image per modality (the queries), and each draw's gallery per modality."""
    images = _test_images(Path(root))
    queries = {mod: [Tracklet((f,), pid, cam, mod) for pid, cam, files in images[mod] for f in files] for mod in images}
    draws = {t: {mod: llcm_gallery(images[mod], t, mod) for mod in images} for t in trials}
    return queries, draws


def _train(root: Path, check_files: bool) -> tuple[list[Tracklet], dict[int, int]]:
    sets: dict[Modality, list[tuple[str, int]]] = {}
    lists: dict[Modality, Path] = {}
    for mod, name in (("rgb", "train_vis.txt"), ("ir", "train_nir.txt")):
        path = lists[mod] = root / "idx" / name
        sets[mod] = read_regdb_list(path)
        if not sets[mod]:
            raise DatasetFormatError(f"{path}: lists no images")
    labels = sorted({label for items in sets.values() for _, label in items})
    pid_map = {label: i for i, label in enumerate(labels)}
    train: list[Tracklet] = []
    for mod, items in sets.items():
        mine = []
        for rel, label in items:
            cam = next((int(part[3:]) for part in Path(rel).parts if part.startswith("cam") and part[3:].isdigit()), 0)
            mine.append(Tracklet((str(root / rel),), pid_map[label], cam, mod))
        missing = [t.paths[0] for t in mine if not Path(t.paths[0]).is_file()] if check_files else []
        if missing:
            raise DatasetFormatError(f"{lists[mod]}: {len(missing)} image(s) listed here are missing on disk, "
                                     f"e.g. {missing[0]}")
        train += mine
    return train, pid_map


def load_llcm(root: str | Path, trial: int = 0, check_files: bool = True) -> VIDataset:
    """Read an LLCM release with gallery draw ``trial`` (0..9) as a :class:`VIDataset` (see the module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    trial = checked_int(trial, "LLCM gallery draw", TRIALS[0], TRIALS[-1])
    train, pid_map = _train(root, check_files)
    queries, draws = llcm_draws(root, range(trial, trial + 1))
    gallery = draws[trial]
    return VIDataset("llcm", root, train, queries["ir"] + gallery["ir"], queries["rgb"] + gallery["rgb"], pid_map,
                     protocol="llcm", num_query={"ir": len(queries["ir"]), "rgb": len(queries["rgb"])})
