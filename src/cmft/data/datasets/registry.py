"""The dataset readers by name, and which one a folder's layout calls for.

``load_dataset("auto", root)`` reads HITSZ-VCM (``info/``), SYSU-MM01 (``exp/`` + ``cam1..cam6``),
RegDB (``idx/`` + ``Visible``/``Thermal``), BUPTCampus (``DATA/`` + ``data_paths.json``) and LLCM (``idx/`` +
``test_vis``/``test_nir``) trees alike; every reader returns a :class:`VIDataset` whose
``protocol`` names its evaluation rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmft.data.errors import DatasetFormatError
from cmft.data.types import VIDataset

DATASETS = ("hitsz_vcm", "sysu_mm01", "regdb", "buptcampus", "llcm")


def detect_dataset(root: str | Path) -> str:
    """The dataset format of a folder, from its layout; a clear error when it is none of them."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: dataset root is not a directory")
    from cmft.data.datasets.buptcampus import is_buptcampus
    from cmft.data.datasets.llcm import is_llcm

    if is_buptcampus(root):
        return "buptcampus"
    if is_llcm(root):
        return "llcm"
    if (root / "info").is_dir():
        return "hitsz_vcm"
    if (root / "exp").is_dir() and any((root / f"cam{c}").is_dir() for c in range(1, 7)):
        return "sysu_mm01"
    if (root / "idx").is_dir() and ((root / "Visible").is_dir() or (root / "Thermal").is_dir()):
        return "regdb"
    raise DatasetFormatError(
        f"{root}: not a known dataset layout: HITSZ-VCM has info/, SYSU-MM01 has exp/ and cam1..cam6/, "
        "RegDB has idx/, Visible/ and Thermal/, BUPTCampus has DATA/ and data_paths.json, LLCM has idx/train_vis.txt, test_vis/ and test_nir/"
    )


@dataclass(frozen=True)
class DatasetOptions:
    """Everything a reader can be asked, in one place; each reader takes the options that apply to it."""

    trial: int | None = None  # SYSU-MM01, LLCM: gallery draw (default 0); RegDB: split 1..10 (default 1)
    mode: str = "all"  # SYSU-MM01: all or indoor search
    shots: int = 1  # SYSU-MM01: gallery images per identity and camera
    skip_missing: bool = False  # HITSZ-VCM: drop listed frames missing on disk instead of failing
    check_files: bool = True  # HITSZ-VCM, RegDB: every listed frame must exist
    splits: tuple[str, ...] | None = None  # HITSZ-VCM: None = each split whose name list is not empty
    auxiliary: bool = False  # BUPTCampus: also train on train_auxiliary.txt
    protocol: str | None = None  # BUPTCampus: buptcampus (the authors' rule, default) or buptcampus_m3reid


def _hitsz_vcm(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.hitsz_vcm import load_hitsz_vcm

    splits = o.splits
    if splits is None:  # a `cmft track` export may hold only the test split
        present = tuple(s for s in ("train", "test") if (root / "info" / f"{s}_name.txt").is_file()
                        and (root / "info" / f"{s}_name.txt").stat().st_size > 0)
        splits = present or ("train", "test")
    return load_hitsz_vcm(root, check_files=o.check_files, skip_missing=o.skip_missing, splits=splits)


def _sysu_mm01(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.sysu_mm01 import load_sysu_mm01

    return load_sysu_mm01(root, mode=o.mode, trial=0 if o.trial is None else o.trial, shots=o.shots)


def _regdb(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.regdb import load_regdb

    return load_regdb(root, trial=1 if o.trial is None else o.trial, check_files=o.check_files)


def _buptcampus(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.buptcampus import load_buptcampus

    return load_buptcampus(root, check_files=o.check_files, auxiliary=o.auxiliary, protocol=o.protocol or "buptcampus")


def _llcm(root: Path, o: DatasetOptions) -> VIDataset:
    from cmft.data.datasets.llcm import load_llcm

    return load_llcm(root, trial=0 if o.trial is None else o.trial, check_files=o.check_files)


# the dataset table: name -> reader, every reader called as reader(root, options)
READERS: dict[str, Callable[[Path, DatasetOptions], VIDataset]] = {
    "hitsz_vcm": _hitsz_vcm, "sysu_mm01": _sysu_mm01, "regdb": _regdb, "buptcampus": _buptcampus, "llcm": _llcm,
}
assert tuple(READERS) == DATASETS


def load_dataset(name: str, root: str | Path, options: DatasetOptions | None = None, **fields: Any) -> VIDataset:
    """Read ``root`` as dataset ``name`` (or ``"auto"``: from the folder's layout). ``options`` (or its fields
    as keywords: ``trial``, ``mode``, ``shots``, ``skip_missing``, ``check_files``, ``splits``) say what to read;
    see :class:`DatasetOptions`."""
    try:
        opts = dataclasses.replace(options or DatasetOptions(), **fields)
    except TypeError:
        valid = [f.name for f in dataclasses.fields(DatasetOptions)]
        raise ValueError(f"unknown dataset option(s) {sorted(set(fields) - set(valid))}; valid: {valid}") from None
    if name == "auto":
        name = detect_dataset(root)
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: auto, {', '.join(DATASETS)}")
    return READERS[name](Path(root), opts)
