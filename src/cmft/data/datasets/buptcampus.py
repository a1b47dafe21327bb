"""BUPTCampus reader (Du et al., TIFS 2024), as the dataset authors' code reads the release.

Layout: a release folder ``ROOT`` holding ``DATA/`` (frames), ``data_paths.json``, ``train.txt``,
``query.txt``, ``gallery.txt`` and ``train_auxiliary.txt``. A list line is ``obj_id modality camera
tracklet_id`` (e.g. ``1746 RGB/IR TSG2 1``); modality ``RGB/IR`` (training: one moment seen by both
sensors of a binocular camera), ``RGB`` or ``IR`` (query and gallery). A tracklet's frames are
``data_paths[obj_id][modality][camera][tracklet_id]``, paths relative to ``DATA/``; a ``RGB/IR`` line reads
both the ``RGB`` and the ``IR`` entry, frame ``i`` of one aligned with frame ``i`` of the other.

What cmft makes of it (:class:`~cmft.data.types.VIDataset`):

* ``train``: for each training line its RGB and its IR tracklet, listed in ``pairs``; labels 0..N-1 in
  the order of the sorted id strings (the authors' ``sorted(set(pids))``), ``train_pid_map`` int id -> label;
* ``test_ir`` / ``test_rgb``: the query tracklets of that modality first (``num_query``), then the gallery
  ones, with their int ids; query and gallery each mix both modalities;
* ``auxiliary``: the ``train_auxiliary.txt`` pairs (930 single-camera ids), labelled after the training
  ids; ``auxiliary=True`` also trains on them;
* cameras ``LS3 G25 CQ1 W4 TSG1 TSG2`` are camera ids 0..5 (the authors' ``CAMERA`` table).

Fused retrieval: a query or gallery line whose twin of the same moment (the other sensor's tracklet with
the same camera and tracklet id, as many frames) is in ``data_paths.json`` also gives an aligned
``(rgb, ir)`` pair in ``test_pairs``; ``cmft eval`` scores pairs against pairs with the fused embedding
as the row ``fused``.

Protocols: ``buptcampus`` is the authors' rule (nothing removed: query and gallery are disjoint sets);
``buptcampus_m3reid`` is M3-ReID's (same id and same camera removed). Both report infrared -> visible,
visible -> infrared and the same-modality pairs. The authors' test loader
(``ConsistentModalitySampler``) drops ``len(rgb) % batch_size`` visible tracklets from each set, and all
of them when that remainder is 0 (``idx_rgb[:-0]`` is empty); cmft evaluates every tracklet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmft.data.errors import DatasetFormatError, read_lines
from cmft.data.types import Modality, Tracklet, VIDataset

CAMERAS = {"LS3": 0, "G25": 1, "CQ1": 2, "W4": 3, "TSG1": 4, "TSG2": 5}
MODALITIES: dict[str, Modality] = {"RGB": "rgb", "IR": "ir"}
LISTS = ("train.txt", "query.txt", "gallery.txt", "train_auxiliary.txt")
PROTOCOLS = ("buptcampus", "buptcampus_m3reid")

Line = tuple[str, str, str, str, str]  # obj_id, modality, camera, tracklet_id, "file:line"


def release_root(root: str | Path) -> Path:
    """The release folder: ``root`` itself, or its parent when ``root`` is the ``DATA/`` folder."""
    root = Path(root)
    if not (root / "data_paths.json").is_file() and (root.parent / "data_paths.json").is_file() and root.name == "DATA":
        return root.parent
    return root


def is_buptcampus(root: str | Path) -> bool:
    """Whether a folder looks like a BUPTCampus release (or its ``DATA/`` folder)."""
    r = release_root(root)
    return (r / "data_paths.json").is_file() and (r / "DATA").is_dir()


def read_list(path: Path, allowed: tuple[str, ...]) -> list[Line]:
    """The lines of one list file; each must be ``obj_id modality camera tracklet_id`` with a known modality
    and camera, else :class:`DatasetFormatError` with ``file:line``. Blank lines are skipped."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing (a BUPTCampus release holds {', '.join(LISTS)} and data_paths.json)")
    out: list[Line] = []
    for n, raw in enumerate(read_lines(path), 1):
        text = raw.strip()
        if not text:
            continue
        where = f"{path}:{n}"
        fields = text.split()
        if len(fields) != 4:
            raise DatasetFormatError(f"{where}: expected 'obj_id modality camera tracklet_id', got {text!r}")
        obj_id, modality, camera, tracklet = fields
        if not (obj_id.isdigit() and obj_id.isascii()):
            raise DatasetFormatError(f"{where}: obj_id must be an integer, got {obj_id!r}")
        if modality not in allowed:
            raise DatasetFormatError(f"{where}: modality {modality!r} is not one of {list(allowed)} for this list")
        if camera not in CAMERAS:
            raise DatasetFormatError(f"{where}: unknown camera {camera!r}; BUPTCampus cameras are {list(CAMERAS)}")
        out.append((obj_id, modality, camera, tracklet, where))
    return out


