"""SYSU-MM01 reader (images, each a tracklet of one frame), as the community reference code reads the release.

Layout (DESIGN.md §3): images at ``root/cam1..cam6/<pid:04d>/<image>.jpg``; id lists in
``root/exp/{train_id,val_id,test_id}.txt`` (one line of comma-separated integers). Cameras 1, 2, 4, 5
are visible (RGB), 3 and 6 infrared.

The query and gallery rules are those of the AGW / DDAG ``process_query_sysu`` /
``process_gallery_sysu`` functions, pick for pick:

* query (both search modes): for each test id in sorted order (as ``%04d`` strings), for cam3 then
  cam6, every image of the folder in sorted order;
* gallery of trial ``t``: ``random.seed(t)``; for each test id in sorted order, for each RGB camera
  (``cam1, cam2, cam4, cam5`` in all-search, ``cam1, cam2`` in indoor-search) whose folder has images,
  one ``random.choice`` of the sorted images.

The draws here use a private ``random.Random(t)``, which is seeded and draws exactly as the global
generator after ``random.seed(t)`` does, so the picks are identical while the caller's global random
state is left alone. Only files ending in .jpg/.jpeg/.png/.bmp (any case) count as images; the
release holds nothing else in these folders.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from cmft.data.errors import DatasetFormatError, checked_int, read_lines
from cmft.data.types import Modality, Tracklet, VIDataset

CAMERAS = (1, 2, 3, 4, 5, 6)
RGB_CAMERAS = (1, 2, 4, 5)
IR_CAMERAS = (3, 6)
GALLERY_CAMERAS: dict[str, tuple[int, ...]] = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SEARCH_MODES = tuple(GALLERY_CAMERAS)
ID_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

_ID_TOKEN = re.compile(r"\d+")

SysuItem = tuple[str, int, int]  # (path relative to root, pid, camera)


def camera_modality(cam: int) -> Modality:
    """``"ir"`` for cameras 3 and 6, ``"rgb"`` for 1, 2, 4, 5."""
    if cam not in CAMERAS:
        raise ValueError(f"SYSU-MM01 has cameras 1..6, got {cam}")
    return "ir" if cam in IR_CAMERAS else "rgb"


def _check_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    return root


def _check_mode(mode: str) -> None:
    if mode not in GALLERY_CAMERAS:
        raise DatasetFormatError(
            f"SYSU-MM01 search mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}"
        )


def _check_trial(trial: int) -> int:
    return checked_int(trial, "SYSU-MM01 trial", 0)


def _check_shots(shots: int) -> int:
    return checked_int(shots, "SYSU-MM01 gallery shots", 1)


def read_sysu_ids(root: str | Path, split: str) -> list[int]:
    """The ids of ``root/exp/<split>_id.txt`` (split: train, val or test), in file order.

    The file is one line of comma-separated integers; whitespace, newlines and a trailing comma are
    tolerated. A token that is not a non-negative integer, or an id listed twice, raises
    :class:`DatasetFormatError` naming the file. An empty file gives an empty list.
    """
    if split not in ID_SPLITS:
        raise ValueError(f"SYSU-MM01 id split must be one of {', '.join(ID_SPLITS)}, got {split!r}")
    path = _check_root(root) / "exp" / f"{split}_id.txt"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path}: missing. A SYSU-MM01 root holds exp/{{{','.join(f'{s}_id.txt' for s in ID_SPLITS)}}} "
            "beside cam1..cam6/"
        )
    return read_id_list(path)


def read_id_list(path: Path) -> list[int]:
    """The comma-separated ids of an id file (SYSU-MM01's ``exp/*_id.txt``, LLCM's ``idx/test_id.txt``), in order;
    a token that is not an integer, or an id listed twice, is a :class:`DatasetFormatError` naming ``file:line``."""
    ids: list[int] = []
    seen: set[int] = set()
    for line_no, line in enumerate(read_lines(path), 1):
        for tok in re.split(r"[,\s]+", line):
            if not tok:
                continue
            if not _ID_TOKEN.fullmatch(tok):
                raise DatasetFormatError(f"{path}:{line_no}: {tok!r} is not an integer id")
            pid = int(tok)
            if pid in seen:
                raise DatasetFormatError(f"{path}:{line_no}: id {pid} is listed twice")
            seen.add(pid)
            ids.append(pid)
    return ids


def _id_folder(pid: int) -> str:
    return "%04d" % pid  # as the reference names the folders (and sorts these strings)


def list_images(folder: Path) -> list[str]:
    """Image file names of ``folder`` in sorted order ([] when the folder does not exist)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES))


def _listing(root: Path, ids: Iterable[int], cams: Sequence[int]) -> dict[str, dict[int, list[str]]]:
    """``{pid folder: {cam: sorted image names}}`` for the ids in the reference's order (sorted strings)."""
    return {sid: {c: list_images(root / f"cam{c}" / sid) for c in cams} for sid in sorted(_id_folder(p) for p in ids)}


def _test_listing(root: Path) -> dict[str, dict[int, list[str]]]:
    """All six cameras of every test id; an id with no image in any camera is an error."""
    ids = read_sysu_ids(root, "test")
    id_file = root / "exp" / "test_id.txt"
    if not ids:
        raise DatasetFormatError(f"{id_file}: lists no ids")
    listing = _listing(root, ids, CAMERAS)
    empty = [sid for sid, cams in listing.items() if not any(cams.values())]
    if empty:
        shown = ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else "")
        raise DatasetFormatError(
            f"{id_file}: {len(empty)} test id(s) have no image in any camera (cam1..cam6/<id>/): {shown}"
        )
    return listing


