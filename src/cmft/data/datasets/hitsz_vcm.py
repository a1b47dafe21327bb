"""HITSZ-VCM reader, exactly as the dataset authors' loader reads the official release.

Layout (DESIGN.md §3): frames at ``root/<pid:04d>/{ir|rgb}/D<cam>/<frame>.jpg`` (or split into
``root/Train/...`` and ``root/Test/...`` as the release unpacks), text files in ``root/info/``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cmft.data.errors import DatasetFormatError, read_lines
from cmft.data.types import Modality, Tracklet, VIDataset

__all__ = ["DatasetFormatError", "decode_frame_name", "load_hitsz_vcm"]  # DatasetFormatError: its old home, kept importable

MIN_SEQ_LEN = 12
INFO_FILES = ("train_name.txt", "test_name.txt", "track_train_info.txt", "track_test_info.txt", "query_IDX.txt")
_NAME_RE = re.compile(r"^(\d{4})M(\d)(D\d+)T\d+F(.+)$")
_MODALITY_CODE: dict[int, Modality] = {1: "ir", 2: "rgb"}


@dataclass(frozen=True)
class _TrackRow:
    modality: Modality
    start: int  # 1-based inclusive, as in the file
    end: int
    pid: int
    camid: int


def decode_frame_name(name: str) -> str:
    """Map an info-file frame name to its relative path: ``0001M2D3T1F1.jpg`` -> ``0001/rgb/D3/1.jpg``.

    As the authors' decoder: modality digit ``1`` is IR, any other digit RGB; the camera folder is
    the text from ``D`` up to ``T``; the file name is what follows ``F``.
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise ValueError(f"frame name {name!r} is not of the form <pid:4 digits>M<digit>D<cam>T<n>F<file>")
    pid, mod, cam, file = m.groups()
    return f"{pid}/{'ir' if mod == '1' else 'rgb'}/{cam}/{file}"


PENDING, COMMITTED = ".pending", "COMMITTED"  # an append (``cmft track --out``) committed but not yet moved in place


def _info_path(root: Path, name: str) -> Path:
    """``info/<name>``, or its staged copy when an append has committed (``info/.pending/COMMITTED``) and was
    interrupted before every file was moved in place: a reader sees the old files or the new ones, never a mix."""
    staged = root / "info" / PENDING / name
    if (root / "info" / PENDING / COMMITTED).is_file() and staged.is_file():
        return staged
    path = root / "info" / name
    if not path.is_file():
        raise DatasetFormatError(
            f"{path}: missing. A HITSZ-VCM root holds info/{{{','.join(INFO_FILES)}}} "
            "beside the image folders."
        )
    return path


def read_name_list(path: Path) -> list[str]:
    """Relative frame paths of a ``*_name.txt`` file, one per non-empty line, in file order."""
    out: list[str] = []
    for line_no, line in enumerate(read_lines(path), 1):
        name = line.strip()
        if not name:
            continue
        try:
            out.append(decode_frame_name(name))
        except ValueError as e:
            raise DatasetFormatError(f"{path}:{line_no}: {e}") from None
    if not out:
        raise DatasetFormatError(f"{path}: no frame names")
    return out