class _Frames:
    """``data_paths.json`` and the frame checks."""

    def __init__(self, root: Path, check_files: bool) -> None:
        self.data, self.check_files = root / "DATA", check_files
        path = root / "data_paths.json"
        if not path.is_file():
            raise DatasetFormatError(f"{path}: missing")
        try:
            self.paths: Any = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetFormatError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(self.paths, dict):
            raise DatasetFormatError(f"{path}: expected an object obj_id -> modality -> camera -> tracklet -> frames")
        self.json = path

    def _entry(self, line: Line, modality: str) -> tuple[Any, str | None]:
        """``data_paths[obj_id][modality][camera][tracklet_id]`` of ``line``, or the first key that is missing."""
        node: Any = self.paths
        for key in (line[0], modality, line[2], line[3]):
            if not isinstance(node, dict) or key not in node:
                return None, key
            node = node[key]
        return node, None

    def has(self, line: Line, modality: str) -> bool:
        """Whether ``data_paths.json`` lists the tracklet of ``line`` in ``modality`` (its twin of the same moment)."""
        node, missing = self._entry(line, modality)
        return missing is None and isinstance(node, list) and bool(node)

    def of(self, line: Line, modality: str) -> tuple[str, ...]:
        obj_id, _, camera, tracklet, where = line
        node, missing = self._entry(line, modality)
        if missing is not None:
            raise DatasetFormatError(f"{where}: {self.json.name} has no data_paths[{obj_id!r}][{modality!r}]"
                                     f"[{camera!r}][{tracklet!r}] (missing key {missing!r})")
        if not isinstance(node, list) or not node or not all(isinstance(p, str) for p in node):
            raise DatasetFormatError(f"{where}: data_paths[{obj_id!r}][{modality!r}][{camera!r}][{tracklet!r}] "
                                     "must be a non-empty list of frame paths")
        frames = tuple(str(self.data / p) for p in node)
        if self.check_files:
            missing = [p for p in frames if not Path(p).is_file()]
            if missing:
                raise DatasetFormatError(f"{where}: {len(missing)} of {len(frames)} frames missing on disk, "
                                         f"first {missing[0]}")
        return frames


def _paired(lines: list[Line], frames: _Frames, labels: dict[str, int]) -> tuple[list[Tracklet], list[tuple[int, int]]]:
    tracklets: list[Tracklet] = []
    pairs: list[tuple[int, int]] = []
    for line in lines:
        rgb, ir = frames.of(line, "RGB"), frames.of(line, "IR")
        if len(rgb) != len(ir):
            raise DatasetFormatError(f"{line[4]}: an RGB/IR tracklet needs aligned frames, got {len(rgb)} RGB "
                                     f"and {len(ir)} IR")
        pid, cam = labels[line[0]], CAMERAS[line[2]]
        pairs.append((len(tracklets), len(tracklets) + 1))
        tracklets += [Tracklet(rgb, pid, cam, "rgb"), Tracklet(ir, pid, cam, "ir")]
    return tracklets, pairs


def load_buptcampus(
    root: str | Path, check_files: bool = True, auxiliary: bool = False, protocol: str = "buptcampus"
) -> VIDataset:
    """Read a BUPTCampus release (``root`` or its ``DATA/`` folder) as a :class:`VIDataset` (see the module doc)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown BUPTCampus protocol {protocol!r}; choose one of {PROTOCOLS}")
    root = release_root(root)
    if not (root / "DATA").is_dir():
        raise DatasetFormatError(f"{root}: not a BUPTCampus release (no DATA/ folder beside data_paths.json)")
    frames = _Frames(root, check_files)
    train_lines = read_list(root / "train.txt", ("RGB/IR",))
    aux_lines = read_list(root / "train_auxiliary.txt", ("RGB/IR",))
    labels = {pid: label for label, pid in enumerate(sorted({line[0] for line in train_lines}))}
    aux_ids = sorted({line[0] for line in aux_lines} - set(labels))
    aux_labels = {**labels, **{pid: len(labels) + k for k, pid in enumerate(aux_ids)}}
    train, pairs = _paired(train_lines, frames, labels)
    aux, aux_pairs = _paired(aux_lines, frames, aux_labels)
    if auxiliary:
        pairs += [(len(train) + r, len(train) + i) for r, i in aux_pairs]
        train = train + aux
    test: dict[str, dict[str, list[Tracklet]]] = {"query": {"ir": [], "rgb": []}, "gallery": {"ir": [], "rgb": []}}
    test_pairs: dict[str, list[tuple[Tracklet, Tracklet]]] = {"query": [], "gallery": []}
    for split in ("query", "gallery"):
        moments: set[tuple[str, str, str]] = set()
        for line in read_list(root / f"{split}.txt", tuple(MODALITIES)):
            mod = MODALITIES[line[1]]
            tracklet = Tracklet(frames.of(line, line[1]), int(line[0]), CAMERAS[line[2]], mod)
            test[split][mod].append(tracklet)
            other = "IR" if line[1] == "RGB" else "RGB"
            moment = (line[0], line[2], line[3])
            if moment in moments or not frames.has(line, other):
                continue  # one pair a moment; a line whose twin the release lacks has none
            twin_paths = frames.of(line, other)
            if len(twin_paths) != len(tracklet.paths):
                continue  # not aligned frame for frame: no pair
            twin = Tracklet(twin_paths, tracklet.pid, tracklet.camid, MODALITIES[other])
            test_pairs[split].append((tracklet, twin) if mod == "rgb" else (twin, tracklet))
            moments.add(moment)
    q, g = test["query"], test["gallery"]
    pid_map = {int(pid): label for pid, label in (aux_labels if auxiliary else labels).items()}
    return VIDataset("buptcampus", root, train, q["ir"] + g["ir"], q["rgb"] + g["rgb"], pid_map, protocol,
                     num_query={"ir": len(q["ir"]), "rgb": len(q["rgb"])}, pairs=pairs, auxiliary=aux,
                     test_pairs=test_pairs if test_pairs["query"] and test_pairs["gallery"] else {})