def _rel(cam: int, sid: str, name: str) -> str:
    return f"cam{cam}/{sid}/{name}"


def sysu_query(root: str | Path, mode: str = "all") -> list[SysuItem]:
    """The infrared queries: ``(path relative to root, pid, cam)`` for every cam3 / cam6 image of the test ids.

    Order: test ids sorted as ``%04d`` strings, then cam3 before cam6, then file name. ``mode`` (all or
    indoor) does not change the query set; it is validated and accepted for symmetry with the reference.
    """
    _check_mode(mode)
    root = _check_root(root)
    listing = _test_listing(root)
    out = [(_rel(c, sid, n), int(sid), c) for sid, cams in listing.items() for c in IR_CAMERAS for n in cams[c]]
    if not out:
        raise DatasetFormatError(
            f"{root}: no query images: none of the ids in exp/test_id.txt has an image in cam3/ or cam6/"
        )
    return out


def _rng(trial: int) -> random.Random:
    """A private generator that draws exactly as the global one after ``random.seed(trial)``."""
    return random.Random(trial)


def sysu_gallery(root: str | Path, mode: str = "all", trial: int = 0, shots: int = 1) -> list[SysuItem]:
    """The visible gallery of one trial: ``(path relative to root, pid, cam)`` items.

    ``shots=1`` (single-shot, the standard protocol) is the reference rule exactly: a generator seeded
    with ``trial``, test ids in sorted order, cameras in order (1, 2, 4, 5 for ``mode="all"``, 1, 2 for
    ``"indoor"``), one ``random.choice`` of the sorted images of each (id, camera) folder that has images.

    ``shots > 1`` is multi-shot (the original SYSU-MM01 protocol uses 10 images per id and camera): the
    same seeding and order, but ``random.sample(sorted images, min(shots, n))`` per (id, camera), the
    items of one folder in the order they were drawn. Deterministic for a given (mode, trial, shots).
    """
    _check_mode(mode)
    trial = _check_trial(trial)
    shots = _check_shots(shots)
    root = _check_root(root)
    listing = _test_listing(root)
    rng = _rng(trial)
    out: list[SysuItem] = []
    for sid, cams in listing.items():
        for c in GALLERY_CAMERAS[mode]:
            files = cams[c]
            if not files:
                continue
            picks = [rng.choice(files)] if shots == 1 else rng.sample(files, min(shots, len(files)))
            out.extend((_rel(c, sid, n), int(sid), c) for n in picks)
    if not out:
        cams_txt = ", ".join(f"cam{c}/" for c in GALLERY_CAMERAS[mode])
        raise DatasetFormatError(
            f"{root}: no gallery images for mode {mode!r}: "
            f"none of the ids in exp/test_id.txt has an image in {cams_txt}"
        )
    return out


def sysu_tracklets(root: str | Path, items: Sequence[SysuItem]) -> list[Tracklet]:
    """``(relative path, pid, cam)`` items (from :func:`sysu_query` / :func:`sysu_gallery`) as one-frame tracklets."""
    root = Path(root)
    return [Tracklet((str(root / rel),), pid, cam, camera_modality(cam)) for rel, pid, cam in items]


def load_sysu_mm01(root: str | Path, mode: str = "all", trial: int = 0, shots: int = 1) -> VIDataset:
    """Read a SYSU-MM01 tree as a :class:`VIDataset` of one-frame tracklets (``protocol="sysu"``).

    * train: every image of the train + val ids (as is customary) in all six cameras, order id, camera,
      file; modality by camera; ids relabelled 0..N-1 in sorted order (``train_pid_map``). A train/val
      id without any image is skipped with a warning; an id in both train/val and test is an error.
    * ``test_ir``: :func:`sysu_query`; ``test_rgb``: :func:`sysu_gallery` (``mode``, ``trial``,
      ``shots``); original pids and camera ids.
    """
    _check_mode(mode)
    trial = _check_trial(trial)
    shots = _check_shots(shots)
    root = _check_root(root)
    train_ids = read_sysu_ids(root, "train") + read_sysu_ids(root, "val")
    test_ids = set(read_sysu_ids(root, "test"))
    leak = sorted(set(train_ids) & test_ids)
    if leak:
        shown = ", ".join(str(p) for p in leak[:10]) + (", ..." if len(leak) > 10 else "")
        raise DatasetFormatError(
            f"{root / 'exp'}: {len(leak)} id(s) are both in train_id.txt/val_id.txt and in test_id.txt: {shown}"
        )
    listing = _listing(root, set(train_ids), CAMERAS)
    no_images = [sid for sid, cams in listing.items() if not any(cams.values())]
    if no_images:
        shown = ", ".join(no_images[:10]) + (", ..." if len(no_images) > 10 else "")
        warnings.warn(
            f"{root}: {len(no_images)} train/val id(s) have no image in any camera and were skipped: {shown}",
            stacklevel=2,
        )
    raw = [(_rel(c, sid, n), int(sid), c) for sid, cams in listing.items() for c in CAMERAS for n in cams[c]]
    if not raw:
        raise DatasetFormatError(
            f"{root / 'exp'}: the train split is empty: train_id.txt and val_id.txt list no id with an image "
            "in cam1..cam6/"
        )
    pid_map = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in raw}))}
    train = [Tracklet((str(root / rel),), pid_map[pid], c, camera_modality(c)) for rel, pid, c in raw]
    query = sysu_tracklets(root, sysu_query(root, mode))
    gallery = sysu_tracklets(root, sysu_gallery(root, mode, trial, shots))
    return VIDataset("sysu_mm01", root, train, query, gallery, pid_map, protocol="sysu")