def read_track_info(path: Path, num_names: int, names: str | Path = "the name list") -> list[_TrackRow]:
    """Rows ``modality start end pid cam`` of a ``track_*_info.txt`` file, validated against the name list
    (``names``: the name list's file, for messages: a range past its end may be the name list's fault)."""
    rows: list[_TrackRow] = []
    for line_no, line in enumerate(read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 5:
                raise ValueError(f"expected 5 integers 'modality start end pid cam', got {len(fields)} fields")
            mod, start, end, pid, cam = (int(f) for f in fields)
            if mod not in _MODALITY_CODE:
                raise ValueError(f"modality must be 1 (IR) or 2 (RGB), got {mod}")
            if not 1 <= start <= end <= num_names:
                raise ValueError(
                    f"frame range {start}..{end} is not within 1..{num_names} (the length of {names})"
                )
        except ValueError as e:
            raise DatasetFormatError(f"{path}:{line_no}: {e}: {line.strip()!r}") from None
        rows.append(_TrackRow(_MODALITY_CODE[mod], start, end, pid, cam))
    if not rows:
        raise DatasetFormatError(f"{path}: no tracklets")
    return rows


def read_query_idx(path: Path, num_rows: int) -> list[int]:
    """0-based row indices of the infrared queries from ``query_IDX.txt`` (1-based in the file)."""
    idx: list[int] = []
    for line_no, line in enumerate(read_lines(path), 1):
        for tok in line.split():
            try:
                i = int(tok)
            except ValueError:
                raise DatasetFormatError(f"{path}:{line_no}: {tok!r} is not a row number") from None
            if not 1 <= i <= num_rows:
                raise DatasetFormatError(
                    f"{path}:{line_no}: row {i} is outside 1..{num_rows} (track_test_info.txt's rows)"
                )
            idx.append(i - 1)
    if not idx:
        raise DatasetFormatError(f"{path}: no query rows")
    return idx


def _image_roots(root: Path) -> dict[str, Path]:
    """Where each split's frames live: merged under ``root`` or split as ``root/Train``, ``root/Test``."""
    if (root / "Train").is_dir() and (root / "Test").is_dir():
        return {"train": root / "Train", "test": root / "Test"}
    return {"train": root, "test": root}


def _tracklets(
    rows: Sequence[_TrackRow], names: Sequence[str], image_root: Path, min_seq_len: int
) -> list[tuple[int, Tracklet]]:
    """(row index, tracklet) for every row of at least ``min_seq_len`` frames."""
    out = []
    for i, r in enumerate(rows):
        if r.end - r.start + 1 >= min_seq_len:
            paths = tuple(str(image_root / n) for n in names[r.start - 1 : r.end])
            out.append((i, Tracklet(paths, r.pid, r.camid, r.modality)))
    return out


def _drop_missing(
    tracklets: list[Tracklet], min_seq_len: int, skip_missing: bool, where: str, listed_in: Path
) -> list[Tracklet]:
    """The tracklets without their frames missing on disk (``skip_missing``), or an error naming the name list
    ``listed_in`` that lists them."""
    missing = [p for t in tracklets for p in t.paths if not Path(p).is_file()]
    if not missing:
        return tracklets
    if not skip_missing:
        shown = "\n  ".join(missing[:5])
        raise DatasetFormatError(
            f"{listed_in}: {len(missing)} frame(s) of the {where} split listed here are missing on disk, e.g.\n  {shown}\n"
            "Pass skip_missing=True (CLI: --skip-missing) to drop them."
        )
    gone = set(missing)
    kept = []
    for t in tracklets:
        paths = tuple(p for p in t.paths if p not in gone)
        if len(paths) >= min_seq_len:
            kept.append(Tracklet(paths, t.pid, t.camid, t.modality))
    warnings.warn(
        f"skipped {len(missing)} missing frame(s) of the {where} split; "
        f"{len(tracklets) - len(kept)} tracklet(s) fell below {min_seq_len} frames and were dropped",
        stacklevel=3,
    )
    return kept


def load_hitsz_vcm(
    root: str | Path,
    min_seq_len: int = MIN_SEQ_LEN,
    check_files: bool = True,
    skip_missing: bool = False,
    splits: Sequence[str] = ("train", "test"),
) -> VIDataset:
    """Read a HITSZ-VCM tree: train tracklets (ids relabelled 0..N-1 in sorted order), IR queries, RGB gallery.

    Tracklets shorter than ``min_seq_len`` frames are dropped everywhere. With ``check_files`` every
    listed frame must exist (missing ones raise, or are dropped with ``skip_missing``). ``splits`` names
    the splits to read: evaluation needs only ``("test",)``, so a test-only tree (e.g. one exported by
    ``cmft track``) is enough for it; the splits not read come back empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    unknown = set(splits) - {"train", "test"}
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of ('train', 'test'), got {tuple(splits)}")
    images = _image_roots(root)

    train_raw: list[Tracklet] = []
    query: list[Tracklet] = []
    gallery: list[Tracklet] = []
    name_lists: dict[str, Path] = {}  # split -> its frame-name list, resolved once (errors about frames name it)
    if "train" in splits:
        name_lists["train"] = _info_path(root, "train_name.txt")
        train_names = read_name_list(name_lists["train"])
        train_rows = read_track_info(_info_path(root, "track_train_info.txt"), len(train_names), name_lists["train"])
        train_raw = [t for _, t in _tracklets(train_rows, train_names, images["train"], min_seq_len)]
    if "test" in splits:
        name_lists["test"] = _info_path(root, "test_name.txt")
        test_names = read_name_list(name_lists["test"])
        test_rows = read_track_info(_info_path(root, "track_test_info.txt"), len(test_names), name_lists["test"])
        query_rows = set(read_query_idx(_info_path(root, "query_IDX.txt"), len(test_rows)))
        test = _tracklets(test_rows, test_names, images["test"], min_seq_len)
        query = [t for i, t in test if i in query_rows]
        gallery = [t for i, t in test if i not in query_rows]

    if check_files:
        if "train" in name_lists:
            train_raw = _drop_missing(train_raw, min_seq_len, skip_missing, "train", name_lists["train"])
        if "test" in name_lists:
            query = _drop_missing(query, min_seq_len, skip_missing, "query", name_lists["test"])
            gallery = _drop_missing(gallery, min_seq_len, skip_missing, "gallery", name_lists["test"])

    pid_map = {pid: label for label, pid in enumerate(sorted({t.pid for t in train_raw}))}
    train = [Tracklet(t.paths, pid_map[t.pid], t.camid, t.modality) for t in train_raw]

    for split, what, items, source in (
        ("train", "train IR", [t for t in train if t.modality == "ir"], "info/track_train_info.txt"),
        ("train", "train RGB", [t for t in train if t.modality == "rgb"], "info/track_train_info.txt"),
        ("test", "IR query", query, "info/query_IDX.txt"),
        ("test", "RGB gallery", gallery, "info/track_test_info.txt"),
    ):
        if split in splits and not items:
            raise DatasetFormatError(
                f"{root / source}: the {what} set is empty after dropping tracklets shorter than {min_seq_len} frames"
            )
    return VIDataset("hitsz_vcm", root, train, query, gallery, pid_map)
