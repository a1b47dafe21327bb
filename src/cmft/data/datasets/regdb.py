"""RegDB reader (images, each a tracklet of one frame), as the community reference code reads the release.

Layout (DESIGN.md §3): images at ``root/Visible/<pid>/*.bmp`` and ``root/Thermal/<pid>/*.bmp``; ten
splits listed in ``root/idx/{train,test}_{visible,thermal}_{trial}.txt`` for trial 1..10, one image a
line as ``<path relative to root> <label>``, e.g. ``Visible/281/female_back_v_06657_281.bmp 0``.

Each trial is its own train / test split (and its own model). Query = the test thermal images,
gallery = the test visible images (thermal -> visible, ``ir2rgb``); :meth:`VIDataset.split` swaps them
for visible -> thermal. The RegDB evaluation rule removes nothing, so camera ids (1 visible, 2
thermal) are informational.
"""

from __future__ import annotations

from pathlib import Path

from cmft.data.errors import DatasetFormatError, checked_int, read_lines
from cmft.data.types import Modality, Tracklet, VIDataset

TRIALS = range(1, 11)
VISIBLE_CAMID = 1
THERMAL_CAMID = 2
_MODALITIES: dict[str, tuple[Modality, int]] = {"visible": ("rgb", VISIBLE_CAMID), "thermal": ("ir", THERMAL_CAMID)}


def read_regdb_list(path: str | Path) -> list[tuple[str, int]]:
    """``(relative path, label)`` pairs of an ``idx/*.txt`` list, in file order; blank lines are skipped.

    A line is ``<path> <label>`` (the label is the last whitespace-separated field, a non-negative
    integer); anything else raises :class:`DatasetFormatError` with ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing")
    out: list[tuple[str, int]] = []
    for line_no, line in enumerate(read_lines(path), 1):
        text = line.strip()
        if not text:
            continue
        fields = text.rsplit(None, 1)
        if len(fields) != 2 or not fields[1].isdigit() or not fields[1].isascii():
            raise DatasetFormatError(
                f"{path}:{line_no}: expected '<relative image path> <integer label>', got {text!r}"
            )
        out.append((fields[0], int(fields[1])))
    return out


def _check_trial(trial: int) -> int:
    return checked_int(trial, "RegDB trial", TRIALS[0], TRIALS[-1], " (idx/train_visible_<trial>.txt etc.)")


def _list_path(root: Path, split: str, modality: str, trial: int) -> Path:
    path = root / "idx" / f"{split}_{modality}_{trial}.txt"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path}: missing. A RegDB root holds idx/{{train,test}}_{{visible,thermal}}_<trial>.txt "
            f"for trials 1..10 beside Visible/ and Thermal/ (trial {trial} asked for)"
        )
    return path


def load_regdb(root: str | Path, trial: int = 1, check_files: bool = True) -> VIDataset:
    """Read RegDB split ``trial`` (1..10) as a :class:`VIDataset` of one-frame tracklets (``protocol="regdb"``).

    * train: the train visible + train thermal lists; both must hold the same label set, relabelled
      0..N-1 in sorted order (``train_pid_map``: file label -> label);
    * ``test_ir``: the test thermal list, ``test_rgb``: the test visible list, with the labels of the
      files as pids;
    * visible images are ``rgb`` with camera id 1, thermal images ``ir`` with camera id 2.

    With ``check_files`` every listed image must exist (else an error with the count and the first paths).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    trial = _check_trial(trial)

    sets: dict[tuple[str, str], list[Tracklet]] = {}
    files: dict[tuple[str, str], Path] = {}
    for split in ("train", "test"):
        for modality, (mod, camid) in _MODALITIES.items():
            path = _list_path(root, split, modality, trial)
            items = read_regdb_list(path)
            if not items:
                raise DatasetFormatError(f"{path}: lists no images")
            files[split, modality] = path
            sets[split, modality] = [Tracklet((str(root / rel),), label, camid, mod) for rel, label in items]

    vis_labels = {t.pid for t in sets["train", "visible"]}
    th_labels = {t.pid for t in sets["train", "thermal"]}
    if vis_labels != th_labels:
        only_v, only_t = sorted(vis_labels - th_labels), sorted(th_labels - vis_labels)
        raise DatasetFormatError(
            f"{files['train', 'visible']} and {files['train', 'thermal']}: the two modalities must share one label "
            f"set; only visible: {only_v[:10]}{' ...' if len(only_v) > 10 else ''}, "
            f"only thermal: {only_t[:10]}{' ...' if len(only_t) > 10 else ''}"
        )

    if check_files:
        missing = {key: [t.paths[0] for t in ts if not Path(t.paths[0]).is_file()] for key, ts in sets.items()}
        if any(missing.values()):
            where = ", ".join(f"{files[key]} ({len(m)})" for key, m in missing.items() if m)
            shown = "\n  ".join([p for m in missing.values() for p in m][:5])
            raise DatasetFormatError(f"{sum(map(len, missing.values()))} image(s) listed in {where} are missing on disk, "
                                     f"e.g.\n  {shown}")

    pid_map = {label: i for i, label in enumerate(sorted(vis_labels))}
    train = [
        Tracklet(t.paths, pid_map[t.pid], t.camid, t.modality)
        for t in sets["train", "visible"] + sets["train", "thermal"]
    ]
    return VIDataset(
        "regdb", root, train, sets["test", "thermal"], sets["test", "visible"], pid_map, protocol="regdb"
    )
